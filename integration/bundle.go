// Package integration holds runh's end-to-end tests: the real binary, run as
// root, on real busybox bundles, each test body once per isolation mode.
//
//	go test ./integration/ -count=1 -v
//
// RUNH_BINARY selects the runtime (default ../bin/runh; /usr/sbin/runc is the
// reference), RUNH_TEST_MODES the modes (default "process,hypervisor"; the
// hypervisor subtests skip with the reason unless `check --format json`
// reports "hypervisor": {"usable": true}), RUNH_TEST_VM_PARALLEL how many
// VM-backed tests run at once (default 2).
//
// This file is the part other suites (engine tests, benchmarks) reuse:
// building OCI bundles for either isolation mode on a shared busybox rootfs.
package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Isolation modes and the annotation that selects them.
const (
	ModeProcess         = "process"
	ModeHypervisor      = "hypervisor"
	IsolationAnnotation = "io.runh.isolation"
)

// BuildRootfs writes a busybox rootfs into dir with the repository's
// scripts/mkrootfs.sh (script is that script's path).
func BuildRootfs(script, dir string) error {
	out, err := exec.Command(script, dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", script, dir, err, out)
	}
	return nil
}

// DefaultSpec returns a spec close to `runc spec`'s default, but without a
// terminal and with args as the process, on the given (absolute) rootfs. The
// root stays read-only so many bundles can share one rootfs; /tmp is a
// private tmpfs for scratch files.
func DefaultSpec(rootfs string, args ...string) *specs.Spec {
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs, Readonly: true},
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps, Ambient: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Hostname:    "runh",
		Annotations: map[string]string{},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=16m"}},
		},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
				"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
				"/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// WriteBundle creates dir and writes spec into it as config.json, with the
// isolation annotation for mode ("" or ModeProcess leave the default, so the
// process-mode bundle is exactly what a runc user would write).
func WriteBundle(dir string, spec *specs.Spec, mode string) error {
	if mode != "" && mode != ModeProcess {
		if spec.Annotations == nil {
			spec.Annotations = map[string]string{}
		}
		spec.Annotations[IsolationAnnotation] = mode
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
}

// NewBundle writes a bundle in dir running args on rootfs in the given mode;
// mutate (may be nil) adjusts the spec first.
func NewBundle(dir, rootfs, mode string, mutate func(*specs.Spec), args ...string) error {
	spec := DefaultSpec(rootfs, args...)
	if mutate != nil {
		mutate(spec)
	}
	return WriteBundle(dir, spec, mode)
}
