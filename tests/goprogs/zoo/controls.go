package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"time"
)

// http-server: a net/http server on loopback, and a client making 200 requests a second over a
// keep-alive connection.
func httpServer() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %d\n", work(1000)&0xff)
	})
	go func() { _ = http.Serve(ln, mux) }()
	url := "http://" + ln.Addr().String() + "/hello"
	go func() {
		client := &http.Client{Timeout: 5 * time.Second}
		tick := time.NewTicker(5 * time.Millisecond)
		for range tick.C {
			resp, err := client.Get(url)
			if err != nil {
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
}

// batch: exactly GOMAXPROCS goroutines crunching numbers, allocating nothing.
func batch() {
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		go hog()
	}
}

// idle: a daemon that wakes once a second.
func idle() {
	go func() {
		tick := time.NewTicker(time.Second)
		for range tick.C {
			keep(work(1000))
		}
	}()
}
