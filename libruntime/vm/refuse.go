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
// the runtime's), or mounts propagated back from the container to the
// host (the container's mount table is the guest's).
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
	for _, m := range spec.Mounts {
		for _, o := range m.Options {
			if o == "shared" || o == "rshared" {
				return fmt.Errorf("mount %s: %s propagation (Kubernetes Bidirectional) cannot carry the container's mounts back to the host from a VM; use rslave (HostToContainer) or process isolation", m.Destination, o)
			}
		}
	}
	return nil
}
