package agent

import (
	"fmt"
	"net"
	"strconv"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/vmnet"
)

// The network configurations the host sent (at create, and at start for
// interfaces an engine added later), kept to apply again in a container's
// own network namespace (adoptNetwork).
var (
	netMu      sync.Mutex
	netConfigs []*vmnet.Config
	netOpen    func() (net.Conn, error)
)

func recordNetwork(cfg *vmnet.Config, open func() (net.Conn, error)) {
	netMu.Lock()
	defer netMu.Unlock()
	netConfigs = append(netConfigs, cfg)
	netOpen = open
}

// ownNetNS reports whether the container must have a network namespace of
// its own rather than the guest's prepared one, and clears the spec's path
// if so. A container with a new user namespace creates its network
// namespace inside it, as with process isolation (there, the runtime
// creates it and an engine configures it afterwards through the PID):
// only a namespace its user namespace owns lets it mount sysfs.
func ownNetNS(spec *specs.Spec) bool {
	if spec.Linux == nil {
		return false
	}
	userns, net := false, -1
	for i, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.UserNamespace:
			userns = ns.Path == ""
		case specs.NetworkNamespace:
			net = i
		}
	}
	if !userns || net < 0 || spec.Linux.Namespaces[net].Path != vmnet.GuestNS {
		return false
	}
	spec.Linux.Namespaces[net].Path = ""
	return true
}

// adoptNetwork gives the network namespace of the container whose init is
// pid the guest's network: the interfaces go back from the prepared
// namespace to the guest's root one, the container's namespace takes the
// prepared one's path, and the recorded configurations are applied there.
// Interfaces that come later (at start) are configured there too.
func adoptNetwork(pid int) error {
	old, err := netns.GetFromPath(vmnet.GuestNS)
	if err != nil {
		return fmt.Errorf("guest network namespace: %w", err)
	}
	defer old.Close()
	root, err := netns.Get()
	if err != nil {
		return err
	}
	defer root.Close()
	h, err := netlink.NewHandleAt(old, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return err
	}
	for i, l := range links {
		if l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		// Down and renamed first: a name may be taken in the root
		// namespace, and an interface that is up cannot be renamed.
		tmp := "rhadopt" + strconv.Itoa(i)
		if err := h.LinkSetDown(l); err != nil {
			return fmt.Errorf("interface %s: %w", l.Attrs().Name, err)
		}
		if err := h.LinkSetName(l, tmp); err != nil {
			return fmt.Errorf("interface %s: %w", l.Attrs().Name, err)
		}
		if err := h.LinkSetNsFd(l, int(root)); err != nil {
			return fmt.Errorf("interface %s: %w", l.Attrs().Name, err)
		}
	}
	if err := unix.Unmount(vmnet.GuestNS, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("guest network namespace: %w", err)
	}
	if err := unix.Mount("/proc/"+strconv.Itoa(pid)+"/ns/net", vmnet.GuestNS, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("container network namespace: %w", err)
	}
	netMu.Lock()
	cfgs, open := netConfigs, netOpen
	netMu.Unlock()
	for _, cfg := range cfgs {
		if _, err := vmnet.Setup(cfg, open); err != nil {
			return err
		}
	}
	return nil
}
