// A small scheduler workload that the tests build with every toolchain and build mode.
//
// It spawns goroutines that park on channels, yield and exit, so that every runtime function
// mcalltrace probes is linked and exercised. With -hold it keeps running until stdin closes,
// so tests can inspect and trace it by pid.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
)

func pingPong(rounds int) {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	for i := 0; i < rounds; i++ {
		ping <- i
		<-pong
	}
	close(ping)
}

func spawn(n int) {
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			defer wg.Done()
			runtime.Gosched()
		}()
	}
	wg.Wait()
}

func main() {
	goroutines := flag.Int("goroutines", 1000, "goroutines to spawn, each yielding once and exiting")
	rounds := flag.Int("rounds", 1000, "channel ping-pong round trips")
	hold := flag.Bool("hold", false, "after the work, print READY and wait until stdin closes")
	scenario := flag.String("scenario", "", "run a test scenario instead: exits, steal, runq, traced, churn, paced, syscalls, grow, profiled")
	count := flag.Int("n", 1000, "the scenario's size")
	tracePath := flag.String("trace", "trace.out", "where the traced scenario writes its runtime/trace, the profiled one its CPU profile")
	flag.Parse()
	if *scenario != "" {
		if !runScenario(*scenario, *count, *tracePath) {
			fmt.Fprintln(os.Stderr, "unknown scenario", *scenario)
			os.Exit(2)
		}
		return
	}

	spawn(*goroutines)
	pingPong(*rounds)
	fmt.Printf("cgo=%v gomaxprocs=%d\n", cgoEnabled(), runtime.GOMAXPROCS(0))
	if *hold {
		fmt.Println("READY")
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
}
