package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/runh-project/runh/libruntime"
)

// CgroupFile records the host cgroup the shim made (its configuration and
// directories), for update, OOM reporting and delete.
const CgroupFile = "cgroup.json"

// vmOverheadMiB is what QEMU needs beyond the guest's RAM (its own heap,
// TCG's translation cache, virtio buffers).
const vmOverheadMiB = 256

// hostCgroup is what CgroupFile holds.
type hostCgroup struct {
	Config *cgroups.Cgroup   `json:"config"`
	Paths  map[string]string `json:"paths"`
}

// joinHostCgroup moves the shim, and so the QEMU it then starts, into the
// container's cgroup on the host, made as process isolation makes it
// (libcontainer's specconv: cgroupsPath, else one named after the
// container; with systemd, a scope in the slice:prefix:name form's
// slice, else that form taken as cgroupfs takes it), so that engines see
// the VM's usage; it applies the spec's limits there as hostResources says.
// hostPid is the caller's PID in the host's PID namespace, which systemd
// knows it by (the shim's own namespace calls it 1, systemd's PID).
// Rootless, a cgroup the shim may not make or join is skipped unless a
// limit needs it, as libcontainer does for a rootless container: the VM
// then stays in its caller's cgroups. viaRuntime, when not nil, makes the
// cgroup instead of the shim (the shim's runtimeCgroup).
func joinHostCgroup(dir, id string, spec *specs.Spec, memMiB int, systemd, rootless bool, hostPid int,
	viaRuntime func(*CgroupRequest) (map[string]string, error)) error {
	cg, err := hostCgroupConfig(id, spec, memMiB, systemd, rootless)
	if err != nil || cg == nil {
		return err
	}
	var paths map[string]string
	if viaRuntime != nil {
		paths, err = viaRuntime(&CgroupRequest{ID: id, Spec: spec, MemoryMiB: memMiB, Systemd: systemd, Rootless: rootless})
	} else {
		// cgroupfs takes a PID of the writer's namespace, systemd the host's.
		pid := os.Getpid()
		if systemd {
			pid = hostPid
		}
		paths, err = applyHostCgroup(cg, pid)
	}
	// Recorded even on failure: Apply may have made some directories.
	if b, jerr := json.Marshal(hostCgroup{Config: cg, Paths: paths}); jerr == nil && paths != nil {
		libruntime.WriteFileAtomic(filepath.Join(dir, CgroupFile), b, 0o600)
	}
	if err != nil {
		return fmt.Errorf("host cgroup: %w", err)
	}
	return nil
}

// hostCgroupConfig is the host cgroup joinHostCgroup makes; nil for none.
func hostCgroupConfig(id string, spec *specs.Spec, memMiB int, systemd, rootless bool) (*cgroups.Cgroup, error) {
	// The spec's own resources are the guest's; hostResources says which
	// of them the host cgroup gets.
	s := *spec
	var r *specs.LinuxResources
	if spec.Linux != nil {
		l := *spec.Linux
		r, l.Resources = l.Resources, nil
		s.Linux = &l
	}
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{CgroupName: id, UseSystemdCgroup: systemd, RootlessCgroups: rootless, Spec: &s}, nil)
	if err != nil {
		return nil, fmt.Errorf("host cgroup: %w", err)
	}
	if p := filepath.Clean(cg.Path); !systemd && cg.Path != "" && (p == "/" || p == ".") {
		return nil, nil // a root is no container's own: never make or remove it
	}
	cg.Resources = hostResources(r, memMiB)
	return cg, nil
}

// applyHostCgroup makes cg, moves pid into it and sets its limits; it
// returns the cgroup's directories, also when it fails part way.
func applyHostCgroup(cg *cgroups.Cgroup, pid int) (map[string]string, error) {
	m, err := manager.New(cg)
	if err != nil {
		return nil, err
	}
	if err = m.Apply(pid); errors.Is(err, cgroups.ErrRootless) {
		err = nil // Set fails on a limit whose cgroup was skipped
	}
	if err == nil {
		err = m.Set(cg.Resources)
	}
	return m.GetPaths(), err
}

// CgroupRequest is a shim's request to the runtime that started it to make
// its host cgroup and move it in (SyncMsg): rootless under the user's
// systemd, which the shim cannot talk to from its PID namespace
// (libcontainer learns the UID owning the user's bus with `busctl --user
// status`, which finds the bus's PID, hence its cgroup and owner, only in
// the host's PID namespace). The runtime, in that namespace, asks it as
// runc does.
type CgroupRequest struct {
	ID        string      `json:"id"`
	Spec      *specs.Spec `json:"spec"`
	MemoryMiB int         `json:"memoryMiB"`
	Systemd   bool        `json:"systemd"`
	Rootless  bool        `json:"rootless"`
}

// CgroupReply is the runtime's answer to a CgroupRequest.
type CgroupReply struct {
	Paths map[string]string `json:"paths,omitempty"`
	Error string            `json:"error,omitempty"`
}

// Apply makes the host cgroup r describes and moves the shim, pid in the
// caller's (the host's) PID namespace, into it.
func (r *CgroupRequest) Apply(pid int) CgroupReply {
	cg, err := hostCgroupConfig(r.ID, r.Spec, r.MemoryMiB, r.Systemd, r.Rootless)
	var paths map[string]string
	if err == nil && cg != nil {
		paths, err = applyHostCgroup(cg, pid)
	}
	reply := CgroupReply{Paths: paths}
	if err != nil {
		reply.Error = err.Error()
	}
	return reply
}

// hostResources are the limits of the VM's host cgroup while the VM boots.
// Memory is the VM's RAM plus QEMU's overhead when the spec limits memory,
// so that the guest's OOM killer, not the host's, acts on a container over
// its limit; swappiness and OOM-killer disabling are the spec's. CPU shares
// (or weight) are the spec's; the other CPU limits come once the container
// exists in the guest (limitHostCPU). Pids and devices are enforced in the
// guest only: QEMU's and the shim's threads would count against a pids
// limit, and QEMU needs devices a container may not have.
func hostResources(r *specs.LinuxResources, memMiB int) *cgroups.Resources {
	res := &cgroups.Resources{SkipDevices: true}
	if r == nil {
		return res
	}
	if m := r.Memory; m != nil {
		if m.Limit != nil && *m.Limit > 0 {
			res.Memory = int64(memMiB+vmOverheadMiB) << 20
		}
		res.MemorySwappiness = m.Swappiness
		if m.DisableOOMKiller != nil {
			res.OomKillDisable = *m.DisableOOMKiller
		}
	}
	if c := r.CPU; c != nil && c.Shares != nil {
		setHostCPU(res, &specs.LinuxCPU{Shares: c.Shares})
	}
	return res
}

// limitHostCPU applies the spec's CPU limits (quota and period, cpuset,
// realtime) to the VM's host cgroup once the container exists in the
// guest, so that a VM container takes no more host CPU than its process
// twin; QEMU's own work (TCG's translation, the guest kernel) counts
// against them. Not while the VM boots: under TCG a boot is CPU-bound, and
// a quota of half a CPU made it twice as slow (docs/hypervisor.md).
func limitHostCPU(dir string, spec *specs.Spec) error {
	if spec.Linux == nil || spec.Linux.Resources == nil {
		return nil
	}
	return updateHostCgroup(dir, spec.Linux.Resources)
}

// setHostCPU copies the CPU settings of c onto res.
func setHostCPU(res *cgroups.Resources, c *specs.LinuxCPU) {
	if c == nil {
		return
	}
	if c.Shares != nil && *c.Shares != 0 {
		res.CpuShares = *c.Shares
		res.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(*c.Shares)
	}
	if c.Quota != nil {
		res.CpuQuota = *c.Quota
	}
	if c.Period != nil {
		res.CpuPeriod = *c.Period
	}
	if c.RealtimeRuntime != nil {
		res.CpuRtRuntime = *c.RealtimeRuntime
	}
	if c.RealtimePeriod != nil {
		res.CpuRtPeriod = *c.RealtimePeriod
	}
	res.CpusetCpus, res.CpusetMems = c.Cpus, c.Mems
}

// updateHostCgroup applies the CPU settings of r (an update's) to the VM's
// host cgroup, as the guest applies all of them to the container's. Memory
// stays: the VM's RAM is fixed at boot.
func updateHostCgroup(dir string, r *specs.LinuxResources) error {
	if r == nil || r.CPU == nil {
		return nil
	}
	res := &cgroups.Resources{SkipDevices: true}
	setHostCPU(res, r.CPU)
	m, err := hostCgroupManager(dir)
	if err != nil || m == nil {
		return err
	}
	if err := m.Set(res); err != nil {
		return fmt.Errorf("host cgroup: %w", err)
	}
	return nil
}

// readHostCgroup reads what joinHostCgroup recorded; nil when the VM has
// no host cgroup of its own.
func readHostCgroup(dir string) (*hostCgroup, error) {
	b, err := os.ReadFile(filepath.Join(dir, CgroupFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var h hostCgroup
	if err := json.Unmarshal(b, &h); err != nil || h.Config == nil {
		return nil, fmt.Errorf("%s: not a host cgroup record (%v)", CgroupFile, err)
	}
	return &h, nil
}

// hostCgroupPaths returns the host cgroup's directories by controller.
func hostCgroupPaths(dir string) (map[string]string, error) {
	h, err := readHostCgroup(dir)
	if h == nil {
		return nil, err
	}
	return h.Paths, nil
}

// hostCgroupManager returns the manager of the host cgroup joinHostCgroup
// made, of the driver that made it; nil without one.
func hostCgroupManager(dir string) (cgroups.Manager, error) {
	h, err := readHostCgroup(dir)
	if h == nil {
		return nil, err
	}
	h.Config.Resources = &cgroups.Resources{SkipDevices: true}
	if h.Config.Systemd && h.Config.Rootless && os.Getpid() == 1 {
		// The shim, in its PID namespace, cannot reach the user's
		// systemd (CgroupRequest): it writes the files of the scope,
		// delegated to the user, itself. A reload of the user's
		// systemd may reset what the unit does not say.
		c := *h.Config
		c.Systemd = false
		h.Config = &c
	}
	m, err := manager.NewWithPaths(h.Config, h.Paths)
	if err != nil {
		return nil, fmt.Errorf("host cgroup: %w", err)
	}
	return m, nil
}

// vcpusForCpuset is the number of vCPUs a VM needs for its container to
// be given the spec's cpuset in the guest: one past the highest CPU named
// (0 when there is none).
func vcpusForCpuset(r *specs.LinuxResources) int {
	if r == nil || r.CPU == nil || r.CPU.Cpus == "" {
		return 0
	}
	n := 0
	for _, part := range strings.Split(r.CPU.Cpus, ",") {
		_, hi, _ := strings.Cut(strings.TrimSpace(part), "-")
		if hi == "" {
			hi = strings.TrimSpace(part)
		}
		if v, err := strconv.Atoi(hi); err == nil && v+1 > n {
			n = v + 1
		}
	}
	return n
}

// RemoveHostCgroup removes the host cgroup joinHostCgroup made (with
// systemd, its scope), once the shim and QEMU have exited.
func RemoveHostCgroup(dir string) error {
	m, err := hostCgroupManager(dir)
	if err != nil || m == nil {
		return err
	}
	if err := m.Destroy(); err != nil {
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
