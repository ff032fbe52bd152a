package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// writableRootfs copies the test rootfs for a container that writes to it.
func writableRootfs(t *testing.T, x *h) string {
	t.Helper()
	dir := filepath.Join(x.dir, "rootfs-rw")
	if out, err := exec.Command("cp", "-a", rootfsDir, dir).CombinedOutput(); err != nil {
		t.Fatalf("copy rootfs: %v: %s", err, out)
	}
	return dir
}

func writableRoot(dir string) func(*specs.Spec) {
	return func(s *specs.Spec) { s.Root = &specs.Root{Path: dir} }
}

// TestRootfsWrites: what a container writes to its rootfs is in the host's
// files once it has exited, and once delete --force has killed it (the
// VM's rootfs share caches writes in the guest).
func TestRootfsWrites(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		root := writableRootfs(t, x)
		r := x.runO(opts{}, "run", "--bundle", x.bundle("rootfs-exit", writableRoot(root),
			"sh", "-c", "mkdir -p /data && echo written-at-exit > /data/exit && ln /data/exit /data/link"), x.id("rootfs-exit"))
		if r.code != 0 {
			t.Fatalf("run: %v", r)
		}
		if got := readFile(filepath.Join(root, "data/exit")); got != "written-at-exit\n" {
			t.Errorf("file written by an exited container: %q", got)
		}
		var a, b syscall.Stat_t
		if syscall.Stat(filepath.Join(root, "data/exit"), &a) != nil || syscall.Stat(filepath.Join(root, "data/link"), &b) != nil || a.Ino != b.Ino {
			t.Errorf("hard link not on the host as one inode")
		}

		id := x.id("rootfs-kill")
		out := createFile(t, x.dir, "kill.out")
		x.create(id, x.bundle("rootfs-kill", writableRoot(root),
			"sh", "-c", "echo written-then-killed > /data/killed; echo ready; sleep 1000"), out)
		defer x.cleanupContainer(id)
		x.must("start", id)
		waitFileCount(t, fileName(out), "ready", 1, x.timeout())
		x.must("delete", "--force", id)
		if got := readFile(filepath.Join(root, "data/killed")); got != "written-then-killed\n" {
			t.Errorf("file written by a container killed by delete --force: %q", got)
		}
	})
}

// TestRootfsFsyncSurvivesVMM: data the container fsync'ed is on the host
// even when the VMM (in process mode: the container) is killed right after.
func TestRootfsFsyncSurvivesVMM(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		root := writableRootfs(t, x)
		id := x.id("fsync")
		out := createFile(t, x.dir, "fsync.out")
		x.create(id, x.bundle("fsync", writableRoot(root),
			"sh", "-c", "echo durable > /durable && dd if=/durable of=/durable2 conv=fsync 2>/dev/null && echo synced; sleep 1000"), out)
		defer x.cleanupContainer(id)
		x.must("start", id)
		waitFileCount(t, fileName(out), "synced", 1, x.timeout())
		victim := x.state(id).Pid
		if x.mode == ModeHypervisor {
			victim = qemuChild(t, victim)
		}
		signalProc(t, victim, syscall.SIGKILL)
		x.waitStatus(id, "stopped")
		if got := readFile(filepath.Join(root, "durable2")); got != "durable\n" {
			t.Errorf("fsync'ed file after the VMM was killed: %q", got)
		}
		x.must("delete", id)
	})
}

// TestVolumeCoherent: a host change to a bind-mounted directory is seen
// inside within a second, and the container's writes there at once.
func TestVolumeCoherent(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		vol := filepath.Join(x.dir, "vol")
		if err := os.MkdirAll(vol, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(vol, "f"), []byte("one\n"), 0o644)
		id := x.id("vol")
		x.startContainer("vol", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
		}, "sleep", "1000")
		defer x.cleanupContainer(id)
		if got := x.must("exec", id, "cat", "/vol/f").stdout; got != "one\n" {
			t.Fatalf("volume file inside: %q", got)
		}
		// Rewritten in place and replaced, as editors and engines do.
		os.WriteFile(filepath.Join(vol, "f"), []byte("two\n"), 0o644)
		os.WriteFile(filepath.Join(vol, "g.tmp"), []byte("new\n"), 0o644)
		os.Rename(filepath.Join(vol, "g.tmp"), filepath.Join(vol, "g"))
		time.Sleep(time.Second)
		if got := x.must("exec", id, "cat", "/vol/f", "/vol/g").stdout; got != "two\nnew\n" {
			t.Errorf("host changes seen inside after a second: %q", got)
		}
		x.must("exec", id, "sh", "-c", "echo from-inside > /vol/h")
		if got := readFile(filepath.Join(vol, "h")); got != "from-inside\n" {
			t.Errorf("container's write seen on the host: %q", got)
		}
		x.must("delete", "--force", id)
	})
}
