// schedload: a fixed amount of scheduler-heavy work (short goroutines, channel ping-pong,
// parking), timed by the program itself so that start-up and attach are not counted.
// Prints the elapsed seconds. With -trace FILE it runs under runtime/trace.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime/trace"
	"sync"
	"time"
)

func spawn(n int) {
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func(i int) {
			x := i
			for j := 0; j < 200; j++ {
				x = x*1103515245 + 12345
			}
			_ = x
			wg.Done()
		}(i)
	}
	wg.Wait()
}

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

func main() {
	rounds := flag.Int("rounds", 40, "rounds of work")
	tracePath := flag.String("trace", "", "run under runtime/trace, writing here")
	flag.Parse()
	if *tracePath != "" {
		file, err := os.Create(*tracePath)
		if err != nil {
			panic(err)
		}
		if err := trace.Start(file); err != nil {
			panic(err)
		}
		defer func() { trace.Stop(); file.Close() }()
	}
	start := time.Now()
	for round := 0; round < *rounds; round++ {
		var wg sync.WaitGroup
		for worker := 0; worker < 4; worker++ {
			wg.Add(1)
			go func() { defer wg.Done(); spawn(2000); pingPong(2000) }()
		}
		wg.Wait()
	}
	fmt.Printf("%.6f\n", time.Since(start).Seconds())
}
