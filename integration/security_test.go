package integration

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// vmmCaps is the capability set docs/security.md gives QEMU: CHOWN,
// DAC_OVERRIDE, FOWNER, FSETID, as /proc/PID/status shows it.
const vmmCaps = "000000000000001b"

// TestEscapeRoutes: a root process in the container tries the routes out
// of its rootfs (in a VM: the 9p share) that docs/security.md lists, and
// the host stays untouched. In a VM, meanwhile, QEMU is confined: its
// seccomp filter, no_new_privs, the documented capabilities only, not
// root, and a root that holds no host file.
func TestEscapeRoutes(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		root := writableRootfs(t, x)
		// Outside the rootfs: what a route out of it would reach.
		secret := filepath.Join(x.dir, "host-secret")
		const content = "secret-of-the-host\n"
		if err := os.WriteFile(secret, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, secret)
		script := strings.Join([]string{
			// A symlink out of the rootfs, absolute and relative, written
			// and read through.
			"ln -s " + secret + " /escape-abs", "ln -s " + rel + " /escape-rel",
			"echo pwned > /escape-abs; echo pwned > /escape-rel",
			"cat /escape-abs /escape-rel 2>/dev/null",
			// Device nodes: the host's memory and first disk.
			"mknod /mem c 1 1; mknod /disk b 8 0",
			"head -c 1 /mem >/dev/null 2>&1 && echo mem-readable",
			// A setuid-root program.
			"cp /bin/busybox /suid && chown 0:0 /suid && chmod 4755 /suid",
			"echo ready; sleep 1000",
		}, "\n")
		caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_MKNOD", "CAP_SETUID", "CAP_SETGID"}
		id := x.id("escape")
		out := createFile(t, x.dir, "escape.out")
		bundle := x.bundle("escape", func(s *specs.Spec) {
			writableRoot(root)(s)
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
		}, "sh", "-c", script)
		x.create(id, bundle, out)
		defer x.cleanupContainer(id)
		x.must("start", id)
		waitFileCount(t, fileName(out), "ready", 1, x.timeout())

		if x.mode == ModeHypervisor {
			checkVMM(t, qemuChild(t, x.state(id).Pid), root)
		}
		x.must("delete", "--force", id)

		output := readFile(fileName(out))
		t.Logf("container output: %q", output)
		if b, err := os.ReadFile(secret); err != nil || string(b) != content || strings.Contains(output, content) {
			t.Errorf("host file behind the symlinks: %q %v; container output %q", b, err, output)
		}
		// The relative link climbs no higher than the container's root:
		// what was written through it is in the rootfs.
		if b, _ := os.ReadFile(filepath.Join(root, filepath.Base(secret))); string(b) != "pwned\n" {
			t.Errorf("write through the relative link: %q in the rootfs, want pwned", b)
		}
		if strings.Contains(output, "mem-readable") {
			t.Errorf("the container read a memory device node it made")
		}
		for _, l := range []string{"escape-abs", "escape-rel"} {
			if fi, err := os.Lstat(filepath.Join(root, l)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s: %v, want the container's symlink in its rootfs", l, err)
			}
		}
		// QEMU refuses special files: the guest's mknod fails and leaves
		// nothing; a container of process isolation makes them, as runc's
		// does (and its device cgroup keeps it from opening them).
		for _, n := range []string{"mem", "disk"} {
			_, err := os.Lstat(filepath.Join(root, n))
			if x.mode == ModeHypervisor && err == nil {
				t.Errorf("device node /%s made through the share", n)
			}
			t.Logf("device node /%s on the host: %v", n, err == nil)
		}
		// The container's root may make its files setuid in both modes: the
		// rootfs is its own. QEMU can execute nothing there (noexec, and
		// its seccomp filter refuses execve).
		if fi, err := os.Stat(filepath.Join(root, "suid")); err != nil || fi.Mode()&os.ModeSetuid == 0 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("setuid file the container made: %v %v", fi, err)
		}
	})
}

// checkVMM checks QEMU pid's confinement while its VM runs.
func checkVMM(t *testing.T, pid int, rootfs string) {
	t.Helper()
	proc := "/proc/" + strconv.Itoa(pid)
	status := readFile(proc + "/status")
	field := func(k string) string {
		for _, l := range strings.Split(status, "\n") {
			if v, ok := strings.CutPrefix(l, k+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	for k, want := range map[string]string{
		"Seccomp": "2", "NoNewPrivs": "1",
		"CapEff": vmmCaps, "CapPrm": vmmCaps, "CapBnd": vmmCaps, "CapAmb": vmmCaps,
	} {
		if got := field(k); got != want {
			t.Errorf("QEMU %s: %q, want %q", k, got, want)
		}
	}
	if uid := strings.Fields(field("Uid")); len(uid) == 0 || uid[0] == "0" {
		t.Errorf("QEMU runs as root: Uid %v", uid)
	}
	for _, f := range []string{"/etc/shadow", "/etc/passwd", "/root"} {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		if _, err := os.Lstat(proc + "/root" + f); err == nil {
			t.Errorf("QEMU's root holds the host's %s", f)
		}
	}
	// The rootfs as QEMU sees it: no device, no setuid, no execution.
	mounted := false
	for _, l := range strings.Split(readFile(proc+"/mountinfo"), "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && strings.HasSuffix(f[4], "/share/rootfs") {
			mounted = true
			for _, o := range []string{"nodev", "nosuid", "noexec"} {
				if !strings.Contains(","+f[5]+",", ","+o+",") {
					t.Errorf("QEMU's rootfs share %s: %s, want %s", f[4], f[5], o)
				}
			}
		}
	}
	if !mounted {
		t.Errorf("no rootfs share in QEMU's mounts:\n%s", readFile(proc+"/mountinfo"))
	}
}
