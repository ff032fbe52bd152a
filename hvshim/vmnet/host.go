package vmnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/qemu"
	"github.com/runh-project/runh/libruntime"
)

// RecordFile, in the container's state directory, names what Attach added
// to the namespace, so that a delete after a killed shim can remove it.
const RecordFile = "net.json"

// tapSuffix marks runh's tap devices; with the index they stay within
// IFNAMSIZ and apart from any name an engine picks.
const tapSuffix = "_runh"

// Attachment is a network namespace mirrored for one VM.
type Attachment struct {
	Config Config     // what the guest recreates
	NICs   []qemu.NIC // for QEMU, in Config.Interfaces order

	ns     netns.NsHandle
	record string
	rec    record
	spares []string // MACs of devices not wired yet (see Late)
}

type record struct {
	NS    string  `json:"ns,omitempty"` // "" when it died with the shim
	Wires []wires `json:"wires"`
}

// wires is one interface of the namespace and the tap wired to it.
type wires struct {
	Dev string `json:"dev"`
	Tap string `json:"tap"`
}

// Attach mirrors the container's network namespace for its VM: the
// spec's namespace path, or (a namespace without a path) the calling
// process's own, which the engine's hooks configured through its PID. A
// spec with no network namespace, or naming the host's (hostNS, an open
// nsfs file), is refused (ErrHostNetwork). stateDir receives RecordFile.
// On error nothing is left in the namespace.
func Attach(spec *specs.Spec, stateDir string, hostNS *os.File) (_ *Attachment, err error) {
	path, ok := netnsPath(spec)
	if !ok {
		return nil, ErrHostNetwork
	}
	a := &Attachment{record: filepath.Join(stateDir, RecordFile), rec: record{NS: path}}
	if path == "" {
		path = "/proc/self/ns/net"
	}
	if a.ns, err = openNetNS(path); err != nil {
		return nil, err
	}
	if isHostNS(a.ns, nsID(int(hostNS.Fd()))) {
		a.ns.Close()
		return nil, ErrHostNetwork
	}
	defer func() {
		if err != nil {
			a.Detach()
		}
	}()
	h, err := netlink.NewHandleAt(a.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	if err := a.read(h, false); err != nil {
		return nil, err
	}
	a.Config.DNS = loopbackNameservers(spec)
	if len(a.Config.Interfaces) == 0 {
		if a.rec.NS != "" || HostSupport() != nil {
			return a, nil
		}
		// An engine may configure the shim's own namespace after create,
		// through its PID (ctr run --cni does, before start). A microvm
		// cannot hot-plug a network device: keep one ready, which Late
		// wires at start if an interface has appeared by then.
		return a, a.spare(h)
	}
	if err := HostSupport(); err != nil {
		return nil, err
	}
	for i := range a.Config.Interfaces {
		a.rec.Wires = append(a.rec.Wires, wires{Dev: a.Config.Interfaces[i].Name, Tap: fmt.Sprintf("tap%d%s", i, tapSuffix)})
	}
	// Recorded before anything is added: a shim killed halfway leaves a
	// record that delete can clean up after.
	if err := a.save(); err != nil {
		return nil, err
	}
	for i, w := range a.rec.Wires {
		tap, err := a.makeTap(w.Tap, a.Config.Interfaces[i].MTU)
		if err == nil {
			err = a.connect(h, w)
		}
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", w.Dev, err)
		}
		a.NICs = append(a.NICs, qemu.NIC{Tap: tap, MAC: DeviceMAC(i)})
		a.Config.Interfaces[i].DeviceMAC = DeviceMAC(i)
	}
	return a, nil
}

// DeviceMAC is the MAC address of the VM's i-th virtio-net device as QEMU
// is given it; the guest then sets the interface's own. The device set is
// thereby the same for every VM with as many interfaces, whatever their
// addresses and MTUs, so that one saved VM (hvshim/template) serves them all.
func DeviceMAC(i int) string {
	return fmt.Sprintf("02:72:75:6e:68:%02x", i) // "runh"
}

func (a *Attachment) save() error {
	b, err := json.Marshal(a.rec)
	if err != nil {
		return err
	}
	return libruntime.WriteFileAtomic(a.record, b, 0o600)
}

// spare makes one unwired tap and its NIC, whose device MAC the guest
// replaces with the interface's when Late finds one.
func (a *Attachment) spare(h *netlink.Handle) error {
	w := wires{Tap: "tap0" + tapSuffix}
	a.rec.Wires = append(a.rec.Wires, w)
	if err := a.save(); err != nil {
		return err
	}
	tap, err := a.makeTap(w.Tap, 0)
	if err != nil {
		return err
	}
	a.NICs = append(a.NICs, qemu.NIC{Tap: tap, MAC: DeviceMAC(0)})
	a.spares = append(a.spares, DeviceMAC(0))
	return nil
}

// Late mirrors the interfaces an engine added to the shim's namespace
// since create onto the spare devices and returns the configuration the
// guest must then apply; nil when there is nothing new.
func (a *Attachment) Late() (*Config, error) {
	if len(a.spares) == 0 {
		return nil, nil
	}
	h, err := netlink.NewHandleAt(a.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	late := &Attachment{}
	if err := late.read(h, true); err != nil {
		return nil, err
	}
	if len(late.Config.Interfaces) == 0 {
		return nil, nil
	}
	if len(late.Config.Interfaces) > len(a.spares) {
		return nil, fmt.Errorf("%d interfaces appeared in the network namespace after create; a VM can take %d then",
			len(late.Config.Interfaces), len(a.spares))
	}
	for i := range late.Config.Interfaces {
		iface := &late.Config.Interfaces[i]
		a.rec.Wires[i].Dev = iface.Name
		if err := a.save(); err != nil {
			return nil, err
		}
		t, err := h.LinkByName(a.rec.Wires[i].Tap)
		if err == nil {
			err = h.LinkSetMTU(t, iface.MTU)
		}
		if err == nil {
			err = a.connect(h, a.rec.Wires[i])
		}
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", iface.Name, err)
		}
		iface.DeviceMAC = a.spares[i]
	}
	a.spares = nil
	late.Config.DNS = a.Config.DNS
	a.Config = late.Config
	return &a.Config, nil
}

// Spare reports whether the VM has devices waiting for Late.
func (a *Attachment) Spare() bool { return len(a.spares) > 0 }

// Check refuses, before anything starts, a spec whose network a VM cannot
// have: none of its own (host network), the caller's own namespace, or a
// path that is not a network namespace.
func Check(spec *specs.Spec) error {
	path, ok := netnsPath(spec)
	if !ok {
		return ErrHostNetwork
	}
	if path == "" {
		return nil
	}
	ns, err := openNetNS(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	if isHostNS(ns, selfNS()) {
		return ErrHostNetwork
	}
	return nil
}

// netnsPath returns the spec's network namespace path ("" for a new one)
// and whether the spec has a network namespace at all.
func netnsPath(spec *specs.Spec) (string, bool) {
	if spec.Linux == nil {
		return "", false
	}
	for _, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			return ns.Path, true
		}
	}
	return "", false
}

// read fills a.Config from the namespace: its Ethernet interfaces with
// their addresses and static neighbours, then the main table's routes.
// With ownTaps, runh's taps (the spares) are skipped rather than refused.
func (a *Attachment) read(h *netlink.Handle, ownTaps bool) error {
	links, err := retry(h.LinkList)
	if err != nil {
		return fmt.Errorf("list interfaces: %w", err)
	}
	names := map[int]string{}
	for _, l := range links {
		at := l.Attrs()
		if at.Flags&net.FlagLoopback != 0 {
			continue
		}
		if strings.HasSuffix(at.Name, tapSuffix) {
			if ownTaps {
				continue
			}
			return fmt.Errorf("interface %s: the namespace is already mirrored into a VM", at.Name)
		}
		if len(at.HardwareAddr) != 6 || at.EncapType != "ether" {
			// Fallback tunnel devices (sit0, tunl0, ...) appear in every
			// namespace once their module is loaded; down, they carry nothing.
			if at.Flags&net.FlagUp == 0 {
				continue
			}
			return fmt.Errorf("interface %s (%s): only Ethernet interfaces can be mirrored into a VM", at.Name, l.Type())
		}
		iface := Interface{Name: at.Name, MAC: at.HardwareAddr.String(), MTU: at.MTU}
		addrs, err := retry(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return fmt.Errorf("interface %s: addresses: %w", at.Name, err)
		}
		for _, ad := range addrs {
			// The guest derives the same IPv6 link-local address from the MAC.
			if ad.IP.To4() == nil && ad.IP.IsLinkLocalUnicast() {
				continue
			}
			iface.Addrs = append(iface.Addrs, ad.IPNet.String())
		}
		neighs, err := retry(func() ([]netlink.Neigh, error) { return h.NeighList(at.Index, netlink.FAMILY_ALL) })
		if err != nil {
			return fmt.Errorf("interface %s: neighbours: %w", at.Name, err)
		}
		for _, n := range neighs {
			if n.State&netlink.NUD_PERMANENT != 0 && len(n.HardwareAddr) == 6 && n.IP != nil {
				a.Config.Neighbors = append(a.Config.Neighbors, Neighbor{Dev: at.Name, IP: n.IP.String(), MAC: n.HardwareAddr.String()})
			}
		}
		names[at.Index] = at.Name
		a.Config.Interfaces = append(a.Config.Interfaces, iface)
	}
	routes, err := retry(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		dev, ok := names[r.LinkIndex]
		// The kernel makes prefix and link-local routes itself when the
		// guest adds the addresses.
		if !ok || r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST || len(r.MultiPath) > 0 {
			continue
		}
		if r.Dst != nil && r.Dst.IP.To4() == nil && (r.Dst.IP.IsLinkLocalUnicast() || r.Dst.IP.IsMulticast()) {
			continue
		}
		rt := Route{Dev: dev, Scope: int(r.Scope), Priority: r.Priority, OnLink: r.Flags&unix.RTNH_F_ONLINK != 0, IPv6: r.Family == unix.AF_INET6}
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones > 0 || !r.Dst.IP.IsUnspecified() {
				rt.Dst = r.Dst.String()
			}
		}
		if r.Gw != nil {
			rt.Gw = r.Gw.String()
		}
		if r.Src != nil {
			rt.Src = r.Src.String()
		}
		a.Config.Routes = append(a.Config.Routes, rt)
	}
	return nil
}

// makeTap creates the tap in the namespace, with mtu (0: the default).
func (a *Attachment) makeTap(name string, mtu int) (*os.File, error) {
	var tap *os.File
	if err := inNS(a.ns, func() (err error) { tap, err = openTap(name); return err }); err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	h, err := netlink.NewHandleAt(a.ns, unix.NETLINK_ROUTE)
	if err != nil {
		tap.Close()
		return nil, err
	}
	defer h.Close()
	t, err := h.LinkByName(name)
	if err == nil && mtu > 0 {
		err = h.LinkSetMTU(t, mtu)
	}
	if err == nil {
		err = h.LinkSetUp(t)
	}
	if err != nil {
		tap.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return tap, nil
}

// connect redirects every frame between the interface and its tap with
// tc, both ways.
func (a *Attachment) connect(h *netlink.Handle, w wires) error {
	dev, err := h.LinkByName(w.Dev)
	if err != nil {
		return err
	}
	qs, err := h.QdiscList(dev)
	if err != nil {
		return fmt.Errorf("list qdiscs: %w", err)
	}
	for _, q := range qs {
		if q.Type() == "ingress" || q.Type() == "clsact" {
			return fmt.Errorf("it has an %s qdisc already; runh cannot redirect its traffic to the VM", q.Type())
		}
	}
	t, err := h.LinkByName(w.Tap)
	if err == nil {
		err = redirect(h, dev, t)
	}
	if err == nil {
		err = redirect(h, t, dev)
	}
	if err != nil {
		return fmt.Errorf("wire %s: %w", w.Tap, err)
	}
	return nil
}

// openTap creates a tap device in the calling thread's namespace. It is not
// persistent: it goes away with the last descriptor (QEMU's and ours), so
// a killed VM leaves no device behind. IFF_VNET_HDR lets QEMU pass
// offloads (large segments) through.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// redirect sends every frame arriving on from out of to: an ingress qdisc
// on from with a u32 filter matching everything (the matchall classifier
// is not in every kernel) and a mirred egress redirect action.
func redirect(h *netlink.Handle, from, to netlink.Link) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: from.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
	if err := h.QdiscAdd(q); err != nil {
		return fmt.Errorf("ingress qdisc on %s: %w", from.Attrs().Name, err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: from.Attrs().Index, Parent: netlink.MakeHandle(0xffff, 0),
			Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR, Ifindex: to.Attrs().Index}},
	}
	if err := h.FilterAdd(f); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

// CloseTaps closes runh's copies of the tap descriptors once QEMU holds
// its own: the taps then live exactly as long as the VM.
func (a *Attachment) CloseTaps() {
	for _, n := range a.NICs {
		n.Tap.Close()
	}
}

// Detach removes what Attach added: the taps and the ingress qdiscs (with
// their filters). The engine's interfaces are left as the engine made them.
func (a *Attachment) Detach() error {
	a.CloseTaps()
	var err error
	if len(a.rec.Wires) > 0 {
		err = unwire(a.ns, a.rec.Wires)
	}
	a.ns.Close()
	if err == nil {
		os.Remove(a.record)
	}
	return err
}

// Cleanup removes what a shim that could not detach (it was killed) left
// in the namespace recorded in stateDir. A namespace that has gone took
// everything with it.
func Cleanup(stateDir string) error {
	path := filepath.Join(stateDir, RecordFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var rec record
	if err != nil || json.Unmarshal(b, &rec) != nil {
		os.Remove(path)
		return nil
	}
	if rec.NS != "" {
		ns, err := openNetNS(rec.NS)
		if err == nil {
			if isHostNS(ns, selfNS()) {
				err = ErrHostNetwork
			} else {
				err = unwire(ns, rec.Wires)
			}
			ns.Close()
			if err != nil {
				return fmt.Errorf("network namespace %s: %w", rec.NS, err)
			}
		}
	}
	return os.Remove(path)
}

func unwire(ns netns.NsHandle, ws []wires) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	var errs []error
	for _, w := range ws {
		if !strings.HasSuffix(w.Tap, tapSuffix) {
			continue // not runh's: never touched
		}
		if t, err := h.LinkByName(w.Tap); err == nil {
			if err := h.LinkDel(t); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("delete %s: %w", w.Tap, err))
			}
		}
		if w.Dev == "" {
			continue // a spare, never wired
		}
		dev, err := h.LinkByName(w.Dev)
		if err != nil {
			continue // the engine removed it
		}
		q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: dev.Attrs().Index, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS}}
		if err := h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("ingress qdisc on %s: %w", w.Dev, err))
		}
	}
	return errors.Join(errs...)
}

// retry repeats a netlink dump the kernel interrupted (the namespace
// changed meanwhile).
func retry[T any](fn func() (T, error)) (T, error) {
	var v T
	var err error
	for i := 0; i < 5; i++ {
		if v, err = fn(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}

// ScratchTaps makes n taps in a new, empty network namespace of their
// own, for a VM that must have the devices but no network (a template
// being made). The namespace and taps last as long as the files.
func ScratchTaps(n int) ([]*os.File, error) {
	var taps []*os.File
	err := inNewNS(func() error {
		for i := 0; i < n; i++ {
			t, err := openTap(fmt.Sprintf("tap%d%s", i, tapSuffix))
			if err != nil {
				return err
			}
			taps = append(taps, t)
		}
		return nil
	})
	if err != nil {
		for _, t := range taps {
			t.Close()
		}
		return nil, err
	}
	return taps, nil
}
