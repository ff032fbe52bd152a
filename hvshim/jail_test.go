package hvshim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/runh-project/runh/hvshim/initrd"
	"github.com/runh-project/runh/hvshim/jail"
	"github.com/runh-project/runh/hvshim/qemu"
)

// TestConfinement boots a VM and reads its QEMU's confinement from the
// host, as docs/security.md describes it.
func TestConfinement(t *testing.T) {
	needVM(t)
	bin := agentBinary(t)
	t.Setenv(initrd.EnvCacheDir, t.TempDir())
	dir, share := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := StartVM(ctx, VMConfig{Dir: dir, Init: bin, Share: share})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, qemu.ConsoleLog))
		t.Fatalf("boot: %v\nconsole:\n%s", err, log)
	}
	defer vm.Close()
	pid := vm.QEMU.Pid()
	proc := "/proc/" + strconv.Itoa(pid)

	st, err := os.ReadFile(proc + "/status")
	if err != nil {
		t.Fatal(err)
	}
	mask := fmt.Sprintf("%016x", jail.CapMask())
	var ns syscall.Stat_t
	if err := syscall.Stat(proc+"/ns/pid", &ns); err != nil {
		t.Fatal(err)
	}
	uid := strconv.Itoa(jail.UID(ns.Ino))
	want := map[string]string{
		"Seccomp": "2", "NoNewPrivs": "1",
		"CapEff": mask, "CapPrm": mask, "CapBnd": mask, "CapAmb": mask,
		"Uid": strings.Repeat(uid+"\t", 3) + uid, "Gid": strings.Repeat(uid+"\t", 3) + uid,
	}
	for _, line := range strings.Split(string(st), "\n") {
		k, v, _ := strings.Cut(line, ":")
		if w, ok := want[k]; ok {
			if v = strings.TrimSpace(v); v != w {
				t.Errorf("%s: %q, want %q", k, v, w)
			}
			delete(want, k)
			t.Logf("%s:\t%s", k, v)
		}
	}
	for k := range want {
		t.Errorf("no %s in %s/status", k, proc)
	}

	// The shim records QEMU's host PID; QEMU's own -pidfile would say 1.
	if b, err := os.ReadFile(filepath.Join(dir, qemu.PidFile)); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(pid) {
		t.Errorf("%s: %q %v, want %d", qemu.PidFile, b, err, pid)
	}
	// delete finds a leftover QEMU by its working directory.
	if cwd, err := os.Readlink(proc + "/cwd"); err != nil || cwd != dir {
		t.Errorf("cwd %q %v, want %s", cwd, err, dir)
	}
	for _, ns := range jail.Namespaces {
		ours, _ := os.Readlink("/proc/self/ns/" + ns)
		its, err := os.Readlink(proc + "/ns/" + ns)
		if err != nil || its == ours {
			t.Errorf("namespace %s: QEMU's %q, ours %q (%v)", ns, its, ours, err)
		}
	}

	// Its root holds no host file.
	for _, f := range []string{"/etc/shadow", "/etc/passwd", "/root", "/home", "/var/lib", "/run", "/sys"} {
		if _, err := os.Lstat(proc + "/root" + f); err == nil {
			t.Errorf("%s is in QEMU's root", f)
		}
	}
	if _, err := os.Stat(proc + "/root/proc/1/status"); err != nil {
		t.Errorf("QEMU's /proc: %v", err)
	}
	if _, err := os.Stat(proc + "/root/proc/sys"); err == nil {
		t.Errorf("QEMU's /proc has sys")
	}
	mi, err := os.ReadFile(proc + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// Nothing honours set-id bits, only device nodes are devices, and
	// nothing QEMU can write can be executed.
	seen := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(mi)), "\n") {
		f := strings.Fields(line)
		point, opts := f[4], ","+f[5]+","
		seen[point] = opts
		need := []string{"nosuid"}
		switch {
		case point == "/":
			need = append(need, "ro", "nodev", "noexec")
		case strings.HasPrefix(point, "/dev/"):
			need = append(need, "noexec")
		case strings.Contains(opts, ",rw,"):
			need = append(need, "nodev", "noexec")
		default:
			need = append(need, "nodev")
		}
		for _, o := range need {
			if !strings.Contains(opts, ","+o+",") {
				t.Errorf("mount %s: %s, want %s", point, f[5], o)
			}
		}
	}
	for _, p := range []string{dir, share} {
		if !strings.Contains(seen[p], ",rw,") {
			t.Errorf("%s in QEMU's namespace: %q, want read-write", p, seen[p])
		}
	}
	for _, p := range []string{"/", dir, share, "/proc", "/dev/null"} {
		if seen[p] == "" {
			t.Errorf("no mount at %s in QEMU's namespace", p)
		}
	}
	t.Logf("%d mounts in QEMU's namespace", len(seen))
}
