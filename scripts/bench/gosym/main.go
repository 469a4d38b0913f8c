// gosym-lookup: the Go side of the inspect benchmark. It does what inspect's function lookup
// does, with the standard library: open the ELF file, load .gopclntab with debug/gosym (which
// decodes the whole function table), and look up the runtime functions mcalltrace probes.
package main

import (
	"debug/elf"
	"debug/gosym"
	"fmt"
	"os"
)

var wanted = []string{
	"runtime.mcall", "runtime.gogo", "runtime.findRunnable", "runtime.runqsteal", "runtime.execute",
	"runtime.park_m", "runtime.goexit0", "runtime.schedule", "runtime.stealWork", "runtime.gosched_m",
	"runtime.goschedguarded_m", "runtime.gopreempt_m", "runtime.preemptPark", "runtime.exitsyscall0",
}

func main() {
	file, err := elf.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	section := file.Section(".gopclntab")
	if section == nil {
		section = file.Section(".data.rel.ro.gopclntab")
	}
	data, err := section.Data()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	table, err := gosym.NewTable(nil, gosym.NewLineTable(data, file.Section(".text").Addr))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	found := 0
	for _, name := range wanted {
		if fn := table.LookupFunc(name); fn != nil {
			found++
			fmt.Printf("%s %#x %d\n", name, fn.Entry, fn.End-fn.Entry)
		}
	}
	fmt.Printf("%d functions, %d found\n", len(table.Funcs), found)
}
