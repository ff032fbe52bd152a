package agent

import (
	"github.com/runh-project/runh/hvshim/portfwd"
	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/libruntime"
)

// portTarget finds container id's init for the port forwarder
// (hvshim/portfwd): the host watches the listening ports of its network
// namespace (for a pod, the sandbox's, which its containers share) and
// has connections dialed there.
func portTarget(id string) (portfwd.Target, error) {
	if err := libruntime.ValidateID(id); err != nil {
		return portfwd.Target{}, err
	}
	p, err := lookup(proto.InitKey(id))
	if err != nil {
		return portfwd.Target{}, err
	}
	return portfwd.Target{Pid: p.p.Pid(), Exited: p.done, Alive: func() bool { return !p.reaped.Load() }}, nil
}
