package vm

import (
	"fmt"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/runh-project/runh/hvshim/vmnet"
)

// refuse says, in one line naming the option, why a VM cannot give spec's
// container what it asks of the host, or nil. Each would otherwise be
// silently replaced by the VM's own: the host's network stack (vmnet), its
// IPC objects or its process table (a spec without that namespace shares
// the runtime's). Shared mount propagation is not refused: the mount is
// there and what the host mounts under it reaches the container; only what
// the container mounts under it stays in the guest (docs/engines.md).
func refuse(spec *specs.Spec) error {
	if err := vmnet.Check(spec); err != nil {
		return err
	}
	if spec.Linux == nil {
		return nil
	}
	for _, ns := range []struct {
		typ    specs.LinuxNamespaceType
		option string
	}{
		{specs.IPCNamespace, "host IPC (no ipc namespace; Kubernetes hostIPC, --ipc=host)"},
		{specs.PIDNamespace, "host PID (no pid namespace; Kubernetes hostPID, --pid=host)"},
	} {
		if !slices.ContainsFunc(spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == ns.typ }) {
			return fmt.Errorf("hypervisor isolation cannot share the host's %s namespace: %s would be the VM's own; use process isolation", ns.typ, ns.option)
		}
	}
	return nil
}
