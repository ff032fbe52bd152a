package assets

import (
	"slices"
	"strings"
	"testing"
)

func TestLoadOrder(t *testing.T) {
	deps, err := ParseDeps(strings.NewReader(`9p.ko: 9pnet.ko fscache.ko netfs.ko
9pnet.ko:
fscache.ko: netfs.ko
netfs.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko virtio_ring.ko
virtio.ko: virtio_ring.ko
virtio_ring.ko:
`))
	if err != nil {
		t.Fatal(err)
	}
	order, err := LoadOrder(deps)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"9pnet.ko", "netfs.ko", "fscache.ko", "9p.ko", "virtio_ring.ko", "virtio.ko", "virtio_mmio.ko"}
	if !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	if _, err := LoadOrder(map[string][]string{"a.ko": {"b.ko"}, "b.ko": {"a.ko"}}); err == nil {
		t.Fatal("cycle not detected")
	}
	if _, err := LoadOrder(map[string][]string{"a.ko": {"b.ko"}}); err == nil {
		t.Fatal("missing dependency not detected")
	}
}
