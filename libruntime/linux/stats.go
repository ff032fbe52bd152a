package linux

import (
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/types"
)

// ConvertStats turns libcontainer's statistics into the stable shape that
// `runc events` prints and engines parse.
func ConvertStats(s *libcontainer.Stats) *types.Stats {
	out := &types.Stats{}
	if s == nil || s.CgroupStats == nil {
		return out
	}
	cg := s.CgroupStats
	cu := cg.CpuStats.CpuUsage
	out.CPU = types.Cpu{
		Usage: types.CpuUsage{
			Total: cu.TotalUsage, Percpu: cu.PercpuUsage,
			PercpuKernel: cu.PercpuUsageInKernelmode, PercpuUser: cu.PercpuUsageInUsermode,
			Kernel: cu.UsageInKernelmode, User: cu.UsageInUsermode,
		},
		Throttling: types.Throttling{
			Periods:          cg.CpuStats.ThrottlingData.Periods,
			ThrottledPeriods: cg.CpuStats.ThrottlingData.ThrottledPeriods,
			ThrottledTime:    cg.CpuStats.ThrottlingData.ThrottledTime,
		},
		PSI: cg.CpuStats.PSI,
	}
	ms := cg.MemoryStats
	out.Memory = types.Memory{
		Cache:     ms.Cache,
		Usage:     memEntry(ms.Usage),
		Swap:      memEntry(ms.SwapUsage),
		Kernel:    memEntry(ms.KernelUsage),
		KernelTCP: memEntry(ms.KernelTCPUsage),
		Raw:       ms.Stats,
		PSI:       ms.PSI,
	}
	out.Pids = types.Pids{Current: cg.PidsStats.Current, Limit: cg.PidsStats.Limit}
	out.CPUSet = types.CPUSet{
		CPUs: cg.CPUSetStats.CPUs, Mems: cg.CPUSetStats.Mems,
		CPUExclusive: cg.CPUSetStats.CPUExclusive, MemExclusive: cg.CPUSetStats.MemExclusive,
	}
	out.Blkio = types.Blkio{
		IoServiceBytesRecursive: blkio(cg.BlkioStats.IoServiceBytesRecursive),
		IoServicedRecursive:     blkio(cg.BlkioStats.IoServicedRecursive),
		PSI:                     cg.BlkioStats.PSI,
	}
	if len(cg.HugetlbStats) > 0 {
		out.Hugetlb = map[string]types.Hugetlb{}
		for k, h := range cg.HugetlbStats {
			out.Hugetlb[k] = types.Hugetlb{Usage: h.Usage, Max: h.MaxUsage, Failcnt: h.Failcnt}
		}
	}
	return out
}

func memEntry(d cgroups.MemoryData) types.MemoryEntry {
	return types.MemoryEntry{Limit: d.Limit, Usage: d.Usage, Max: d.MaxUsage, Failcnt: d.Failcnt}
}

func blkio(in []cgroups.BlkioStatEntry) []types.BlkioEntry {
	out := make([]types.BlkioEntry, 0, len(in))
	for _, e := range in {
		out = append(out, types.BlkioEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
	}
	return out
}
