// mcalltrace-demo: a Go workload that exercises every scheduler path mcalltrace shows.
//
//   - bursts of short goroutines spawned from one P, which idle Ps must steal (runqsteal);
//   - channel ping-pong pairs that park and wake each other (park_m, chan send/receive);
//   - goroutines that exit (goexit0) and yield (gosched_m);
//   - tight loops with no calls, which only asynchronous preemption can stop (preemptPark);
//   - sleepers (timers), a contended mutex, and blocking syscalls that hand Ps off between
//     threads and move threads between CPUs.
//
// It runs until -duration passes, stdin closes (with -stdin), or it is signalled.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var sink atomic.Uint64

func work(n int) uint64 {
	var x uint64 = 1
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// spawner spawns bursts from a single goroutine: they land on its P's run queue and the other
// Ps, idle between bursts, steal them.
func spawner(stop <-chan struct{}, burst int, every time.Duration) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		var wg sync.WaitGroup
		wg.Add(burst)
		for i := 0; i < burst; i++ {
			go func(i int) {
				defer wg.Done()
				sink.Add(work(2000 + i%7*500))
				if i%4 == 0 {
					runtime.Gosched()
				}
			}(i)
		}
		wg.Wait()
		time.Sleep(every)
	}
}

func pingPong(stop <-chan struct{}) {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-stop:
			close(ping)
			return
		case ping <- i:
			<-pong
		}
		if i%1000 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// hog spins without function calls, so only asynchronous preemption (a signal) can stop it.
func hog(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		var x uint64
		for i := 0; i < 50_000_000; i++ {
			x += uint64(i) ^ x>>3
		}
		sink.Add(x)
	}
}

func contended(stop <-chan struct{}, mu *sync.Mutex) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		mu.Lock()
		sink.Add(work(20000))
		mu.Unlock()
	}
}

func sleeper(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// syscaller makes blocking reads, so the runtime hands its P to another thread while it waits.
func syscaller(stop <-chan struct{}) {
	var buf [512]byte
	for {
		select {
		case <-stop:
			return
		default:
		}
		f, err := os.Open("/proc/self/stat")
		if err == nil {
			_, _ = f.Read(buf[:])
			f.Close()
		}
		time.Sleep(500 * time.Microsecond)
	}
}

func main() {
	duration := flag.Duration("duration", 0, "stop after this long (0: run until signalled)")
	fromStdin := flag.Bool("stdin", false, "also stop when stdin closes")
	burst := flag.Int("burst", 200, "goroutines per spawn burst")
	procs := flag.Int("procs", 0, "GOMAXPROCS (default: at least 4, so Ps outnumber small machines' CPUs and steal)")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	} else if os.Getenv("GOMAXPROCS") == "" && runtime.NumCPU() < 4 {
		runtime.GOMAXPROCS(4)
	}

	stop := make(chan struct{})
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	start(func() { spawner(stop, *burst, 5*time.Millisecond) })
	for i := 0; i < 2; i++ {
		start(func() { pingPong(stop) })
		start(func() { contended(stop, &mu) })
		start(func() { sleeper(stop) })
	}
	start(func() { hog(stop) })
	start(func() { syscaller(stop) })

	fmt.Printf("mcalltrace-demo pid %d GOMAXPROCS %d\n", os.Getpid(), runtime.GOMAXPROCS(0))
	fmt.Println("READY")

	done := make(chan struct{})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	if *fromStdin {
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	}
	var timeout <-chan time.Time
	if *duration > 0 {
		timeout = time.After(*duration)
	}
	select {
	case <-done:
	case <-signals:
	case <-timeout:
	}
	close(stop)
	wg.Wait()
}
