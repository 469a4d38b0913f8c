// httpload: a net/http server, and the loopback client that loads it.
//
//	httpload -serve 127.0.0.1:0 [-trace FILE]   prints its address, serves until stdin closes
//	httpload -load URL -duration 5s -c 32       prints requests per second
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/trace"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func serve(addr, tracePath string) {
	if tracePath != "" {
		file, err := os.Create(tracePath)
		if err != nil {
			panic(err)
		}
		if err := trace.Start(file); err != nil {
			panic(err)
		}
		defer func() { trace.Stop(); file.Close() }()
	}
	body := strings.Repeat("mcalltrace ", 100)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	})
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		panic(err)
	}
	go http.Serve(listener, nil)
	fmt.Printf("http://%s/\n", listener.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func load(url string, duration time.Duration, concurrency int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	var done atomic.Int64
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	for i := 0; i < concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				response, err := client.Get(url)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, response.Body)
				response.Body.Close()
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("%.1f\n", float64(done.Load())/duration.Seconds())
}

func main() {
	addr := flag.String("serve", "", "serve on this address")
	url := flag.String("load", "", "load this URL")
	duration := flag.Duration("duration", 5*time.Second, "load duration")
	concurrency := flag.Int("c", 32, "concurrent clients")
	tracePath := flag.String("trace", "", "serve under runtime/trace, writing here")
	flag.Parse()
	switch {
	case *addr != "":
		serve(*addr, *tracePath)
	case *url != "":
		load(*url, *duration, *concurrency)
	default:
		flag.Usage()
		os.Exit(2)
	}
}
