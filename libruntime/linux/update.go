package linux

import (
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/runh-project/runh/libruntime"
)

// Update implements libruntime.Backend: the fields set in r replace the
// container's current limits, the others stay.
func (b *Backend) Update(h *libruntime.Handle, r *specs.LinuxResources) error {
	c, err := b.load(h)
	if err != nil {
		return err
	}
	cfg := c.Config()
	ApplyResources(cfg.Cgroups.Resources, r)
	return c.Set(cfg)
}

// ApplyResources copies the limits that r sets onto res.
func ApplyResources(res *cgroups.Resources, r *specs.LinuxResources) {
	if m := r.Memory; m != nil {
		setInt(&res.Memory, m.Limit)
		setInt(&res.MemoryReservation, m.Reservation)
		setInt(&res.MemorySwap, m.Swap)
		if m.Swappiness != nil {
			res.MemorySwappiness = m.Swappiness
		}
		if m.CheckBeforeUpdate != nil {
			res.MemoryCheckBeforeUpdate = *m.CheckBeforeUpdate
		}
	}
	if c := r.CPU; c != nil {
		setUint(&res.CpuShares, c.Shares)
		// cgroup v2 has no shares: libcontainer writes cpu.weight from
		// CpuWeight only, converted as at create.
		if c.Shares != nil && *c.Shares != 0 {
			res.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(*c.Shares)
		}
		setInt(&res.CpuQuota, c.Quota)
		setUint(&res.CpuPeriod, c.Period)
		setInt(&res.CpuRtRuntime, c.RealtimeRuntime)
		setUint(&res.CpuRtPeriod, c.RealtimePeriod)
		if c.Burst != nil {
			res.CpuBurst = c.Burst
		}
		if c.Idle != nil {
			res.CPUIdle = c.Idle
		}
		if c.Cpus != "" {
			res.CpusetCpus = c.Cpus
		}
		if c.Mems != "" {
			res.CpusetMems = c.Mems
		}
	}
	if p := r.Pids; p != nil && p.Limit != nil {
		limit := *p.Limit
		if limit <= 0 {
			limit = -1 // unlimited, as runc reads 0 and below
		}
		res.PidsLimit = &limit
	}
	if b := r.BlockIO; b != nil && b.Weight != nil {
		res.BlkioWeight = *b.Weight
	}
	if len(r.Unified) > 0 {
		if res.Unified == nil {
			res.Unified = map[string]string{}
		}
		for k, v := range r.Unified {
			res.Unified[k] = v
		}
	}
}

func setInt(dst *int64, v *int64) {
	if v != nil {
		*dst = *v
	}
}

func setUint(dst *uint64, v *uint64) {
	if v != nil {
		*dst = *v
	}
}
