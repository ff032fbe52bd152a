package libruntime

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestValidateID(t *testing.T) {
	good := []string{"a", "abc-DEF_1.2+3", strings.Repeat("x", MaxIDLength), "a..", "a.b"}
	bad := []string{"", ".", "..", "..a", ".new-x", "../x", "a/b", "a b", "a\x00b", "a\nb", strings.Repeat("x", MaxIDLength+1), "é"}
	for _, id := range good {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range bad {
		if err := ValidateID(id); err == nil {
			t.Errorf("ValidateID(%q) = nil, want an error", id)
		}
	}
}

func TestParseSignal(t *testing.T) {
	cases := map[string]unix.Signal{
		"9": unix.SIGKILL, "KILL": unix.SIGKILL, "SIGKILL": unix.SIGKILL, "sigterm": unix.SIGTERM,
		"usr1": unix.SIGUSR1, "SIGRTMIN+1": unix.Signal(35), "RTMAX-0": unix.Signal(64),
	}
	for in, want := range cases {
		got, err := ParseSignal(in)
		if err != nil || got != want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "65", "FOO", "SIG", "RTMIN+40"} {
		if _, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) succeeded, want an error", in)
		}
	}
}

func TestParseIsolation(t *testing.T) {
	iso, err := ParseIsolation(nil, ProcessIsolation)
	if err != nil || iso.Mode != ProcessIsolation {
		t.Fatalf("default: %+v %v", iso, err)
	}
	iso, err = ParseIsolation(nil, HypervisorIsolation)
	if err != nil || iso.Mode != HypervisorIsolation {
		t.Fatalf("default hypervisor: %+v %v", iso, err)
	}
	iso, err = ParseIsolation(map[string]string{AnnotationUntrusted: "true"}, ProcessIsolation)
	if err != nil || iso.Mode != HypervisorIsolation {
		t.Fatalf("untrusted: %+v %v", iso, err)
	}
	iso, err = ParseIsolation(map[string]string{
		AnnotationIsolation: "hypervisor", AnnotationVMMemory: "256", AnnotationVMCPUs: "2", AnnotationVMAccel: "tcg",
		"org.example.other": "ignored",
	}, ProcessIsolation)
	if err != nil || iso.Mode != HypervisorIsolation || iso.VM != (VMConfig{MemoryMiB: 256, CPUs: 2, Accel: "tcg"}) {
		t.Fatalf("full: %+v %v", iso, err)
	}
	// An explicit process annotation wins over the untrusted hint only
	// when it is the isolation annotation itself.
	iso, err = ParseIsolation(map[string]string{AnnotationIsolation: "process"}, HypervisorIsolation)
	if err != nil || iso.Mode != ProcessIsolation {
		t.Fatalf("explicit process: %+v %v", iso, err)
	}
	pod := map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
	for _, m := range []Mode{HypervisorIsolation, ProcessIsolation} {
		if iso, err := ParseIsolation(pod, m); err != nil || iso.Mode != m || iso.Pod.Role != PodSandbox {
			t.Errorf("pod sandbox with %s isolation: %+v %v", m, iso, err)
		}
	}
	bad := []map[string]string{
		{AnnotationIsolation: "vm"},
		{AnnotationIsolation: ""},
		{AnnotationVMMemory: "12"},
		{AnnotationVMMemory: "lots"},
		{AnnotationVMCPUs: "0"},
		{AnnotationVMCPUs: "1000"},
		{AnnotationVMAccel: "hvf"},
		{"io.runh.typo": "x"},
		{AnnotationUntrusted: "maybe"},
	}
	for _, a := range bad {
		_, err := ParseIsolation(a, ProcessIsolation)
		if err == nil {
			t.Errorf("ParseIsolation(%v) succeeded, want an error", a)
			continue
		}
		for k := range a {
			if !strings.Contains(err.Error(), k) {
				t.Errorf("error %q does not name annotation %s", err, k)
			}
		}
	}
}

func writeBundle(t *testing.T, config string, rootfs bool) string {
	t.Helper()
	dir := t.TempDir()
	if rootfs {
		os.Mkdir(filepath.Join(dir, "rootfs"), 0o755)
	}
	if config != "" {
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o644)
	}
	return dir
}

const goodConfig = `{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{}}`

func TestLoadBundle(t *testing.T) {
	b, err := LoadBundle(writeBundle(t, goodConfig, true))
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(b.Rootfs) || filepath.Base(b.Rootfs) != "rootfs" {
		t.Errorf("rootfs = %q", b.Rootfs)
	}
	cases := []struct{ name, config, want string }{
		{"missing", "", "config.json not found"},
		{"truncated", `{"ociVersion":`, "truncated"},
		{"not object", `[]`, "not a JSON object"},
		{"wrong type", `{"ociVersion":1}`, "ociVersion"},
		{"no version", `{"process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{}}`, "ociVersion"},
		{"bad version", strings.Replace(goodConfig, "1.0.2", "2.0.0", 1), "unsupported ociVersion"},
		{"no args", strings.Replace(goodConfig, `"sh"`, ``, 1), "process.args"},
		{"relative cwd", strings.Replace(goodConfig, `"cwd":"/"`, `"cwd":"tmp"`, 1), "absolute"},
		{"no root", strings.Replace(goodConfig, `"root":{"path":"rootfs"},`, ``, 1), "root.path"},
		{"missing rootfs", strings.Replace(goodConfig, `rootfs`, `nope`, 1), "nope"},
		{"no process", `{"ociVersion":"1.0.0","root":{"path":"rootfs"},"linux":{}}`, "process"},
	}
	for _, c := range cases {
		_, err := LoadBundle(writeBundle(t, c.config, true))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	dir := writeBundle(t, goodConfig, false)
	os.WriteFile(filepath.Join(dir, "rootfs"), nil, 0o644)
	if _, err := LoadBundle(dir); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("rootfs file: %v", err)
	}
}

func TestStoreReserveIsExclusive(t *testing.T) {
	s := &Store{Root: t.TempDir()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := s.Reserve(&Meta{ID: "same", Created: time.Now()})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
				h.Close()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d creates of one ID won, want exactly 1", wins)
	}
	ents, _ := os.ReadDir(s.Root)
	if len(ents) != 1 || ents[0].Name() != "same" {
		t.Fatalf("store holds %v, want only the winner", ents)
	}
	ids, _ := s.List()
	if len(ids) != 1 {
		t.Fatalf("List = %v", ids)
	}
}

func TestStoreLockAndRemove(t *testing.T) {
	s := &Store{Root: t.TempDir()}
	h, err := s.Reserve(&Meta{ID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		h2, err := s.Open("c", true)
		if err == nil {
			h2.Close()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("Open did not wait for the lock: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	// The holder deletes the container; the waiter must then see it gone.
	if err := h.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Open after remove: %v", err)
	}
	if _, err := s.Open("../c", false); err == nil {
		t.Fatal("Open accepted a bad ID")
	}
}

func TestWriteFileAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := WriteFileAtomic(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	ents, _ := os.ReadDir(filepath.Dir(p))
	if string(data) != "two" || len(ents) != 1 {
		t.Fatalf("content %q, %d entries", data, len(ents))
	}
}
