//go:build cgotest

package main

/*
static int answer(void) { return 42; }
*/
import "C"

// Calling into C links runtime/cgo, so this build is a real cgo binary (external C code, libc).
func cgoEnabled() bool { return C.answer() == 42 }
