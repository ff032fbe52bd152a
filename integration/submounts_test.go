package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// submountsScript lists the submount's mount point as two binds show it,
// then tries to write at each level of the volumes submountVolumes binds,
// printing "PATH: rw", "PATH: ro" (EROFS) or the error, then to run a
// script above and in the noexec submount.
const submountsScript = `
for v in ro nonrec; do echo "$v/sub:" $(ls /v/$v/sub); done
w() {
	if e=$(touch "$1" 2>&1); then echo "$1: rw"
	else case $e in *Read-only*) echo "$1: ro";; *) echo "$1: $e";; esac
	fi
}
for v in ro rro rw; do w /v/$v/f-$v; w /v/$v/sub/f-$v; w /v/$v/sub/inner/f-$v; done
w /v/nonrec/f-nonrec
w /v/nonrec/sub/f-nonrec
w /v/plain/f
x() {
	if e=$("$1" 2>&1); then echo "$1: $e"
	else case $e in *denied*) echo "$1: denied";; *) echo "$1: $e";; esac
	fi
}
x /v/ro/run.sh; x /v/ro/sub/run.sh; x /v/rw/sub/run.sh
`

// submountsWant is the script's output in both modes: "ro" leaves the
// submount (a tmpfs) writable and its read-only submount read-only; "rro"
// makes all read-only; "rw" keeps each mount's own; a non-recursive bind
// brings no submount, its mount point shows the directory beneath. The
// submount's noexec stays under either.
var submountsWant = []string{
	"ro/sub: inner insub run.sh", "nonrec/sub: under",
	"/v/ro/f-ro: ro", "/v/ro/sub/f-ro: rw", "/v/ro/sub/inner/f-ro: ro",
	"/v/rro/f-rro: ro", "/v/rro/sub/f-rro: ro", "/v/rro/sub/inner/f-rro: ro",
	"/v/rw/f-rw: rw", "/v/rw/sub/f-rw: rw", "/v/rw/sub/inner/f-rw: ro",
	"/v/nonrec/f-nonrec: ro", "/v/nonrec/sub/f-nonrec: ro",
	"/v/plain/f: ro",
	"/v/ro/run.sh: ran", "/v/ro/sub/run.sh: denied", "/v/rw/sub/run.sh: denied",
}

// submountVolumes makes, under dir, a volume with a noexec tmpfs
// submount "sub" (over a directory holding "under") and, in it, a
// read-only tmpfs "inner", a script run.sh in the volume and in sub; and a
// volume "plain" without submounts. It returns the mounts
// that bind them under /v, with "ro", "rro", "rw" and a non-recursive
// "bind,ro".
func submountVolumes(t *testing.T, dir string) []specs.Mount {
	t.Helper()
	vol, plain := filepath.Join(dir, "vol"), filepath.Join(dir, "plain")
	sub := filepath.Join(vol, "sub")
	inner := filepath.Join(sub, "inner")
	for _, d := range []string{sub, plain} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sub, "under"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	script := []byte("#!/bin/sh\necho ran\n")
	if err := os.WriteFile(filepath.Join(vol, "run.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", unix.MS_NOEXEC, "mode=755,size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(sub, "insub"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sub, "run.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", inner, "tmpfs", 0, "mode=755,size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(inner, unix.MNT_DETACH) })
	// Read-only as a mount, not as a filesystem: the flag a bind's
	// remount sets or leaves.
	if err := unix.Mount("", inner, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	bind := func(name, src string, o ...string) specs.Mount {
		return specs.Mount{Destination: "/v/" + name, Type: "bind", Source: src, Options: o}
	}
	return []specs.Mount{
		{Destination: "/v", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755"}},
		bind("ro", vol, "rbind", "ro"),
		bind("rro", vol, "rbind", "rro"),
		bind("rw", vol, "rbind", "rw"),
		bind("nonrec", vol, "bind", "ro"),
		bind("plain", plain, "rbind", "ro"),
	}
}

func checkSubmountOutput(t *testing.T, got string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(got), "\n")
	if strings.Join(lines, "\n") == strings.Join(submountsWant, "\n") {
		return
	}
	for i, w := range submountsWant {
		g := "(missing)"
		if i < len(lines) {
			g = lines[i]
		}
		if g != w {
			t.Errorf("got %q, want %q", g, w)
		}
	}
	t.Fatalf("output: %s", got)
}

// TestSubmountFlags: a host volume's submounts keep their own mount flags
// under a bind mount's non-recursive options (the CRI's "should support
// non-recursive readonly mounts"), as runc leaves them; "rro" reaches
// them; a plain "bind" leaves them out. In a VM the volume reaches the
// guest as one 9p tree, which the bind's "ro" covered whole.
func TestSubmountFlags(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		t.Run("container", func(t *testing.T) {
			x := x.at(t)
			mounts := submountVolumes(t, filepath.Join(x.dir, "container"))
			out := createFile(t, x.dir, "submounts.out")
			r := x.runO(opts{stdout: out}, "run", "--bundle", x.bundle("submounts", func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, mounts...)
			}, "sh", "-c", submountsScript), x.id("submounts"))
			got := readFile(fileName(out))
			if r.code != 0 {
				t.Fatalf("run: %v: %s", r, got)
			}
			checkSubmountOutput(t, got)
		})
		// A pod's container: in the sandbox's VM, its volumes come as
		// detached mount trees.
		t.Run("pod", func(t *testing.T) {
			x := x.at(t)
			mounts := submountVolumes(t, filepath.Join(x.dir, "pod"))
			sb := x.id("subsb")
			x.create(sb, x.bundle("subsb", func(s *specs.Spec) {
				s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
			}, "sleep", "100000"), nil)
			x.must("start", sb)
			m := x.id("submember")
			out := createFile(t, x.dir, "submember.out")
			x.create(m, x.bundle("submember", func(s *specs.Spec) {
				podMember(sb, x.state(sb).Pid)(s)
				s.Mounts = append(s.Mounts, mounts...)
			}, "sh", "-c", submountsScript), out)
			x.must("start", m)
			x.waitStatus(m, "stopped")
			checkSubmountOutput(t, readFile(fileName(out)))
			x.must("delete", m)
			x.must("delete", "--force", sb)
		})
	})
}
