package main

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// ---- gc: a high allocation rate of short-lived garbage -----------------------------------------

type node struct {
	next  *node
	value [6]uint64
}

func gcPressure() {
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		go allocate()
	}
}

func allocate() {
	for {
		var list *node
		for i := 0; i < 1000; i++ {
			list = &node{next: list} // FINDING: gc
			list.value[0] = uint64(i)
		}
		keep(list.value[0])
	}
}

// ---- thread-migrations: a thread that moves itself between CPUs --------------------------------

func threadMigrations() {
	go migrate(100 * time.Microsecond)
}

func migrate(every time.Duration) {
	runtime.LockOSThread()
	cpus := runtime.NumCPU()
	var mask [16]uint64
	for i := 0; ; i++ {
		cpu := i % cpus
		mask = [16]uint64{}
		mask[cpu/64] = 1 << (cpu % 64)
		syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask))) // FINDING: thread-migrations
		spinFor(every)
	}
}

// ---- gomaxprocs-over-quota and cpu-throttled: CPU-bound on every P, under a CPU limit -----------

// gomaxprocsOverQuota is meant to run in a cgroup whose CPU limit (say 1 CPU) is below the CPUs:
// it sets GOMAXPROCS itself (Go 1.25+ would lower its default to the limit) and keeps every P
// busy. A limit never lowers Go's default below 2, so GOMAXPROCS is at least 4: on a 2-CPU host
// GOMAXPROCS=NumCPU=2 is what Go 1.25+ would choose anyway, and no limit makes it too many.
func gomaxprocsOverQuota() {
	procs := runtime.NumCPU()
	if procs < 4 {
		procs = 4
	}
	runtime.GOMAXPROCS(procs) // FINDING: gomaxprocs-over-quota
	batch()
}

// cpuThrottled is meant to run in a cgroup with a CPU limit below the CPUs (say 0.5 CPU): every
// P busy, GOMAXPROCS left at its default (which no limit lowers below 2).
func cpuThrottled() {
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		go hog() // FINDING: cpu-throttled
	}
}
