package shim

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/runh-project/runh/libruntime"
)

func TestVMSize(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	res := func(r specs.LinuxResources) *specs.Spec { return &specs.Spec{Linux: &specs.Linux{Resources: &r}} }
	wantHostMem := max(hostMemoryMiB(), 256)
	for _, c := range []struct {
		name      string
		vm        libruntime.VMConfig
		spec      *specs.Spec
		mem, cpus int
	}{
		{"no limits: the host's", libruntime.VMConfig{}, &specs.Spec{}, roundTemplate(wantHostMem), hostCPUs()},
		{"quota 1.5 CPUs", libruntime.VMConfig{}, res(specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)}}), roundTemplate(wantHostMem), 2},
		{"cpuset 0-2", libruntime.VMConfig{}, res(specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-2"}}), roundTemplate(wantHostMem), 3},
		{"memory limit 100 MiB", libruntime.VMConfig{}, res(specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(100 << 20)}}), 256, hostCPUs()},
		{"memory limit 1 GiB", libruntime.VMConfig{}, res(specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 30)}}), 2048, hostCPUs()},
		{"annotations win", libruntime.VMConfig{MemoryMiB: 300, CPUs: 3}, res(specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(100000), Period: u64(100000)}}), 512, 3},
		{"no template: exact", libruntime.VMConfig{MemoryMiB: 300, CPUs: 1, NoTemplate: true}, &specs.Spec{}, 300, 1},
	} {
		mem, cpus := vmSize(Config{VM: c.vm}, c.spec)
		if mem != c.mem || cpus != c.cpus {
			t.Errorf("%s: vmSize = %d MiB, %d vCPUs; want %d MiB, %d vCPUs", c.name, mem, cpus, c.mem, c.cpus)
		}
	}
	if hostCPUs() < 1 || hostCPUs() > maxDefaultCPUs {
		t.Errorf("hostCPUs = %d", hostCPUs())
	}
}

func roundTemplate(mib int) int {
	for _, s := range []int{256, 512, 1024, 2048, 4096} {
		if mib <= s {
			return s
		}
	}
	return mib
}
