//go:build seccomp

package main

import (
	"fmt"

	seccomp "github.com/seccomp/libseccomp-golang"
)

func seccompVersion() string {
	major, minor, micro := seccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", major, minor, micro)
}
