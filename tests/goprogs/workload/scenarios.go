package main

// Scenarios with a ground truth the integration tests check mcalltrace against. Each waits for
// "GO" on stdin (so the tracer can attach first), does its work, prints "DONE", and then waits
// for stdin to close.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

var stdin = bufio.NewReader(os.Stdin)

func waitForGo() {
	fmt.Println("READY")
	for {
		line, err := stdin.ReadString('\n')
		if err != nil {
			os.Exit(3)
		}
		if line == "GO\n" {
			return
		}
	}
}

func done() {
	fmt.Println("DONE")
	_, _ = io.Copy(io.Discard, stdin)
}

// exits starts exactly n goroutines, each of which exits at once.
func exits(n int) {
	waitForGo()
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		go wg.Done()
	}
	wg.Wait()
	done()
}

func spin(iterations int) uint64 {
	var x uint64 = 1
	for i := 0; i < iterations; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// steal spawns bursts from a single goroutine, so they queue on its P and the idle Ps steal.
func steal(bursts, size int) {
	waitForGo()
	var total uint64
	var mu sync.Mutex
	for b := 0; b < bursts; b++ {
		var wg sync.WaitGroup
		wg.Add(size)
		for i := 0; i < size; i++ {
			go func() {
				x := spin(20000)
				mu.Lock()
				total += x
				mu.Unlock()
				wg.Done()
			}()
		}
		wg.Wait()
		time.Sleep(2 * time.Millisecond)
	}
	done()
}

// runq builds a run-queue state that stays put: with async preemption off (GODEBUG), goroutines
// that spin without calls are never descheduled, so the queued ones stay queued.
func runq(hogs int) {
	for i := 0; i < hogs; i++ {
		go func() {
			for {
				spinForever()
			}
		}()
	}
	fmt.Println("READY")
	spinForever()
}

//go:noinline
func spinForever() {
	var x uint64
	for {
		x = x*6364136223846793005 + 1
	}
}

// traced runs a scheduler-heavy workload under runtime/trace, writing the trace to path.
func traced(path string, goroutines int) {
	waitForGo()
	file, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := trace.Start(file); err != nil {
		panic(err)
	}
	for round := 0; round < 20; round++ {
		spawn(goroutines / 20)
		pingPong(200)
	}
	trace.Stop()
	file.Close()
	done()
}

// busy spawns and ping-pongs until stdin closes, then exits 0.
func busy() {
	closed := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, stdin); close(closed) }()
	fmt.Println("READY")
	for {
		select {
		case <-closed:
			return
		default:
		}
		spawn(50)
		pingPong(50)
	}
}

// churn spawns short goroutines in batches for the given number of milliseconds (a load far over
// any overhead budget) and prints how many it started.
func churn(milliseconds int) {
	waitForGo()
	fmt.Println("STARTED", churnFor(milliseconds))
	done()
}

// syscalls keeps 8 goroutines in 200 µs blocking nanosleep system calls, back to back, for the
// given number of milliseconds: Ps whose goroutine is in a system call most of the time (the
// raw syscall, not time.Sleep, so that the runtime sees a system call and no timer).
func syscalls(milliseconds int) {
	waitForGo()
	deadline := time.Now().Add(time.Duration(milliseconds) * time.Millisecond)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pause := syscall.Timespec{Nsec: 200_000}
			for time.Now().Before(deadline) {
				_, _, _ = syscall.Syscall(syscall.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&pause)), 0, 0)
			}
		}()
	}
	wg.Wait()
	done()
}

// grow churns goroutines for the given number of milliseconds at the GOMAXPROCS it started with,
// then raises GOMAXPROCS to 12 and churns as long again: Ps that appear while traced.
func grow(milliseconds int) {
	waitForGo()
	started := churnFor(milliseconds)
	runtime.GOMAXPROCS(12)
	started += churnFor(milliseconds)
	fmt.Println("STARTED", started)
	done()
}

// churnFor starts goroutines 100 at a time, each spinning briefly, for the given time; returns
// how many it started.
func churnFor(milliseconds int) int {
	deadline := time.Now().Add(time.Duration(milliseconds) * time.Millisecond)
	started := 0
	for time.Now().Before(deadline) {
		var wg sync.WaitGroup
		wg.Add(100)
		for i := 0; i < 100; i++ {
			go func() { // ORIGIN: churn's go statement (the tests find this line)
				spin(200)
				wg.Done()
			}()
		}
		started += 100
		wg.Wait()
	}
	return started
}

// paced starts n goroutines one at a time, 20 ms apart: a load light enough to trace exactly.
func paced(n int) {
	waitForGo()
	for i := 0; i < n; i++ {
		finished := make(chan struct{})
		go func() { close(finished) }()
		<-finished
		time.Sleep(20 * time.Millisecond)
	}
	done()
}

// profiled runs a scheduler-heavy mix for the given number of milliseconds under the program's
// own CPU profiler (runtime/pprof, at its usual 100 Hz), writing the profile to path: on each of
// GOMAXPROCS workers, goroutines parked and woken on channels, bursts of short goroutines that
// other Ps steal, and plain computation.
func profiled(milliseconds int, path string) {
	waitForGo()
	file, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(file); err != nil {
		panic(err)
	}
	deadline := time.Now().Add(time.Duration(milliseconds) * time.Millisecond)
	var workers sync.WaitGroup
	for worker := 0; worker < runtime.GOMAXPROCS(0); worker++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for time.Now().Before(deadline) {
				pingPong(200)
				var wg sync.WaitGroup
				wg.Add(64)
				for i := 0; i < 64; i++ {
					go func() {
						spin(3000)
						wg.Done()
					}()
				}
				wg.Wait()
				spin(20000)
			}
		}()
	}
	workers.Wait()
	pprof.StopCPUProfile()
	file.Close()
	done()
}

func runScenario(name string, count int, path string) bool {
	switch name {
	case "busy":
		busy()
	case "exits":
		exits(count)
	case "steal":
		steal(count, 64)
	case "runq":
		runq(count)
	case "traced":
		traced(path, count)
	case "churn":
		churn(count)
	case "paced":
		paced(count)
	case "syscalls":
		syscalls(count)
	case "grow":
		grow(count)
	case "profiled":
		profiled(count, path)
	case "gomaxprocs":
		fmt.Println(runtime.GOMAXPROCS(0))
	case "frames":
		frames()
	default:
		return false
	}
	return true
}

// The inlining oracle: runtime.Callers from code inlined twice over, and the runtime's own
// expansion of the stack (runtime.CallersFrames), for mcalltrace's inline tree reader to match. "ENTRY" is main.framesOuter's run-time address (the load bias of a PIE).
func framesLeaf(pcs []uintptr) int { return runtime.Callers(1, pcs) }

func framesMiddle(pcs []uintptr) int { return framesLeaf(pcs) + 0 }

//go:noinline
func framesOuter(pcs []uintptr) int { return framesMiddle(pcs) }

func frames() {
	pcs := make([]uintptr, 16)
	n := framesOuter(pcs)
	fmt.Printf("ENTRY %#x\n", runtime.FuncForPC(reflectPC(framesOuter)).Entry())
	for _, pc := range pcs[:n] {
		fmt.Printf("PC %#x\n", pc)
	}
	// runtime.Callers gives each frame inlined at a return address a PC of its own (its call
	// site's, plus one) after it: the expansion of pcs[i] is the next frames, one per PC.
	expanded := runtime.CallersFrames(pcs[:n])
	for {
		frame, more := expanded.Next()
		fmt.Printf("FRAME %s %s %d\n", frame.Function, frame.File, frame.Line)
		if !more {
			break
		}
	}
}

// reflectPC is a func value's code address, without importing reflect.
func reflectPC(f func([]uintptr) int) uintptr {
	return **(**uintptr)(unsafe.Pointer(&f))
}
