package integration

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// startReady starts a container on root running script, which prints
// "ready" once set up, and waits for that line.
func (x *h) startReady(name, root, script string) string {
	x.t.Helper()
	id := x.id(name)
	out := createFile(x.t, x.dir, name+".out")
	x.create(id, x.bundle(name, writableRoot(root), "sh", "-c", script), out)
	x.cleanupContainer(id)
	x.must("start", id)
	waitFileCount(x.t, fileName(out), "ready", 1, x.timeout())
	return id
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

		id := x.startReady("rootfs-kill", root, "echo written-then-killed > /data/killed; echo ready; sleep 1000")
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
		id := x.startReady("fsync", root, "echo durable > /durable && dd if=/durable of=/durable2 conv=fsync 2>/dev/null && echo ready; sleep 1000")
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

// TestRootfsWriteMix: small writes that sit in the VM's page cache, a large
// O_APPEND write after them and a large overwrite inside them (the guest
// kernel sends large writes to the host at once) give the same bytes, on
// the host and inside, as in process isolation.
func TestRootfsWriteMix(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		root := writableRootfs(t, x)
		script := `set -e
head -c 100 /dev/zero | tr '\0' a > /m
head -c 300000 /dev/zero | tr '\0' b > /b
dd if=/b of=/m bs=300000 count=1 oflag=append conv=notrunc 2>/dev/null
printf ccc >> /m
head -c 70000 /dev/zero | tr '\0' d > /d
dd if=/d of=/m bs=70000 count=1 seek=50 oflag=seek_bytes conv=notrunc 2>/dev/null
sha256sum /m`
		r := x.runO(opts{}, "run", "--bundle", x.bundle("mix", writableRoot(root), "sh", "-c", script), x.id("mix"))
		if r.code != 0 {
			t.Fatalf("run: %v", r)
		}
		want := []byte(strings.Repeat("a", 100) + strings.Repeat("b", 300000) + "ccc")
		copy(want[50:], strings.Repeat("d", 70000))
		got, err := os.ReadFile(filepath.Join(root, "m"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("file on the host: %d bytes, want %d, equal prefix %d", len(got), len(want), commonPrefix(got, want))
		}
		if sum := fmt.Sprintf("%x", sha256.Sum256(want)); !strings.HasPrefix(r.stdout, sum) {
			t.Errorf("file inside: sha256 %q, want %s", r.stdout, sum)
		}
	})
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestRootfsReadPermissions: once root has read a file that only root may
// read (in a VM, read-only opens then share one open file on the host), a
// process of another user still may not, and may read a file for all.
func TestRootfsReadPermissions(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		root := writableRootfs(t, x)
		os.WriteFile(filepath.Join(root, "secret"), []byte("root only\n"), 0o600)
		os.WriteFile(filepath.Join(root, "public"), []byte("for all\n"), 0o644)
		id := x.startContainer("perm", writableRoot(root), "sleep", "1000")
		defer x.cleanupContainer(id)
		if got := x.must("exec", id, "cat", "/secret", "/public").stdout; got != "root only\nfor all\n" {
			t.Fatalf("root reads: %q", got)
		}
		if r := x.rt("exec", "--user", "65534:65534", id, "cat", "/secret"); r.code == 0 || !strings.Contains(r.stderr, "ermission denied") {
			t.Errorf("another user read a root-only file: %v", r)
		}
		if got := x.must("exec", "--user", "65534:65534", id, "cat", "/public").stdout; got != "for all\n" {
			t.Errorf("another user reads a file for all: %q", got)
		}
		x.must("delete", "--force", id)
	})
}

// TestRootfsSharedReadOpens: in a VM, read-only opens of one rootfs file by
// one user share one open file on the host (runh's kernel patch,
// docs/hypervisor.md), so opening a cached file again costs no message to
// QEMU: four descriptors in the container, one in QEMU.
func TestRootfsSharedReadOpens(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		if x.mode != ModeHypervisor {
			t.Skip("no VMM (no 9p share) with process isolation")
		}
		root := writableRootfs(t, x)
		os.WriteFile(filepath.Join(root, "shared-read"), []byte("x\n"), 0o644)
		id := x.startReady("sharedread", root, "exec 3</shared-read 4</shared-read 5</shared-read 6</shared-read; echo ready; sleep 1000")
		qemu := qemuChild(t, x.state(id).Pid)
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", qemu))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range ents {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", qemu, e.Name())); err == nil && strings.HasSuffix(l, "/shared-read") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("QEMU holds %d open files for 4 read-only opens of one file in the container, want 1", n)
		}
		x.must("delete", "--force", id)
	})
}
