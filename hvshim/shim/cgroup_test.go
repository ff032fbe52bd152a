package shim

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestVCPUsForCpuset(t *testing.T) {
	for cpus, want := range map[string]int{"": 0, "0": 1, "1": 2, "0-1": 2, "0,3": 4, "2-5,7": 8, " 1 , 4-6 ": 7} {
		r := &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: cpus}}
		if got := vcpusForCpuset(r); got != want {
			t.Errorf("cpuset %q: %d vCPUs, want %d", cpus, got, want)
		}
	}
	if got := vcpusForCpuset(nil); got != 0 {
		t.Errorf("no resources: %d vCPUs", got)
	}
}

func TestHostResources(t *testing.T) {
	shares, period := uint64(512), uint64(100000)
	quota, limit := int64(50000), int64(32<<20)
	swappiness := uint64(10)
	r := &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period, Cpus: "0", Mems: "0"},
		Memory: &specs.LinuxMemory{Limit: &limit, Swappiness: &swappiness},
	}
	res := hostResources(r, 256)
	// The rest of the CPU limits come after the boot (limitHostCPU).
	if res.CpuShares != 512 || res.CpuQuota != 0 || res.CpuPeriod != 0 || res.CpusetCpus != "" {
		t.Errorf("CPU while booting: %+v", res)
	}
	if res.Memory != (256+vmOverheadMiB)<<20 || res.MemorySwappiness == nil || *res.MemorySwappiness != 10 {
		t.Errorf("memory: %d, swappiness %v", res.Memory, res.MemorySwappiness)
	}
	if res.PidsLimit != nil || !res.SkipDevices {
		t.Errorf("pids and devices must stay the guest's: %+v", res)
	}
	if res := hostResources(nil, 256); res.Memory != 0 || res.CpuQuota != 0 {
		t.Errorf("no resources: %+v", res)
	}
}
