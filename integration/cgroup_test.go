package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestCgroupsPathSystemdForm: a cgroups path of systemd's slice:prefix:name
// form (containerd gives one for a parent ending in .slice, and under the
// systemd driver always) puts the container where process isolation puts
// it, as runc does: with the cgroupfs driver a cgroup of that name (on
// cgroup v2 beside the runtime's own), with the systemd driver the scope
// prefix-name.scope in the slice. In hypervisor isolation that is the
// shim's and QEMU's, so the engine's limits and OOM accounting reach the
// VM; delete removes it.
func TestCgroupsPathSystemdForm(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		name := "system.slice:runh-test:" + x.id("cgpath")
		limit := int64(64 << 20)
		id := x.startContainer("cgpath", func(s *specs.Spec) {
			s.Linux.CgroupsPath = name
			s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit}
		}, "sleep", "1000")
		pid := x.state(id).Pid
		dirs, err := ownCgroupDirs(pid)
		if err != nil {
			t.Fatal(err)
		}
		mem, err := hostCgroupDir(pid, "memory")
		if err != nil {
			t.Fatal(err)
		}
		want := name
		if systemdDriver() {
			want = "runh-test-" + x.id("cgpath") + ".scope"
			if p := filepath.Base(filepath.Dir(mem)); p != "system.slice" {
				t.Errorf("memory cgroup %q: want one in system.slice", mem)
			}
		}
		if filepath.Base(mem) != want {
			t.Fatalf("memory cgroup %q (of %v), want one named %s", mem, dirs, want)
		}
		limitFile, unlimited := "memory.limit_in_bytes", "9223372036854771712"
		if cgroupV2Host() {
			limitFile, unlimited = "memory.max", "max"
		}
		if b, err := os.ReadFile(filepath.Join(mem, limitFile)); err != nil || strings.TrimSpace(string(b)) == unlimited {
			t.Errorf("%s of %s: %q %v, want a limit", limitFile, mem, b, err)
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

// The suite's view of the host's cgroups: v1 controller hierarchies (with
// or without the hybrid's unified one), or cgroup v2 alone, where every
// controller's files are in the one cgroup of /proc/PID/cgroup's "0::"
// line. Tests read the host's files of a container through these, with
// the names of each version, so that they assert the same on both.

// cgroupV2Host reports a cgroup v2 host: /sys/fs/cgroup is cgroup2.
var cgroupV2Host = sync.OnceValue(func() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
})

// systemdDriver reports that the runtime under test uses the systemd
// cgroup driver (RUNH_BINARY adds --systemd-cgroup), as
// RUNH_TEST_CGROUP_DRIVER=systemd says; make test-hosts sets it. A
// container's cgroup is then a systemd scope, which systemd removes once
// its last process has gone, before delete.
func systemdDriver() bool { return os.Getenv("RUNH_TEST_CGROUP_DRIVER") == "systemd" }

// ownCgroupDirs returns the host cgroup directories pid lives in that differ
// from the test's own (i.e. the ones the runtime created for the container).
func ownCgroupDirs(pid int) ([]string, error) {
	self, err := parseCgroupFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	theirs, err := parseCgroupFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	var dirs []string
	for hier, p := range theirs {
		if p == self[hier] || p == "/" {
			continue
		}
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", hier, p))
	}
	sort.Strings(dirs)
	return dirs, nil
}

// parseCgroupFile maps each hierarchy's mount dir name (cpu, memory,
// systemd, unified; "" on a cgroup v2 host) to the path in it.
func parseCgroupFile(name string) (map[string]string, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		hier := parts[1]
		switch {
		case hier == "":
			hier = "unified"
			if cgroupV2Host() {
				hier = ""
			}
		case strings.HasPrefix(hier, "name="):
			hier = strings.TrimPrefix(hier, "name=")
		default:
			hier = strings.Split(hier, ",")[0]
		}
		m[hier] = parts[2]
	}
	return m, nil
}

// hostCgroupDir returns the host directory of pid's cgroup of a controller
// (memory, pids, cpu, cpuset): the controller's v1 hierarchy, or on a
// cgroup v2 host the one cgroup.
func hostCgroupDir(pid int, controller string) (string, error) {
	m, err := parseCgroupFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	hier := controller
	if cgroupV2Host() {
		hier = ""
	}
	p, ok := m[hier]
	if !ok {
		return "", fmt.Errorf("pid %d: no %s cgroup", pid, controller)
	}
	return filepath.Join("/sys/fs/cgroup", hier, p), nil
}

// hostCgroupFile returns the host path of a cgroup file of pid: v1file in
// the controller's v1 hierarchy, or v2file on a cgroup v2 host.
func hostCgroupFile(pid int, controller, v1file, v2file string) (string, error) {
	dir, err := hostCgroupDir(pid, controller)
	if err != nil {
		return "", err
	}
	if cgroupV2Host() {
		return filepath.Join(dir, v2file), nil
	}
	return filepath.Join(dir, v1file), nil
}
