//go:build !cgotest

package main

func cgoEnabled() bool { return false }
