//go:build !seccomp

package main

func seccompVersion() string { return "" }
