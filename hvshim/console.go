package hvshim

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/runh-project/runh/hvshim/qemu"
)

// consoleTailLines is how much of the guest's console an error carries:
// its last words (a panic, the agent's last message) are what a failed
// boot is diagnosed from, and the VM's directory goes with the state.
const consoleTailLines = 3

// consoleTail returns the last lines of the guest console logged in the
// VM directory dir, joined by " | ", for an error message; "" if there
// are none. The text comes from the guest: only printable characters
// are kept, so that it cannot steer a terminal, and lines are cut short.
func consoleTail(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, qemu.ConsoleLog))
	if err != nil {
		return ""
	}
	if len(b) > 8192 {
		b = b[len(b)-8192:]
	}
	var lines []string
	for _, l := range bytes.Split(b, []byte("\n")) {
		s := strings.TrimSpace(strings.Map(func(r rune) rune {
			if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
				return -1
			}
			return r
		}, string(l)))
		if s == "" {
			continue
		}
		if len(s) > 160 {
			s = s[:160] + "..."
		}
		lines = append(lines, s)
	}
	if len(lines) > consoleTailLines {
		lines = lines[len(lines)-consoleTailLines:]
	}
	return strings.Join(lines, " | ")
}

// WithConsole adds to err the last lines of the guest console logged in
// the VM directory dir.
func WithConsole(err error, dir string) error {
	if t := consoleTail(dir); t != "" {
		return fmt.Errorf("%w; guest console: %s", err, t)
	}
	return err
}
