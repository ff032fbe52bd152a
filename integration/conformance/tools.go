//go:build tools

// The blank imports pin runtime-tools v0.9.0 so that `go mod tidy` keeps
// the requirement; the validation programs are built from the module cache.
package main

import (
	_ "github.com/opencontainers/runtime-tools/cmd/runtimetest"
	_ "github.com/opencontainers/runtime-tools/validation/default"
)
