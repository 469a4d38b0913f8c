// gosymdump prints, for every function of a Go binary's .gopclntab, the file and line that Go's
// own debug/gosym gives at its entry and halfway through it: the oracle for mcalltrace's own
// line-table parser. Output: one "name<TAB>pc<TAB>file<TAB>line" per PC, PCs in hex.
package main

import (
	"bufio"
	"debug/elf"
	"debug/gosym"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gosymdump BINARY")
		os.Exit(2)
	}
	file, err := elf.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	section := file.Section(".gopclntab")
	text := file.Section(".text")
	if section == nil || text == nil {
		fmt.Fprintln(os.Stderr, "no .gopclntab or .text")
		os.Exit(1)
	}
	data, err := section.Data()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	table, err := gosym.NewTable(nil, gosym.NewLineTable(data, text.Addr))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for _, fn := range table.Funcs {
		for _, pc := range []uint64{fn.Entry, fn.Entry + (fn.End-fn.Entry)/2} {
			name, line, _ := table.PCToLine(pc)
			fmt.Fprintf(out, "%s\t%x\t%s\t%d\n", fn.Name, pc, name, line)
		}
	}
}
