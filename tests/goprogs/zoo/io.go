package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// ---- timers: many goroutines sleeping very short times ------------------------------------------

// timers: 64 goroutines each sleep 5ms between small pieces of work (about 25µs): some 10,000
// sleeps a second, with the Ps busy enough that few of them idle in the poller between timers.
func timers() {
	for i := 0; i < 64; i++ {
		go napper(5 * time.Millisecond)
	}
}

func napper(d time.Duration) {
	for {
		time.Sleep(d) // FINDING: timers
		keep(work(20000))
	}
}

// ---- netpoll: many connections, each with a little traffic ---------------------------------------

// netpoll: 1000 connections over a Unix socket (abstract: no file), each carrying a byte and its
// echo every 20ms. The process is mostly idle, so each byte wakes the poller. (Loopback TCP does
// the same, but its per-byte cost in the kernel halves the poller's share of the CPU, to about
// the rule's 5%.)
func netpoll() {
	ln, err := net.Listen("unix", fmt.Sprintf("@mcalltrace-zoo-%d", os.Getpid()))
	if err != nil {
		panic(err)
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go echo(conn)
		}
	}()
	for i := 0; i < 1000; i++ {
		conn, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			panic(err)
		}
		go pinger(conn, 20*time.Millisecond)
	}
}

// echo sends each byte back. Its read waits for the next one, which comes a pause later, so
// every read waits in the network poller.
func echo(conn net.Conn) {
	buf := make([]byte, 64)
	for {
		n, err := conn.Read(buf) // FINDING: netpoll
		if err != nil {
			return
		}
		if _, err := conn.Write(buf[:n]); err != nil {
			return
		}
	}
}

// pinger sends a byte, pauses, and reads the echo (there by then: this read does not wait).
func pinger(conn net.Conn, every time.Duration) {
	buf := []byte{1}
	for {
		if _, err := conn.Write(buf); err != nil {
			return
		}
		time.Sleep(every)
		if _, err := io.ReadFull(conn, buf); err != nil {
			return
		}
	}
}

// ---- syscall-handoffs: blocking system calls while every P has work ----------------------------

// syscallHandoffs: 64 goroutines each sleep a millisecond at a time in nanosleep, a blocking
// system call the runtime cannot see into. There are always more of them runnable than Ps, so
// sysmon takes the P of each sleeper (once it has been in the call a sysmon tick or two) and hands
// it to another thread; the sleeper comes back to find no P free.
func syscallHandoffs() {
	for i := 0; i < 64; i++ {
		go syscallSleeper(time.Millisecond)
	}
}

func syscallSleeper(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for {
		_ = syscall.Nanosleep(&ts, nil) // FINDING: syscall-handoffs
		keep(work(100))
	}
}
