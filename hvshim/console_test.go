package hvshim

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runh-project/runh/hvshim/qemu"
)

func TestConsoleTail(t *testing.T) {
	dir := t.TempDir()
	if got := consoleTail(dir); got != "" {
		t.Errorf("no console: %q", got)
	}
	log := "[    0.1] booting\n\n[    1.2] runh-agent: up\r\n\x1b[2J[    2.0] Kernel panic - not syncing: Out of memory\n" +
		strings.Repeat("x", 300) + "\n\n"
	if err := os.WriteFile(filepath.Join(dir, qemu.ConsoleLog), []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got := consoleTail(dir)
	want := "[    1.2] runh-agent: up | [2J[    2.0] Kernel panic - not syncing: Out of memory | " + strings.Repeat("x", 160) + "..."
	if got != want {
		t.Errorf("consoleTail:\n got %q\nwant %q", got, want)
	}
	base := errors.New("agent create: EOF")
	err := WithConsole(base, dir, nil)
	if !errors.Is(err, base) || !strings.HasPrefix(err.Error(), "agent create: EOF; guest console: [    1.2]") {
		t.Errorf("WithConsole: %v", err)
	}
}

// A console holding only what every boot prints says nothing: the error
// must not present it as the failure's cause. QEMU's log comes first.
func TestWithConsoleNoiseAndQEMULog(t *testing.T) {
	dir := t.TempDir()
	base := errors.New("agent create: EOF")
	if err := WithConsole(base, dir, nil); err != base {
		t.Errorf("no logs: %v", err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(qemu.ConsoleLog, "PCI: Fatal: No config space access function found\n")
	if err := WithConsole(base, dir, nil); err != base {
		t.Errorf("boot noise only: %v", err)
	}
	write(qemu.ConsoleLog, "[    0.5] PCI: Fatal: No config space access function found\n[    9.1] Kernel panic - not syncing: Attempted to kill init!\n")
	write(qemu.StderrLog, "KVM internal error. Suberror: 1\nemulation failure\nRAX=0 RBX=0\nEFER=0000000000001d01\n")
	want := "agent create: EOF; qemu.log: KVM internal error. Suberror: 1 | ... | EFER=0000000000001d01; " +
		"guest console: [    9.1] Kernel panic - not syncing: Attempted to kill init!"
	if err := WithConsole(base, dir, nil); err == nil || err.Error() != want {
		t.Errorf("WithConsole:\n got %v\nwant %s", err, want)
	}
	// QEMU's exit before QMP already carries its log's last line.
	exit := &qemu.ExitError{Status: "exit status 1", Tail: "EFER=0000000000001d01"}
	want = "qemu exited: exit status 1: EFER=0000000000001d01; " +
		"guest console: [    9.1] Kernel panic - not syncing: Attempted to kill init!"
	if err := WithConsole(exit, dir, nil); err == nil || err.Error() != want {
		t.Errorf("WithConsole of QEMU's exit:\n got %v\nwant %s", err, want)
	}
	write(qemu.StderrLog, "qemu-system-x86_64: terminating on signal 15\n")
	if got := qemuLog(dir); got != "qemu-system-x86_64: terminating on signal 15" {
		t.Errorf("qemuLog, one line: %q", got)
	}
}
