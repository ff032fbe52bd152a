package libruntime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoadBundle feeds arbitrary config.json content to the bundle loader:
// it must return a bundle or an error, never panic, and never accept a
// bundle without the fields every backend relies on.
func FuzzLoadBundle(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte(`{"ociVersion":"1.0.2","process":{"args":[""],"cwd":"/"},"root":{"path":"rootfs"},"linux":{}}`))
	f.Add([]byte(`{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","env":["=x"]},"root":{"path":"rootfs"},"linux":{}}`))
	f.Add([]byte(`{"ociVersion":"1.0.2","process":{"user":{"uid":-1}}}`))
	f.Add([]byte(`{"ociVersion":"1.0.2","root":{"path":"../../../etc"},"process":{"args":["sh"],"cwd":"/"},"linux":{}}`))
	f.Add([]byte(`{"ociVersion":"1.0.2","annotations":{"io.runh.isolation":"hypervisor"}}`))
	f.Add([]byte("\x00"))
	f.Add([]byte(`{`))
	dir := f.TempDir()
	os.Mkdir(filepath.Join(dir, "rootfs"), 0o755)
	f.Fuzz(func(t *testing.T, config []byte) {
		if err := os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := LoadBundle(dir)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if b.Spec.Process == nil || len(b.Spec.Process.Args) == 0 || b.Spec.Linux == nil || !filepath.IsAbs(b.Rootfs) {
			t.Fatalf("accepted an incomplete bundle: %s", config)
		}
	})
}

// FuzzParseIsolation checks that any annotations either select a known mode
// with sizes in range, or are refused with an error naming an annotation.
func FuzzParseIsolation(f *testing.F) {
	f.Add(AnnotationIsolation, "hypervisor", AnnotationVMMemory, "512")
	f.Add(AnnotationVMCPUs, "0", AnnotationVMAccel, "kvm")
	f.Add(AnnotationUntrusted, "true", "io.runh.x", "")
	f.Add(AnnotationVMMemory, "99999999999999999999", AnnotationIsolation, "process")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		iso, err := ParseIsolation(map[string]string{k1: v1, k2: v2}, ProcessIsolation)
		if err != nil {
			if !strings.Contains(err.Error(), "annotation ") {
				t.Fatalf("error does not name the annotation: %v", err)
			}
			return
		}
		if iso.Mode != ProcessIsolation && iso.Mode != HypervisorIsolation {
			t.Fatalf("unknown mode %q", iso.Mode)
		}
		if m := iso.VM.MemoryMiB; m != 0 && (m < MinVMMemoryMiB || m > MaxVMMemoryMiB) {
			t.Fatalf("memory %d out of range", m)
		}
		if c := iso.VM.CPUs; c < 0 || c > MaxVMCPUs {
			t.Fatalf("cpus %d out of range", c)
		}
	})
}

// FuzzValidateID checks that every accepted ID is one safe path component.
func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"abc", "..", "a/b", "a\x00", strings.Repeat("x", 300), "-x", ".hidden"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ValidateID(id) != nil {
			return
		}
		if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00\n") || len(id) > MaxIDLength ||
			filepath.Base(id) != id {
			t.Fatalf("accepted unsafe id %q", id)
		}
	})
}
