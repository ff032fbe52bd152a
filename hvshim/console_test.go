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
	err := WithConsole(base, dir)
	if !errors.Is(err, base) || !strings.HasPrefix(err.Error(), "agent create: EOF; guest console: [    1.2]") {
		t.Errorf("WithConsole: %v", err)
	}
}
