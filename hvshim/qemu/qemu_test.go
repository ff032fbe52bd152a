package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSpecialFiles(t *testing.T) {
	for v, ok := range map[string]bool{
		"QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)":      false,
		"QEMU emulator version 8.0.4":                                         false,
		"QEMU emulator version 8.1.0":                                         true,
		"QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)": true,
		"garbage": false,
	} {
		if err := SpecialFiles(v); (err == nil) != ok {
			t.Errorf("SpecialFiles(%q) = %v, want ok %v", v, err, ok)
		}
	}
}

// A QEMU installed under a prefix boots with its own qboot.rom, which
// the jail then holds, and every VM gets the balloon that returns freed
// pages.
func TestFirmware(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "qemu-system-x86_64")
	rom := filepath.Join(dir, "share", "qemu", "qboot.rom")
	for _, f := range []string{bin, rom, filepath.Join(dir, "share", "qemu", "bios-microvm.bin")} {
		os.MkdirAll(filepath.Dir(f), 0o755)
		os.WriteFile(f, nil, 0o755)
	}
	if got := Firmware(bin); got != rom {
		t.Fatalf("Firmware = %q, want %q", got, rom)
	}
	c := &Config{Dir: dir, Kernel: "/k", Initrd: "/i", MemoryMiB: 256, CPUs: 1, Firmware: Firmware(bin)}
	args, _ := c.Args()
	if i := slices.Index(args, "-bios"); i < 0 || args[i+1] != rom {
		t.Errorf("no -bios %s in %q", rom, args)
	}
	if !slices.Contains(args, "virtio-balloon-device,free-page-reporting=on") {
		t.Errorf("no free-page-reporting balloon in %q", args)
	}
	if j := c.jail(bin, args); !slices.Contains(j.Files, rom) {
		t.Errorf("jail files %q lack %s", j.Files, rom)
	}
}
