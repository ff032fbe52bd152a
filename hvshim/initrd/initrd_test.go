package initrd

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// entries parses a newc archive into name -> data.
func entries(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	for off := 0; ; {
		h := string(b[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad magic at %d", off)
		}
		field := func(i int) int {
			n, _ := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			return int(n)
		}
		size, nameLen := field(6), field(11)
		name := string(b[off+110 : off+110+nameLen-1])
		off = (off + 110 + nameLen + 3) &^ 3
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = string(b[off : off+size])
		off = (off + size + 3) &^ 3
	}
}

func TestWriteAndCache(t *testing.T) {
	dir := t.TempDir()
	init := filepath.Join(dir, "init")
	mod := filepath.Join(dir, "a.ko")
	os.WriteFile(init, []byte("binary-1"), 0o755)
	os.WriteFile(mod, []byte("module"), 0o644)
	s := Spec{Init: init, Modules: []string{mod}}
	var b bytes.Buffer
	if err := s.Write(&b); err != nil {
		t.Fatal(err)
	}
	e := entries(t, b.Bytes())
	if e["init"] != "binary-1" || e["modules/a.ko"] != "module" || e["modules/order"] != "a.ko\n" {
		t.Fatalf("archive entries: %q", e)
	}
	if _, ok := e["dev/console"]; !ok {
		t.Fatal("no /dev/console")
	}
	cache := filepath.Join(dir, "cache")
	p1, err := Ensure(cache, s)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := Ensure(cache, s); p != p1 {
		t.Fatalf("same inputs, new initrd %s", p)
	}
	os.WriteFile(init, []byte("binary-2"), 0o755)
	p2, err := Ensure(cache, s)
	if err != nil || p2 == p1 {
		t.Fatalf("changed binary not rebuilt: %s %v", p2, err)
	}
	// Another binary's initrd, recently used, stays: a VM may be about
	// to start from it.
	if _, err := os.Stat(p1); err != nil {
		t.Fatal("recent initrd of another binary removed")
	}
	old := time.Now().Add(-2 * staleAfter)
	os.Chtimes(p1, old, old)
	os.WriteFile(init, []byte("binary-3"), 0o755)
	if _, err := Ensure(cache, s); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p1); !os.IsNotExist(err) {
		t.Fatal("stale initrd kept")
	}
	if _, err := os.Stat(p2); err != nil {
		t.Fatal("recent initrd removed")
	}
}

func TestFloorInit(t *testing.T) {
	b := FloorInit()
	if string(b[1:4]) != "ELF" || len(b) != 64+56+24 {
		t.Fatalf("floor init: %d bytes", len(b))
	}
}
