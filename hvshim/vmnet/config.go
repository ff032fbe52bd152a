// Package vmnet carries a container's network into its utility VM.
//
// The engine (podman, Docker, containerd's CRI) prepares a network namespace
// on the host: veth or macvlan interfaces with addresses and routes, port
// mappings on the host side. A VM cannot join that namespace, so runh
// mirrors it (the model Kata Containers uses by default):
//
//   - on the host (Attach), for every interface of the namespace but lo, a
//     tap device in the same namespace, wired to it both ways with tc (an
//     ingress qdisc and a u32 match-all filter whose action is a mirred
//     egress redirect), handed to QEMU as a virtio-net device with the
//     interface's MAC address and MTU;
//   - in the guest (Setup), a network namespace for the container holding
//     those virtio-net interfaces, renamed and configured exactly as the
//     host's were: addresses, routes, static neighbours;
//   - name servers on loopback addresses of the namespace (Docker's embedded
//     DNS at 127.0.0.11) relayed from the guest to the host namespace
//     (RelayDNS, ServeDNS).
//
// The host never trusts the guest: the guest only sends DNS queries, which
// the host forwards to addresses the host chose.
package vmnet

import (
	"errors"
	"fmt"
	"net"
)

// Config is the network the guest recreates: what Attach read from the
// host namespace.
type Config struct {
	Interfaces []Interface `json:"interfaces"`
	Routes     []Route     `json:"routes,omitempty"`
	Neighbors  []Neighbor  `json:"neighbors,omitempty"`
	// DNS lists name servers on loopback addresses of the namespace: they
	// live in the host namespace, so the guest relays queries to them.
	DNS []string `json:"dns,omitempty"`
}

// Interface is one network interface of the namespace.
type Interface struct {
	Name  string   `json:"name"`
	MAC   string   `json:"mac"`
	MTU   int      `json:"mtu"`
	Addrs []string `json:"addrs,omitempty"` // CIDR, e.g. 10.88.0.5/16
	// DeviceMAC is the guest device's MAC address when it is not MAC yet
	// (a device booted spare, given the interface's address later).
	DeviceMAC string `json:"deviceMac,omitempty"`
}

// Route is one route of the main table. An empty Dst is the default route.
type Route struct {
	Dst      string `json:"dst,omitempty"` // CIDR
	Gw       string `json:"gw,omitempty"`
	Src      string `json:"src,omitempty"`
	Dev      string `json:"dev,omitempty"` // interface name
	Scope    int    `json:"scope,omitempty"`
	Priority int    `json:"priority,omitempty"`
	OnLink   bool   `json:"onlink,omitempty"`
	IPv6     bool   `json:"ipv6,omitempty"`
}

// Neighbor is a static (permanent) neighbour entry, as some CNI plugins
// install for their gateway.
type Neighbor struct {
	Dev string `json:"dev"`
	IP  string `json:"ip"`
	MAC string `json:"mac"`
}

// Validate checks that c can be applied: names, addresses and references
// are well formed. The guest calls it before touching anything.
func (c *Config) Validate() error {
	names := map[string]bool{}
	for _, i := range c.Interfaces {
		if i.Name == "" || len(i.Name) > 15 || i.Name == "lo" {
			return fmt.Errorf("interface name %q: invalid", i.Name)
		}
		if names[i.Name] {
			return fmt.Errorf("interface %s: listed twice", i.Name)
		}
		names[i.Name] = true
		if _, err := net.ParseMAC(i.MAC); err != nil {
			return fmt.Errorf("interface %s: %w", i.Name, err)
		}
		if _, err := net.ParseMAC(i.DeviceMAC); i.DeviceMAC != "" && err != nil {
			return fmt.Errorf("interface %s: %w", i.Name, err)
		}
		if i.MTU < 68 || i.MTU > 65535 {
			return fmt.Errorf("interface %s: mtu %d out of range", i.Name, i.MTU)
		}
		for _, a := range i.Addrs {
			if _, _, err := net.ParseCIDR(a); err != nil {
				return fmt.Errorf("interface %s: %w", i.Name, err)
			}
		}
	}
	for _, r := range c.Routes {
		if r.Dev != "" && !names[r.Dev] {
			return fmt.Errorf("route %s: unknown device %q", r.String(), r.Dev)
		}
		if r.Dst != "" {
			if _, _, err := net.ParseCIDR(r.Dst); err != nil {
				return fmt.Errorf("route: %w", err)
			}
		}
		for _, ip := range []string{r.Gw, r.Src} {
			if ip != "" && net.ParseIP(ip) == nil {
				return fmt.Errorf("route %s: invalid address %q", r.String(), ip)
			}
		}
	}
	for _, n := range c.Neighbors {
		if !names[n.Dev] {
			return fmt.Errorf("neighbour %s: unknown device %q", n.IP, n.Dev)
		}
		if net.ParseIP(n.IP) == nil {
			return fmt.Errorf("neighbour: invalid address %q", n.IP)
		}
		if _, err := net.ParseMAC(n.MAC); err != nil {
			return fmt.Errorf("neighbour %s: %w", n.IP, err)
		}
	}
	for _, d := range c.DNS {
		if ip := net.ParseIP(d); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("dns relay: %q is not a loopback address", d)
		}
	}
	return nil
}

func (r Route) String() string {
	dst := r.Dst
	if dst == "" {
		dst = "default"
	}
	s := dst
	if r.Gw != "" {
		s += " via " + r.Gw
	}
	if r.Dev != "" {
		s += " dev " + r.Dev
	}
	return s
}

// ErrHostNetwork is returned for a spec without a network namespace: the
// container would share the host's network stack, which a VM cannot.
var ErrHostNetwork = errors.New("hypervisor isolation needs a network namespace: " +
	"a VM cannot share the host's network stack (host network); use process isolation")
