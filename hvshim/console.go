package hvshim

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/runh-project/runh/hvshim/qemu"
)

// consoleTailLines is how much of the guest's console an error carries:
// its last words (a panic, the agent's last message) are what a failed
// boot is diagnosed from, and the VM's directory goes with the state.
const consoleTailLines = 3

// bootNoise are console lines every healthy boot of runh's kernel prints
// even when quiet. They name no fault, so an error leaves them out rather
// than present them as a failure's last words: "PCI: Fatal" is the x86
// PCI init finding no configuration ports, which a microvm does not have
// (CONFIG_PCI is there for ACPI only, hvshim/assets/kernel/guest.config).
var bootNoise = map[string]bool{
	"PCI: Fatal: No config space access function found": true,
}

// logLines returns the lines of the log file name in the VM directory
// dir (its last 8 KiB), as text fit for an error message: the text comes
// from the guest or from QEMU, so only printable characters are kept,
// that it cannot steer a terminal, and lines are cut short.
func logLines(dir, name string) []string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil
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
	return lines
}

// consoleTail returns the last lines of the guest console logged in the
// VM directory dir, joined by " | ", for an error message; "" if there
// are none but bootNoise.
func consoleTail(dir string) string {
	var lines []string
	for _, l := range logLines(dir, qemu.ConsoleLog) {
		// The kernel's timestamp, if any, is not part of the message.
		msg := l
		if i := strings.Index(l, "] "); strings.HasPrefix(l, "[") && i > 0 {
			msg = l[i+2:]
		}
		if !bootNoise[msg] {
			lines = append(lines, l)
		}
	}
	if len(lines) > consoleTailLines {
		lines = lines[len(lines)-consoleTailLines:]
	}
	return strings.Join(lines, " | ")
}

// qemuLog returns what QEMU wrote to its stderr (StderrLog): its first
// line, which names the fault (an accelerator's error comes before its
// register dump), and its last, joined by " | "; "" if it wrote nothing.
func qemuLog(dir string) string {
	lines := logLines(dir, qemu.StderrLog)
	switch len(lines) {
	case 0:
		return ""
	case 1:
		return lines[0]
	case 2:
		return lines[0] + " | " + lines[1]
	}
	return lines[0] + " | ... | " + lines[len(lines)-1]
}

// qemuExitWait is how long WithConsole gives QEMU to end when the agent's
// connection broke: QEMU closes its end of the transport as it dies.
const qemuExitWait = time.Second

// WithConsole adds to err what the VM in the VM directory dir said last:
// whether QEMU q (nil: not known) has exited and how, QEMU's own log and
// the guest console's last lines. An agent that stopped answering leaves
// only these to say why, and the directory goes with the state. QEMU's
// log is left out when err is QEMU's exit, which already carries it.
func WithConsole(err error, dir string, q *qemu.VM) error {
	var more []string
	if q != nil {
		select {
		case <-q.Done():
			more = append(more, "qemu exited: "+q.ExitStatus())
		case <-time.After(qemuExitWait):
		}
	}
	var exit *qemu.ExitError
	if l := qemuLog(dir); l != "" && !errors.As(err, &exit) {
		more = append(more, "qemu.log: "+l)
	}
	if t := consoleTail(dir); t != "" {
		more = append(more, "guest console: "+t)
	}
	if len(more) == 0 {
		return err
	}
	return fmt.Errorf("%w; %s", err, strings.Join(more, "; "))
}
