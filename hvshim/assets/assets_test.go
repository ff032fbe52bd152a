package assets

import (
	"os"
	"path/filepath"
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

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindPrefersRunhKernel(t *testing.T) {
	root := t.TempDir()
	other := t.TempDir()
	runhDir := filepath.Join(root, "guest")
	debDir := filepath.Join(root, "guest-debian")
	// runh's kernel: vmlinux only, no vmlinuz, no modules.
	writeFiles(t, runhDir, map[string]string{"vmlinux": "elf", "version": "6.1.192-runh\n", "flavor": "runh\n", "config": ""})
	writeFiles(t, debDir, map[string]string{
		"vmlinuz": "bz", "vmlinux": "elf", "version": "6.1.0-99-amd64\n",
		"modules.dep": "virtio_mmio.ko: virtio.ko\nvirtio.ko:\n", "modules/virtio.ko": "", "modules/virtio_mmio.ko": "",
	})
	dirs := searchDirs("", []string{root, other})
	want := []string{runhDir, debDir, filepath.Join(other, "guest"), filepath.Join(other, "guest-debian")}
	if !slices.Equal(dirs, want) {
		t.Fatalf("search dirs %v, want %v", dirs, want)
	}

	g, err := findIn(dirs)
	if err != nil {
		t.Fatal(err)
	}
	if g.Dir != runhDir || g.Kernel != filepath.Join(runhDir, "vmlinux") || g.Flavor != FlavorRunh ||
		g.Version != "6.1.192-runh" || len(g.Modules) != 0 {
		t.Fatalf("runh kernel: %+v", g)
	}

	// Without runh's kernel, Debian's is the fallback, with its modules.
	os.RemoveAll(runhDir)
	g, err = findIn(dirs)
	if err != nil {
		t.Fatal(err)
	}
	if g.Dir != debDir || g.Kernel != filepath.Join(debDir, "vmlinux") || g.Flavor != FlavorDistribution ||
		g.Version != "6.1.0-99-amd64" {
		t.Fatalf("fallback: %+v", g)
	}
	if want := []string{filepath.Join(debDir, "modules/virtio.ko"), filepath.Join(debDir, "modules/virtio_mmio.ko")}; !slices.Equal(g.Modules, want) {
		t.Fatalf("fallback modules %v, want %v", g.Modules, want)
	}

	// vmlinuz alone (no extracted vmlinux) is still a kernel.
	os.Remove(filepath.Join(debDir, "vmlinux"))
	if g, err = findIn(dirs); err != nil || g.Kernel != filepath.Join(debDir, "vmlinuz") {
		t.Fatalf("vmlinuz only: %+v, %v", g, err)
	}

	// A later root is used when the first has nothing.
	os.RemoveAll(debDir)
	writeFiles(t, filepath.Join(other, "guest-debian"), map[string]string{"vmlinuz": "bz"})
	if g, err = findIn(dirs); err != nil || g.Dir != filepath.Join(other, "guest-debian") || len(g.Modules) != 0 {
		t.Fatalf("second root: %+v, %v", g, err)
	}

	// Nothing anywhere: an error naming the directories.
	os.RemoveAll(filepath.Join(other, "guest-debian"))
	if _, err := findIn(dirs); err == nil || !strings.Contains(err.Error(), debDir) {
		t.Fatalf("no kernel: %v", err)
	}
}

func TestEnvDirIsTheOnlyPlace(t *testing.T) {
	env := t.TempDir()
	if dirs := searchDirs(env, []string{"/a", "/b"}); !slices.Equal(dirs, []string{env}) {
		t.Fatalf("with %s set: %v", EnvDir, dirs)
	}
	t.Setenv(EnvDir, env)
	if _, err := Find(); err == nil {
		t.Fatal("empty RUNH_GUEST_DIR accepted")
	}
	writeFiles(t, env, map[string]string{"vmlinux": "elf", "flavor": "runh\n"})
	g, err := Find()
	if err != nil || g.Dir != env || g.Flavor != FlavorRunh {
		t.Fatalf("Find with %s: %+v, %v", EnvDir, g, err)
	}
}
