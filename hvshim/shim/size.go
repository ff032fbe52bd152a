package shim

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim"
	"github.com/runh-project/runh/hvshim/template"
)

// Caps on a VM sized after the host: the largest VM a container without
// limits gets. Untouched memory costs the host nothing (the guest's free
// pages are reported back, hvshim/qemu), idle vCPUs a halted thread each.
const (
	maxDefaultMemoryMiB = 2048
	maxDefaultCPUs      = 16
)

// vmSize picks the VM's memory and vCPUs so that the container sees what
// process isolation would give it: the annotations when they say; else
// the spec's limits (memory: the limit plus room for the guest kernel and
// agent, whose OOM killer must act first; vCPUs: quota/period rounded up,
// and at least as many as the cpuset names); else, without a limit, the
// host's memory and the CPUs the shim may run on, up to the caps above. A
// pod's sandbox is sized by the engine's figure for the whole pod.
func vmSize(cfg Config, spec *specs.Spec) (mem, cpus int) {
	c := cfg.VM
	mem, cpus = c.MemoryMiB, c.CPUs
	var r *specs.LinuxResources
	if spec.Linux != nil {
		r = spec.Linux.Resources
	}
	if cfg.Pod {
		r = nil // the pause container's limits are not the pod's
		if mem == 0 && cfg.PodMemoryMiB > 0 {
			mem = max(podDefaultMiB, cfg.PodMemoryMiB+128)
		}
	}
	if mem == 0 && r != nil && r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		mem = int(*r.Memory.Limit>>20) + 128
	}
	if mem == 0 {
		mem = hostMemoryMiB()
	}
	if cpus == 0 && r != nil && r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil && *r.CPU.Period > 0 && *r.CPU.Quota > 0 {
		cpus = int((uint64(*r.CPU.Quota) + *r.CPU.Period - 1) / *r.CPU.Period)
	}
	if c.CPUs == 0 {
		cpus = max(cpus, vcpusForCpuset(r)) // the guest must have the CPUs the cpuset names
	}
	if cpus == 0 {
		cpus = hostCPUs()
	}
	mem = max(mem, hvshim.DefaultMemoryMiB)
	if m, ok := template.Size(mem); ok && !c.NoTemplate {
		mem = m // restored from a template of that size
	}
	return mem, min(cpus, maxDefaultCPUs)
}

// hostMemoryMiB is the memory of a VM without a limit: the host's, up to
// maxDefaultMemoryMiB.
func hostMemoryMiB() int {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return hvshim.DefaultMemoryMiB
	}
	return min(int(uint64(si.Totalram)*uint64(si.Unit)>>20), maxDefaultMemoryMiB)
}

// hostCPUs is the vCPU count of a VM without a CPU limit: the CPUs the
// shim may run on (its affinity, which an engine's cpuset narrows), as
// nproc in process isolation would count them.
func hostCPUs() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || set.Count() == 0 {
		return hvshim.DefaultCPUs
	}
	return min(set.Count(), maxDefaultCPUs)
}
