package main

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestFreeSubnet(t *testing.T) {
	routes := `default via 192.0.2.1 dev eth0
10.213.0.0/20 dev br0 proto kernel scope link src 10.213.0.1
local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1
broadcast 10.213.42.255 dev br1 table local proto kernel scope link src 10.213.42.1
4: br2    inet 10.213.99.7/32 scope global br2\       valid_lft forever preferred_lft forever`
	used := usedPrefixes(routes)
	if len(used) != 4 {
		t.Fatalf("used = %v, want 4 prefixes (no default)", used)
	}
	// 10.213.0/24 and 10.213.7/24 lie in the /20, 10.213.42/24 holds a
	// broadcast address, 10.213.99/24 an address.
	if p, err := freeSubnet(netSubnets, used); err == nil {
		t.Errorf("got %v, want every candidate taken", p)
	}
	p, err := freeSubnet(netSubnets, usedPrefixes(strings.Split(routes, "\n")[0]))
	if err != nil || p.String() != netSubnets[0] {
		t.Errorf("with only a default route: %v %v, want %s", p, err, netSubnets[0])
	}
	if got := host(p, 10).String(); got != "10.213.0.10" {
		t.Errorf("host 10 = %s", got)
	}
	_, wide, _ := net.ParseCIDR("10.0.0.0/8")
	if !overlap(p, wide) || !overlap(wide, p) {
		t.Error("a /24 inside a /8 does not overlap it")
	}
}

func TestHTTPStatusOK(t *testing.T) {
	for resp, ok := range map[string]bool{
		"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc": true,
		"HTTP/1.1 200 OK\r\n\r\n":                         true,
		"HTTP/1.0 404 Not Found\r\n\r\n":                  false,
		"":                                                false,
		"SSH-2.0-x\r\n":                                   false,
	} {
		if err := httpStatusOK([]byte(resp)); (err == nil) != ok {
			t.Errorf("%q: %v, want ok %v", resp, err, ok)
		}
	}
}

func TestMiBPerSecond(t *testing.T) {
	if got := mibPerSecond(64<<20, 500*time.Millisecond); got != 128 {
		t.Errorf("64 MiB in 0.5 s = %v MiB/s", got)
	}
}

// TestRatioPairs: chosen pairs replace the first-against-others ratios,
// and a pair with an empty side is left out.
func TestRatioPairs(t *testing.T) {
	r := &Report{}
	x := r.result(network, "network", "x", "MiB/s", true, "runh", "runc", "crun", "runh-vm")
	x.RatioPairs = []string{"runh/runc", "runh/crun", "runh-vm/runh"}
	for _, v := range []float64{100, 200, 300} {
		x.add("runh", v)
		x.add("runc", v/2)
		x.add("runh-vm", v/4)
	}
	x.fail("crun", errors.New("no"))
	r.finalize()
	if len(x.Ratios) != 2 {
		t.Fatalf("ratios %v, want runh/runc and runh-vm/runh", x.Ratios)
	}
	if q, ok := x.ratio("runh/runc"); !ok || q != 2 {
		t.Errorf("runh/runc = %v %v", q, ok)
	}
	if q, ok := x.ratio("runh-vm/runh"); !ok || q != 0.25 {
		t.Errorf("runh-vm/runh = %v %v", q, ok)
	}
	if _, ok := x.ratio("runh/runh-vm"); ok {
		t.Error("the default first-against-others ratio was kept")
	}
	if !strings.Contains(strings.Join(r.reading(), "\n"), "runh-vm/runh 0.25") {
		t.Errorf("reading lacks the VM ratio:\n%s", strings.Join(r.reading(), "\n"))
	}
}
