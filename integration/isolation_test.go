package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostBootID tells a VM from the host: the kernel's boot_id is not
// namespaced, so a process-isolated container reads the host's and a
// VM-isolated one its guest kernel's.
func hostBootID(t *testing.T) string {
	t.Helper()
	id := strings.TrimSpace(readFile("/proc/sys/kernel/random/boot_id"))
	if id == "" {
		t.Fatal("cannot read the host boot_id")
	}
	return id
}

// TestIsolationChoice checks every way of choosing the isolation lands the
// container where it should: the annotation, the untrusted-workload
// annotation, the global --isolation flag and the runh-vm name.
func TestIsolationChoice(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		host := hostBootID(t)
		type way struct {
			name   string
			bin    string // "" is the runtime under test
			global []string
			ann    map[string]string
			runh   bool // a runh-only way, skipped with runc
		}
		var ways []way
		if x.mode == ModeProcess {
			ways = []way{
				{name: "default"},
				{name: "annotation", ann: map[string]string{IsolationAnnotation: ModeProcess}, runh: true},
				{name: "flag", global: []string{"--isolation", "process"}, runh: true},
			}
		} else {
			ways = []way{
				{name: "annotation", ann: map[string]string{IsolationAnnotation: ModeHypervisor}},
				{name: "untrusted-workload", ann: map[string]string{"io.kubernetes.cri.untrusted-workload": "true"}},
				{name: "flag", global: []string{"--isolation", "hypervisor"}},
				{name: "runh-vm", bin: filepath.Join(filepath.Dir(runtimeBin), "runh-vm")},
			}
		}
		for _, w := range ways {
			t.Run(w.name, func(t *testing.T) {
				if isRunc && w.runh {
					t.Skip("runh-only way of choosing the isolation")
				}
				if w.bin != "" {
					if _, err := os.Stat(w.bin); err != nil {
						t.Fatalf("%s: %v (make should create the runh-vm symlink)", w.bin, err)
					}
				}
				y := x.at(t)
				name := "iso-" + w.name
				id := y.id(name)
				// Write the bundle without the mode's annotation: each way
				// sets what it needs.
				s := DefaultSpec(rootfsDir, "cat", "/proc/sys/kernel/random/boot_id")
				for k, v := range w.ann {
					s.Annotations[k] = v
				}
				bundle := filepath.Join(y.dir, "bundle-"+name)
				if err := WriteBundle(bundle, s, ""); err != nil {
					t.Fatal(err)
				}
				y.cleanupContainer(id)
				args := append(append([]string{}, w.global...), "run", "--bundle", bundle, id)
				r := y.runO(opts{bin: w.bin}, args...)
				if r.code != 0 {
					t.Fatalf("run: %v", r)
				}
				got := strings.TrimSpace(r.stdout)
				if x.mode == ModeProcess && got != host {
					t.Errorf("boot_id %q differs from the host's %q: not process isolation", got, host)
				}
				if x.mode == ModeHypervisor && (got == host || got == "") {
					t.Errorf("boot_id %q is the host's: not in a VM", got)
				}
				y.assertGone(id)
			})
		}
	})
}
