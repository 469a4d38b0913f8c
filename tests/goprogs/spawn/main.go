// spawn starts N short-lived goroutines from its first instruction (no wait for a tracer) and
// prints how many exited and how long it took: a program that is scheduler-bound from the start,
// with an exact ground truth for goexit0.
//
//	spawn N [SPAWNERS]
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	n, err := strconv.Atoi(os.Args[1])
	if err != nil || n < 0 {
		fmt.Fprintln(os.Stderr, "usage: spawn N [SPAWNERS]")
		os.Exit(2)
	}
	spawners := 4
	if len(os.Args) > 2 {
		spawners, _ = strconv.Atoi(os.Args[2])
	}
	start := time.Now()
	var exited int64
	var all sync.WaitGroup
	var spawning sync.WaitGroup
	all.Add(n)
	spawning.Add(spawners)
	for s := 0; s < spawners; s++ {
		count := n / spawners
		if s == 0 {
			count += n % spawners
		}
		go func(count int) {
			defer spawning.Done()
			for i := 0; i < count; i++ {
				go func() {
					atomic.AddInt64(&exited, 1)
					all.Done()
				}()
			}
		}(count)
	}
	spawning.Wait()
	all.Wait()
	// The spawners exit too: goexit0 sees n + spawners goroutines.
	fmt.Printf("SPAWNED %d %d %.3f\n", atomic.LoadInt64(&exited), spawners, time.Since(start).Seconds())
}
