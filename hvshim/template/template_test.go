package template

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/qemu"
)

func TestSize(t *testing.T) {
	for in, want := range map[int]int{64: 256, 256: 256, 257: 512, 384: 512, 4096: 4096} {
		if got, ok := Size(in); !ok || got != want {
			t.Errorf("Size(%d) = %d %v, want %d", in, got, ok, want)
		}
	}
	if _, ok := Size(5000); ok {
		t.Error("5000 MiB has a template size")
	}
}

// TestKey: host-side paths do not change the key; what the guest sees
// (memory, devices, the initrd, hence runh's binary) does.
func TestKey(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "qemu")
	kernel := filepath.Join(dir, "vmlinux")
	for _, f := range []string{bin, kernel} {
		os.WriteFile(f, []byte(f), 0o755)
	}
	base := func() *qemu.Config {
		return &qemu.Config{Binary: bin, Kernel: kernel, Initrd: "/cache/initrd-aaaa.cpio", MemoryMiB: 256, CPUs: 1, Accel: "tcg",
			Dir: "/run/runh/c1/vm", Shares: []qemu.Share{{Tag: "runh", Path: "/run/runh/c1/share"}},
			NICs: []qemu.NIC{{MAC: "02:72:75:6e:68:00"}}}
	}
	k0, err := Key(base())
	if err != nil {
		t.Fatal(err)
	}
	other := base()
	other.Dir, other.Shares[0].Path = "/run/runh/c2/vm", "/run/runh/c2/share"
	if k, _ := Key(other); k != k0 {
		t.Error("another container's paths changed the key")
	}
	for name, mutate := range map[string]func(*qemu.Config){
		"memory":  func(c *qemu.Config) { c.MemoryMiB = 512 },
		"initrd":  func(c *qemu.Config) { c.Initrd = "/cache/initrd-bbbb.cpio" },
		"nics":    func(c *qemu.Config) { c.NICs = append(c.NICs, qemu.NIC{MAC: "02:72:75:6e:68:01"}) },
		"cmdline": func(c *qemu.Config) { c.Append = []string{"runh.debug=1"} },
	} {
		c := base()
		mutate(c)
		if k, _ := Key(c); k == k0 {
			t.Errorf("%s did not change the key", name)
		}
	}
}

// A memory file written after the template was made (as a VMM a guest
// took over could) is refused; the template as made is accepted.
func TestOpenRefusesChangedMemory(t *testing.T) {
	dir := t.TempDir()
	mem := filepath.Join(dir, "mem")
	if err := os.WriteFile(mem, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	state := []byte("device state")
	os.WriteFile(filepath.Join(dir, "state"), state, 0o600)
	sum := sha256.Sum256(state)
	id, err := memoryID(mem)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(meta{MemoryMiB: 1, State: hex.EncodeToString(sum[:]), Memory: id})
	os.WriteFile(filepath.Join(dir, "meta.json"), b, 0o600)
	f, _, err := open(dir, 1)
	if err != nil {
		t.Fatalf("template as made: %v", err)
	}
	f.Close()
	time.Sleep(10 * time.Millisecond)
	w, _ := os.OpenFile(mem, os.O_WRONLY, 0)
	w.WriteAt([]byte{1}, 4096)
	w.Close()
	if f, _, err := open(dir, 1); err == nil {
		f.Close()
		t.Fatal("a memory file written since: accepted")
	}
}

// What killed creates left behind goes at the next prune: a build's
// temporary directory unless a build of its key still holds the lock,
// and a template renamed away for removal. Templates stay.
func TestPruneSweepsLeftovers(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"aaaa", "aaaa.tmp-1", "bbbb.tmp-2", "cccc.gone-3"} {
		if err := os.MkdirAll(filepath.Join(root, d, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(root, "aaaa", "meta.json"), nil, 0o600)
	lock, err := os.OpenFile(filepath.Join(root, "bbbb.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	prune(root)
	for d, want := range map[string]bool{"aaaa": true, "aaaa.tmp-1": false, "bbbb.tmp-2": true, "cccc.gone-3": false} {
		if _, err := os.Stat(filepath.Join(root, d)); (err == nil) != want {
			t.Errorf("%s present: %v, want %v", d, err == nil, want)
		}
	}
}
