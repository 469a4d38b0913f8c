package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ---- goroutine-churn: a goroutine per tiny task -----------------------------------------------

// goroutineChurn starts a spawner per P; each starts a goroutine for every tiny task, keeping at
// most a few hundred alive (it yields while there are more).
func goroutineChurn() {
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		go spawnTasks()
	}
}

func spawnTasks() {
	var live int64
	for {
		for atomic.LoadInt64(&live) > 256 {
			runtime.Gosched()
		}
		atomic.AddInt64(&live, 1)
		go tinyTask(&live) // FINDING: goroutine-churn
	}
}

func tinyTask(live *int64) {
	keep(work(50))
	atomic.AddInt64(live, -1)
}

// ---- blocking-handoffs: one item at a time over unbuffered channels ---------------------------

// blockingHandoffs runs, per P, a producer that hands items one at a time to a few consumers:
// each receive blocks until the next item, and the producer blocks whenever the channel is full
// (its consumers wait in its P's run queue until it does): both sides of each hand-off park,
// about as often. The consumers' receive is the marked line.
func blockingHandoffs() {
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		items := make(chan int, 16)
		go produce(items)
		for c := 0; c < 8; c++ {
			go consume(items)
		}
	}
}

func produce(items chan<- int) {
	for i := 0; ; i++ {
		items <- i & 15
	}
}

func consume(items <-chan int) {
	for {
		v := <-items // FINDING: blocking-handoffs
		keep(work(v))
	}
}

// ---- spinning: a trickle of tiny tasks that wakes an idle P for each ---------------------------

// spinning: one goroutine hands a tiny task to a worker every 50µs, pausing in between in a
// system call (nanosleep, which keeps its P: the other P is idle, so sysmon leaves it alone).
// Every hand-off wakes the idle P, which spins looking for work, mostly in vain, and goes back to
// sleep: little work, and much of the process's CPU spent looking for it.
func spinning() {
	tasks := make(chan int, 1)
	go trickle(tasks, 50*time.Microsecond) // FINDING: spinning
	go tinyWorker(tasks)
}

func trickle(tasks chan<- int, every time.Duration) {
	pause := syscall.NsecToTimespec(int64(every))
	for i := 0; ; i++ {
		_ = syscall.Nanosleep(&pause, nil)
		select {
		case tasks <- i:
		default:
		}
	}
}

func tinyWorker(tasks <-chan int) {
	for v := range tasks {
		keep(work(v & 63))
	}
}

// ---- gomaxprocs-over-cpus: more Ps than CPUs, bursty small work --------------------------------

// gomaxprocsOverCPUs: twice as many Ps as CPUs, and a feeder that hands out bursts of 8 tiny
// tasks between 200µs stretches of its own work: the idle Ps wake for each burst and spin.
func gomaxprocsOverCPUs() {
	runtime.GOMAXPROCS(2 * runtime.NumCPU()) // FINDING: gomaxprocs-over-cpus
	tasks := make(chan int, 64)
	for i := 0; i < 2*runtime.NumCPU(); i++ {
		go tinyWorker(tasks)
	}
	go func() {
		for i := 0; ; i++ {
			for j := 0; j < 8; j++ {
				tasks <- i + j
			}
			spinFor(200 * time.Microsecond)
		}
	}()
}

// ---- runqueue-imbalance: bursts of runnable goroutines on one P ---------------------------------

// runqueueImbalance: a goroutine releases a burst of parked workers at once, all onto its own P's
// run queue, while the other Ps are kept busy by CPU-bound goroutines that never look for work
// to steal. They yield now and then (runtime.Gosched puts them on the global queue, which their
// P takes them back from before it would steal), so sysmon never has to preempt them.
func runqueueImbalance() {
	procs := runtime.GOMAXPROCS(0)
	for i := 1; i < procs; i++ {
		go yieldingHog()
	}
	go releaseBursts(256)
}

func yieldingHog() {
	for {
		keep(work(1 << 16))
		runtime.Gosched()
	}
}

func hog() {
	for {
		keep(work(1 << 20))
	}
}

func releaseBursts(workers int) {
	var wg sync.WaitGroup
	starts := make([]chan struct{}, workers)
	for i := range starts {
		starts[i] = make(chan struct{})
		go burstWorker(starts[i], &wg)
	}
	for {
		wg.Add(workers)
		for _, start := range starts {
			start <- struct{}{} // FINDING: runqueue-imbalance
		}
		wg.Wait()
	}
}

// burstWorker works about 200µs a burst: long enough that the bursts' parks stay well below
// blocking-handoffs' threshold.
func burstWorker(start <-chan struct{}, wg *sync.WaitGroup) {
	for range start {
		keep(work(150000))
		wg.Done()
	}
}

// ---- preemption: more CPU-bound goroutines than Ps ----------------------------------------------

func preemption() {
	for i := 0; i < 4*runtime.GOMAXPROCS(0); i++ {
		go crunch(uint64(i))
	}
}

// crunch never calls a function in its loop: only an asynchronous preemption (a signal from
// sysmon) takes its P from it.
func crunch(seed uint64) { // FINDING: preemption
	x := seed
	for {
		for i := 0; i < 1<<30; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		keep(x)
	}
}
