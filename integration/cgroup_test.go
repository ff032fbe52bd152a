package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestCgroupsPathSystemdForm: a cgroups path of systemd's slice:prefix:name
// form (containerd gives one for a parent ending in .slice, and under the
// systemd driver always) puts the container where process isolation puts
// it with the cgroupfs driver, as runc does: a cgroup of that name. In
// hypervisor isolation that is the shim's and QEMU's, so the engine's
// limits and OOM accounting reach the VM; delete removes it.
func TestCgroupsPathSystemdForm(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		name := "system.slice:runh-test:" + x.id("cgpath")
		limit := int64(64 << 20)
		id := x.startContainer("cgpath", func(s *specs.Spec) {
			s.Linux.CgroupsPath = name
			s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
		}, "sleep", "1000")
		dirs, err := ownCgroupDirs(x.state(id).Pid)
		if err != nil {
			t.Fatal(err)
		}
		var mem string
		for _, d := range dirs {
			if strings.HasPrefix(d, "/sys/fs/cgroup/memory/") {
				mem = d
			}
		}
		if filepath.Base(mem) != name {
			t.Fatalf("memory cgroup %q (of %v), want one named %s", mem, dirs, name)
		}
		if b, err := os.ReadFile(filepath.Join(mem, "memory.limit_in_bytes")); err != nil || string(b) == "9223372036854771712\n" {
			t.Errorf("memory limit of %s: %q %v, want a limit", mem, b, err)
		}
		x.must("delete", "--force", id)
		x.assertGone(id)
		for _, d := range dirs {
			if _, err := os.Stat(d); err == nil {
				t.Errorf("cgroup %s left behind", d)
			}
		}
	})
}
