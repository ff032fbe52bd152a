package shim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/runh-project/runh/libruntime"
)

// CgroupFile records the host cgroup directories the shim made, for
// delete to remove them.
const CgroupFile = "cgroup.json"

// vmOverheadMiB is what QEMU needs beyond the guest's RAM (its own heap,
// TCG's translation cache, virtio buffers).
const vmOverheadMiB = 256

// joinHostCgroup moves the shim, and so the QEMU it then starts, into the
// container's cgroup on the host (cgroupsPath, else one named after the
// container, as process isolation does), so that engines see the VM's
// usage. The memory limit is the VM's RAM plus QEMU's overhead, so that
// the guest's OOM killer, not the host's, acts on a container over its
// limit. CPU quotas and cpusets are left to the guest: under TCG the
// emulator's own work would count against them.
func joinHostCgroup(dir, id string, spec *specs.Spec, memMiB int) error {
	cg := &cgroups.Cgroup{Resources: &cgroups.Resources{SkipDevices: true}}
	var r *specs.LinuxResources
	path := ""
	if spec.Linux != nil {
		path, r = spec.Linux.CgroupsPath, spec.Linux.Resources
	}
	if strings.Contains(path, ":") {
		return nil // systemd's slice:prefix:name: not supported yet
	}
	if path != "" {
		cg.Path = filepath.Clean(path)
		if cg.Path == "/" || cg.Path == "." {
			return nil // a root is no container's own: never make or remove it
		}
	} else {
		cg.Name = id
	}
	if r != nil && r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		cg.Resources.Memory = int64(memMiB+vmOverheadMiB) << 20
	}
	if r != nil && r.CPU != nil && r.CPU.Shares != nil {
		cg.Resources.CpuShares = *r.CPU.Shares
		cg.Resources.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(*r.CPU.Shares)
	}
	m, err := manager.New(cg)
	if err != nil {
		return fmt.Errorf("host cgroup: %w", err)
	}
	err = m.Apply(os.Getpid())
	// Recorded even on failure: Apply may have made some directories.
	if b, jerr := json.Marshal(m.GetPaths()); jerr == nil {
		libruntime.WriteFileAtomic(filepath.Join(dir, CgroupFile), b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("host cgroup: %w", err)
	}
	if err := m.Set(cg.Resources); err != nil {
		return fmt.Errorf("host cgroup: %w", err)
	}
	return nil
}

// RemoveHostCgroup removes the cgroup directories joinHostCgroup made,
// once the shim and QEMU have exited.
func RemoveHostCgroup(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, CgroupFile))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var paths map[string]string
	if err := json.Unmarshal(b, &paths); err != nil {
		return fmt.Errorf("%s: %w", CgroupFile, err)
	}
	if err := cgroups.RemovePaths(paths); err != nil {
		return err
	}
	return os.Remove(filepath.Join(dir, CgroupFile))
}

// guestCgroupV1 lists the host's cgroup v1 hierarchies under
// /sys/fs/cgroup by directory name ("cpu", "cpu,cpuacct", "systemd" for
// name=systemd, "unified" for a hybrid host's cgroup2), for the guest to
// mount the same: a container sees the cgroup interface it would see on
// this host in process isolation. nil on a cgroup v2 host.
func guestCgroupV1() []string {
	if cgroups.IsCgroup2UnifiedMode() {
		return nil
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		f, g := strings.Fields(pre), strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 3 || filepath.Dir(f[4]) != "/sys/fs/cgroup" {
			continue
		}
		name := filepath.Base(f[4])
		switch g[0] {
		case "cgroup2":
			if name == "unified" {
				out = append(out, name)
			}
		case "cgroup":
			// Only the usual layout, where the directory names the
			// hierarchy's controllers (or its name).
			var ctl []string
			for _, o := range strings.Split(g[2], ",") {
				if o == "name=systemd" {
					ctl = append(ctl, "systemd")
				} else if o != "rw" && o != "ro" && !strings.Contains(o, "=") && o != "xattr" {
					ctl = append(ctl, o)
				}
			}
			if strings.Join(ctl, ",") == name {
				out = append(out, name)
			}
		}
	}
	return out
}
