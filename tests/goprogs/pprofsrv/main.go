// pprofsrv: a workload that serves net/http/pprof on loopback, for capture tests.
//
//	-mode bursts  short bursts of goroutines with pauses between: idle Ps wake, look for work
//	              and mostly fail to steal it (a high steal failure rate)
//	-mode feeder  one goroutine keeps spawning work without pause: the other Ps find a full
//	              queue to steal from (a low steal failure rate)
//
// It prints READY once listening and runs until stdin closes.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

var sink atomic.Uint64

func work(n int) {
	var x uint64 = 1
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	sink.Add(x)
}

func bursts(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		var wg sync.WaitGroup
		wg.Add(16)
		for i := 0; i < 16; i++ {
			go func() { work(3000); wg.Done() }()
		}
		wg.Wait()
		time.Sleep(200 * time.Microsecond)
	}
}

func feeder(stop <-chan struct{}) {
	var running atomic.Int64
	for {
		select {
		case <-stop:
			return
		default:
		}
		if running.Load() > 2000 {
			work(20000)
			continue
		}
		running.Add(1)
		go func() { work(40000); running.Add(-1) }()
	}
}

func main() {
	mode := flag.String("mode", "bursts", "bursts or feeder")
	flag.Parse()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go http.Serve(listener, nil)
	stop := make(chan struct{})
	switch *mode {
	case "bursts":
		go bursts(stop)
	case "feeder":
		go feeder(stop)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", *mode)
		os.Exit(2)
	}
	fmt.Printf("http://%s/debug/pprof\n", listener.Addr())
	fmt.Println("READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
	close(stop)
}
