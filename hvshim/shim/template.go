package shim

import (
	"context"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/runh-project/runh/hvshim"
	"github.com/runh-project/runh/hvshim/qemu"
	"github.com/runh-project/runh/hvshim/template"
	"github.com/runh-project/runh/hvshim/vmnet"
)

// MakeTemplate makes, unless it exists, the template that a container's
// VM of cfg's size with nics network interfaces is restored from, as the
// shim would start it (runh template). It says which, with the key.
func MakeTemplate(ctx context.Context, cfg Config, nics int) (template.Outcome, string, error) {
	mem, cpus := vmSize(cfg, &specs.Spec{})
	dir, err := os.MkdirTemp("", "runh-template-")
	if err != nil {
		return template.Cold, "", err
	}
	defer os.RemoveAll(dir)
	var n []qemu.NIC
	for i := 0; i < nics; i++ {
		n = append(n, qemu.NIC{MAC: vmnet.DeviceMAC(i)})
	}
	return hvshim.MakeTemplate(ctx, hvshim.VMConfig{
		Dir: dir, MemoryMiB: mem, CPUs: cpus, Accel: cfg.VM.Accel,
		Debug: cfg.Debug, NICs: n, CgroupV1: guestCgroupV1(),
	})
}
