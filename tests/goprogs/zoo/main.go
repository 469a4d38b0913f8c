// zoo: one scenario per scheduler pathology that mcalltrace's findings name, plus healthy
// controls. Each pathology scenario marks the line its finding is about with a trailing comment:
// the word FINDING, a colon, and the finding's id (one marker per id).
//
//	zoo -scenario NAME [-seconds N]
//
// prints READY once the scenario runs, runs it for N seconds (default: until killed) and exits 0.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// sink keeps the compiler from dropping work whose result nobody reads.
var sink uint64

func keep(x uint64) { atomic.AddUint64(&sink, x) }

// work is a few nanoseconds a round of integer arithmetic, with no calls and no allocation.
func work(rounds int) uint64 {
	var x uint64 = 1
	for i := 0; i < rounds; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// spinFor busy-waits (no park, no system call) for about d.
func spinFor(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		keep(work(20))
	}
}

var scenarios = map[string]func(){
	// pathologies, named by the finding each should raise first
	"goroutine-churn":       goroutineChurn,
	"blocking-handoffs":     blockingHandoffs,
	"spinning":              spinning,
	"gomaxprocs-over-cpus":  gomaxprocsOverCPUs,
	"gomaxprocs-over-quota": gomaxprocsOverQuota,
	"cpu-throttled":         cpuThrottled,
	"runqueue-imbalance":    runqueueImbalance,
	"syscall-handoffs":      syscallHandoffs,
	"preemption":            preemption,
	"timers":                timers,
	"netpoll":               netpoll,
	"gc":                    gcPressure,
	"thread-migrations":     threadMigrations,
	// healthy controls: no warning or critical finding
	"http-server": httpServer,
	"batch":       batch,
	"idle":        idle,
}

func names() string {
	var all []string
	for name := range scenarios {
		all = append(all, name)
	}
	sort.Strings(all)
	return strings.Join(all, ", ")
}

// The main goroutine keeps the main thread, so that no scenario's goroutine runs on it: the
// thread-migrations scenario changes its own thread's CPU affinity, and the main thread's
// affinity is the one tools read for the whole process.
func init() { runtime.LockOSThread() }

func main() {
	scenario := flag.String("scenario", "", "what to run: "+names())
	seconds := flag.Int("seconds", 3600, "run this long, then exit 0")
	flag.Parse()
	run, ok := scenarios[*scenario]
	if !ok {
		fmt.Fprintf(os.Stderr, "zoo: unknown scenario %q (want one of: %s)\n", *scenario, names())
		os.Exit(2)
	}
	run() // starts the scenario's goroutines and returns
	fmt.Println("READY")
	_ = os.Stdout.Sync()
	time.Sleep(time.Duration(*seconds) * time.Second)
	os.Exit(0)
}
