package integration

import (
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestResourcesSeen: a container sees the CPUs and memory process
// isolation would give it, whatever its isolation: without limits, the
// host's CPUs (a VM gets as many vCPUs, up to 16) and at least 2 GiB of
// memory or the host's; with a cpuset of one CPU, one CPU.
func TestResourcesSeen(t *testing.T) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	hostCPUs := min(set.Count(), 16)
	var si unix.Sysinfo_t
	unix.Sysinfo(&si)
	hostMiB := int(uint64(si.Totalram) * uint64(si.Unit) >> 20)
	forEachMode(t, func(t *testing.T, x *h) {
		const script = "nproc; sed -n 's/^MemTotal: *\\([0-9]*\\) kB/\\1/p' /proc/meminfo"
		seen := func(name string, mutate func(*specs.Spec)) (cpus, memMiB int) {
			id := x.id(name)
			r := x.must("run", "--bundle", x.bundle(name, mutate, "sh", "-c", script), id)
			f := strings.Fields(r.stdout)
			if len(f) != 2 {
				t.Fatalf("%s: output %q", name, r.stdout)
			}
			cpus, _ = strconv.Atoi(f[0])
			kib, _ := strconv.Atoi(f[1])
			return cpus, kib >> 10
		}
		cpus, mem := seen("size-none", nil)
		if cpus != hostCPUs {
			t.Errorf("without limits nproc = %d, want the host's %d", cpus, hostCPUs)
		}
		// The guest kernel keeps some of the VM's memory for itself.
		if want := min(hostMiB, 2048) * 9 / 10; mem < want {
			t.Errorf("without limits MemTotal = %d MiB, want at least %d", mem, want)
		}
		cpus, _ = seen("size-cpuset", func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0"}}
		})
		if cpus != 1 {
			t.Errorf("with cpuset 0 nproc = %d, want 1", cpus)
		}
	})
}
