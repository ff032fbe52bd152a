package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestEngineShm: an engine's /dev/shm, a tmpfs of its own bound in (podman
// and containerd make one per container or pod), holds POSIX shared
// memory: a second process maps what the first wrote, and the size is the
// engine's. A VM container gets a guest tmpfs in its place; shared over
// 9p, the writable shared mapping failed with EINVAL and PostgreSQL could
// not start.
func TestEngineShm(t *testing.T) {
	helper, err := buildSockHelper(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	forEachMode(t, func(t *testing.T, x *h) {
		root := writableRootfs(t, x)
		if out, err := exec.Command("cp", helper, filepath.Join(root, "bin/sockhelper")).CombinedOutput(); err != nil {
			t.Fatalf("copy sockhelper: %v: %s", err, out)
		}
		shm := filepath.Join(x.dir, "shm")
		if err := os.Mkdir(shm, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=8m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(shm, unix.MNT_DETACH) })
		id := x.id("shm")
		out := createFile(t, x.dir, "shm.out")
		r := x.runO(opts{stdout: out}, "run", "--bundle", x.bundle("shm", func(s *specs.Spec) {
			s.Root = &specs.Root{Path: root}
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: shm,
				Options: []string{"rbind", "nosuid", "noexec", "nodev"}})
		}, "sh", "-c", "sockhelper shm /dev/shm/seg written-by-one && sockhelper shm /dev/shm/seg && "+
			"stat -c %a /dev/shm && df -k /dev/shm | tail -n 1"), id)
		got := readFile(fileName(out))
		if r.code != 0 {
			t.Fatalf("run: %v: %s", r, got)
		}
		lines := strings.Split(strings.TrimSpace(got), "\n")
		if len(lines) != 4 || lines[0] != "written-by-one" || lines[1] != "written-by-one" {
			t.Fatalf("shared memory on /dev/shm: %q", got)
		}
		if lines[2] != "1777" {
			t.Errorf("/dev/shm mode %s, want the engine's 1777", lines[2])
		}
		if f := strings.Fields(lines[3]); len(f) < 2 || f[1] != "8192" {
			t.Errorf("/dev/shm size: %q, want the engine's 8192 KiB", lines[3])
		}
	})
}
