package vmnet

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// GuestNS is the network namespace the guest gives the container; the
// agent's own (the guest's root namespace) keeps only its loopback.
const GuestNS = "/run/runh/netns/net"

// Prepare makes the guest's network namespace at GuestNS, as every
// container's network starts: loopback up, and no duplicate address
// detection (the addresses are the host's, already unique on their
// network, and DAD would hold IPv6 back for a second or more after the
// container starts). The agent calls it while booting, so that a VM
// restored from a template (hvshim/template) has it made: 50 to 80 ms
// less of each create under TCG. The namespace holds nothing of any
// container's until Setup. An existing one is opened.
func Prepare() (netns.NsHandle, error) {
	if ns, err := openNetNS(GuestNS); err == nil {
		return ns, nil
	}
	ns, err := newNamedNS(GuestNS)
	if err != nil {
		return -1, fmt.Errorf("guest network namespace: %w", err)
	}
	if err := initNS(ns); err != nil {
		ns.Close()
		unix.Unmount(GuestNS, unix.MNT_DETACH)
		os.Remove(GuestNS)
		return -1, err
	}
	return ns, nil
}

func initNS(ns netns.NsHandle) error {
	if err := inNS(ns, func() error {
		for _, k := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/accept_dad", []byte("0"), 0); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("sysctl accept_dad: %w", err)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	if lo, err := h.LinkByName("lo"); err == nil {
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("lo up: %w", err)
		}
	}
	return nil
}

// Setup recreates cfg in the guest, in the network namespace at GuestNS,
// and returns its path for the container's spec. open opens a stream to
// the host, for the DNS relay. The virtio-net interfaces are found by MAC
// address, renamed and configured as on the host.
func Setup(cfg *Config, open func() (net.Conn, error)) (string, error) {
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	// Made once; a later call (interfaces an engine added after create)
	// configures the same namespace, which the container has joined.
	ns, err := Prepare()
	if err != nil {
		return "", err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return "", err
	}
	defer h.Close()
	if err := setupLinks(h, ns, cfg); err != nil {
		return "", err
	}
	if len(cfg.DNS) > 0 {
		if err := relayDNS(ns, cfg.DNS, open); err != nil {
			return "", fmt.Errorf("dns relay: %w", err)
		}
	}
	return GuestNS, nil
}

func setupLinks(h *netlink.Handle, ns netns.NsHandle, cfg *Config) error {
	if len(cfg.Interfaces) > 0 {
		if err := moveLinks(h, ns, cfg); err != nil {
			return err
		}
	}
	// Routes through a gateway need the routes that reach the gateway.
	routes := append([]Route(nil), cfg.Routes...)
	sort.SliceStable(routes, func(i, j int) bool { return routes[i].Gw == "" && routes[j].Gw != "" })
	for _, r := range routes {
		if err := addRoute(h, r); err != nil {
			return fmt.Errorf("route %s: %w", r, err)
		}
	}
	for _, n := range cfg.Neighbors {
		l, err := h.LinkByName(n.Dev)
		if err != nil {
			return err
		}
		mac, _ := net.ParseMAC(n.MAC)
		ip := net.ParseIP(n.IP)
		fam := netlink.FAMILY_V4
		if ip.To4() == nil {
			fam = netlink.FAMILY_V6
		}
		if err := h.NeighSet(&netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT,
			IP: ip, HardwareAddr: mac}); err != nil {
			return fmt.Errorf("neighbour %s: %w", n.IP, err)
		}
	}
	return nil
}

// moveLinks finds cfg's interfaces among the guest's devices by MAC
// address, then names, moves and configures them in ns.
func moveLinks(h *netlink.Handle, ns netns.NsHandle, cfg *Config) error {
	root, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer root.Close()
	rootLinks, err := retry(root.LinkList)
	if err != nil {
		return err
	}
	for i, iface := range cfg.Interfaces {
		mac, _ := net.ParseMAC(iface.MAC)
		if iface.DeviceMAC != "" {
			mac, _ = net.ParseMAC(iface.DeviceMAC)
		}
		var l netlink.Link
		for _, c := range rootLinks {
			if c.Attrs().HardwareAddr.String() == mac.String() {
				l = c
			}
		}
		if l == nil {
			return fmt.Errorf("interface %s: no virtio-net device with MAC %s in the guest", iface.Name, iface.MAC)
		}
		// A temporary name first: the guest names its devices eth0, eth1,
		// ... which may be the target names of others.
		tmp := fmt.Sprintf("vmnet%d", i)
		if err := root.LinkSetName(l, tmp); err != nil {
			return fmt.Errorf("interface %s: %w", iface.Name, err)
		}
		if err := root.LinkSetNsFd(l, int(ns)); err != nil {
			return fmt.Errorf("interface %s: move: %w", iface.Name, err)
		}
		if err := configureLink(h, tmp, iface); err != nil {
			return fmt.Errorf("interface %s: %w", iface.Name, err)
		}
	}
	return nil
}

func configureLink(h *netlink.Handle, tmp string, iface Interface) error {
	l, err := h.LinkByName(tmp)
	if err != nil {
		return err
	}
	if err := h.LinkSetName(l, iface.Name); err != nil {
		return err
	}
	if iface.DeviceMAC != "" {
		mac, _ := net.ParseMAC(iface.MAC)
		if err := h.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("mac %s: %w", iface.MAC, err)
		}
	}
	if err := h.LinkSetMTU(l, iface.MTU); err != nil {
		return fmt.Errorf("mtu %d: %w", iface.MTU, err)
	}
	for _, a := range iface.Addrs {
		ip, ipn, _ := net.ParseCIDR(a)
		ipn.IP = ip
		addr := &netlink.Addr{IPNet: ipn}
		if ip.To4() == nil {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("address %s: %w", a, err)
		}
	}
	return h.LinkSetUp(l)
}

func addRoute(h *netlink.Handle, r Route) error {
	l, err := h.LinkByName(r.Dev)
	if err != nil {
		return err
	}
	dst := r.Dst
	if dst == "" {
		dst = "0.0.0.0/0"
		if r.IPv6 {
			dst = "::/0"
		}
	}
	_, ipn, _ := net.ParseCIDR(dst)
	nr := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipn, Scope: netlink.Scope(r.Scope), Priority: r.Priority,
		Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT}
	if r.Gw != "" {
		nr.Gw = net.ParseIP(r.Gw)
	}
	if r.Src != "" {
		nr.Src = net.ParseIP(r.Src)
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return h.RouteReplace(nr)
}

// newNamedNS makes a new network namespace and bind-mounts it at path, as
// `ip netns add` does, so it outlives the thread that made it.
func newNamedNS(path string) (netns.NsHandle, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return -1, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return -1, err
	}
	f.Close()
	err = inNewNS(func() error {
		return unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, "")
	})
	if err != nil {
		os.Remove(path)
		return -1, err
	}
	return openNetNS(path)
}

// String names the interfaces, for logs.
func (c *Config) String() string {
	var s []string
	for _, i := range c.Interfaces {
		s = append(s, fmt.Sprintf("%s %s mtu %d %s", i.Name, i.MAC, i.MTU, strings.Join(i.Addrs, ",")))
	}
	return strings.Join(s, "; ")
}
