package jail

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLibraries: the libraries found for a dynamic program are those the
// loader itself loads (ldd).
func TestLibraries(t *testing.T) {
	bin := "/usr/bin/qemu-system-x86_64"
	if _, err := os.Stat(bin); err != nil {
		bin = "/bin/ls"
	}
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		t.Skipf("ldd %s: %v", bin, err)
	}
	got := map[string]bool{}
	for _, p := range libraries([]string{bin}) {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			got[r] = true
		}
	}
	re := regexp.MustCompile(`(/\S+) \(0x`)
	n := 0
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		r, err := filepath.EvalSymlinks(m[1])
		if err != nil {
			continue
		}
		n++
		if !got[r] {
			t.Errorf("ldd loads %s (%s); not found", m[1], r)
		}
	}
	if n == 0 {
		t.Fatalf("nothing parsed from ldd:\n%s", out)
	}
	t.Logf("%s: %d libraries", bin, n)
}

// result is what the jailed test reports of its own view.
type result struct {
	Status      map[string]string `json:"status"`
	Root        []string          `json:"root"`
	Proc        []string          `json:"proc"`
	Errors      map[string]string `json:"errors"` // probe -> error ("" when it succeeded)
	HostContent string            `json:"hostContent"`
	PIDNS       uint64            `json:"pidns"` // inode of its PID namespace
}

var inJail = flag.Bool("in-jail", false, "run as the jailed program (TestInJail)")

// TestJail runs this test binary in a jail and checks what it can see
// and do there (TestInJail reports it): the layers every VM's QEMU has,
// without QEMU's own seccomp filter.
func TestJail(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if err := Supported(); err != nil {
		t.Skip(err)
	}
	// The jail mounts a tmpfs over its directory: it must be one of its
	// own, not one that other tests use.
	base := t.TempDir()
	dir, share, secret := filepath.Join(base, "vm"), filepath.Join(base, "share"), filepath.Join(base, "secret")
	for _, d := range []string{dir, share} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Outside the jail: a file the program must not reach by any route
	// the share offers.
	if err := os.WriteFile(secret, []byte("host secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// In the share, as a guest could leave them: a symlink out of it, a
	// device node (the host's /dev/null), a setuid-root program.
	if err := os.Symlink(secret, filepath.Join(share, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(share, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	// A share inside the working directory is mounted over its own
	// directory there.
	inner := filepath.Join(dir, "inner")
	if err := os.Mkdir(inner, 0o700); err != nil || os.WriteFile(filepath.Join(inner, "f"), []byte("in"), 0o600) != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	suid := filepath.Join(share, "suid")
	if b, err := os.ReadFile(self); err != nil || os.WriteFile(suid, b, 0o755) != nil || os.Chmod(suid, 0o4755) != nil {
		t.Fatal("setuid copy", err)
	}
	cmd, err := Command(&Config{
		Binary: self,
		Args:   []string{"-test.run=^TestInJail$", "-in-jail", "--", share, fmt.Sprint(os.Getpid())},
		Dir:    dir,
		Shares: []Share{{Path: share}, {Path: inner, ReadOnly: true}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("jailed test: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var r result
	sc := bufio.NewScanner(&stdout)
	found := false
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "RESULT "); ok {
			found = json.Unmarshal([]byte(s), &r) == nil
		}
	}
	if !found {
		t.Fatalf("no result from the jailed test:\n%s%s", stdout.String(), stderr.String())
	}
	mask := fmt.Sprintf("%016x", CapMask())
	for k, want := range map[string]string{
		"CapEff": mask, "CapPrm": mask, "CapBnd": mask, "CapAmb": mask, "NoNewPrivs": "1",
		"Uid": fmt.Sprint(UID(r.PIDNS)), "Groups": "",
	} {
		if got := r.Status[k]; got != want {
			t.Errorf("status %s: %q, want %q", k, got, want)
		}
	}
	if r.HostContent != "" {
		t.Errorf("the host's file read through the share's symlink: %q", r.HostContent)
	}
	wantErr := map[string]string{
		"read /etc/passwd":          "no such file or directory",
		"read share/escape":         "no such file or directory",
		"open share/null":           "permission denied", // nodev
		"exec share/suid":           "permission denied", // noexec
		"write /":                   "read-only file system",
		"write /proc/sysrq-trigger": "no such file or directory",
		"mount tmpfs":               "operation not permitted",
		"chroot":                    "operation not permitted",
		"signal the host":           "no such process",
		"setuid 0":                  "operation not permitted",
		"write dir":                 "",
		"write share":               "",
		"chown share 1234":          "",
		"read inner share":          "",
		"write inner share":         "read-only file system",
	}
	for probe, want := range wantErr {
		got, ok := r.Errors[probe]
		if !ok {
			t.Errorf("%s: not probed", probe)
		} else if got != want {
			t.Errorf("%s: %q, want %q", probe, got, want)
		}
	}
	if len(r.Proc) != 3 || r.Proc[0] != "1" {
		t.Errorf("/proc holds %v: want this process only", r.Proc)
	}
	t.Logf("jail root: %v", r.Root)
	for _, e := range r.Root {
		top := func(p string) bool { return strings.SplitN(p, "/", 3)[1] == e }
		if e != "dev" && e != "proc" && !top(base) && !top(self) {
			t.Errorf("unexpected entry in the jail's root: /%s", e)
		}
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "host secret\n" {
		t.Errorf("host file after the jailed test: %q %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(share, "owned")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1234 {
		t.Errorf("file the jailed test created and gave to 1234: %v", err)
	}
}

// TestInJail is the jailed side of TestJail: it reports what it sees
// and what each probe gives.
func TestInJail(t *testing.T) {
	if !*inJail {
		t.Skip("run by TestJail")
	}
	share := flag.Arg(0)
	r := result{Status: map[string]string{}, Errors: map[string]string{}}
	st, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(st), "\n") {
		k, v, _ := strings.Cut(line, ":")
		f := strings.Fields(v)
		if len(f) > 0 {
			v = f[0]
		} else {
			v = ""
		}
		r.Status[k] = v
	}
	var ns unix.Stat_t
	unix.Stat("/proc/self/ns/pid", &ns)
	r.PIDNS = ns.Ino
	r.Root = names("/")
	r.Proc = names("/proc")
	errStr := func(err error) string {
		if err == nil {
			return ""
		}
		var errno unix.Errno
		for e := err; e != nil; {
			if x, ok := e.(unix.Errno); ok {
				errno = x
				break
			}
			u, ok := e.(interface{ Unwrap() error })
			if !ok {
				break
			}
			e = u.Unwrap()
		}
		if errno != 0 {
			return errno.Error()
		}
		return err.Error()
	}
	probe := func(name string, err error) { r.Errors[name] = errStr(err) }
	_, err := os.ReadFile("/etc/passwd")
	probe("read /etc/passwd", err)
	b, err := os.ReadFile(share + "/escape")
	probe("read share/escape", err)
	r.HostContent = string(b)
	f, err := os.OpenFile(share+"/null", os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	probe("open share/null", err)
	probe("exec share/suid", unix.Exec(share+"/suid", []string{"suid", "-test.run=^$"}, nil))
	probe("write /", os.WriteFile("/x", nil, 0o600))
	probe("write /proc/sysrq-trigger", os.WriteFile("/proc/sysrq-trigger", []byte("h"), 0))
	probe("write dir", os.WriteFile("written", []byte("x"), 0o600))
	probe("write share", os.WriteFile(share+"/owned", []byte("x"), 0o600))
	probe("chown share 1234", os.Chown(share+"/owned", 1234, 1234))
	_, err = os.ReadFile("inner/f")
	probe("read inner share", err)
	probe("write inner share", os.WriteFile("inner/g", nil, 0o600))
	probe("mount tmpfs", unix.Mount("tmpfs", "/dev", "tmpfs", 0, ""))
	probe("chroot", unix.Chroot("/"))
	var host int
	fmt.Sscan(flag.Arg(1), &host)
	probe("signal the host", unix.Kill(host, 0))
	probe("setuid 0", unix.Setresuid(0, 0, 0))
	out, _ := json.Marshal(r)
	fmt.Printf("RESULT %s\n", out)
}

func names(dir string) []string {
	es, _ := os.ReadDir(dir)
	var s []string
	for _, e := range es {
		s = append(s, e.Name())
	}
	return s
}

// BenchmarkJail measures what the jail adds to starting QEMU: `qemu
// -version` jailed (helper, namespaces, about 55 mounts, pivot_root,
// capabilities) against the same command started directly.
func BenchmarkJail(b *testing.B) {
	bin := "/usr/bin/qemu-system-x86_64"
	if os.Geteuid() != 0 || Supported() != nil {
		b.Skip("needs root and the mount API")
	}
	if _, err := os.Stat(bin); err != nil {
		b.Skip(err)
	}
	dir := b.TempDir()
	for _, jailed := range []bool{false, true} {
		name := map[bool]string{false: "direct", true: "jailed"}[jailed]
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				cmd := exec.Command(bin, "-version")
				if jailed {
					var err error
					if cmd, err = Command(&Config{Binary: bin, Args: []string{"-version"}, Dir: dir}, nil); err != nil {
						b.Fatal(err)
					}
				}
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("%v: %s", err, out)
				}
			}
		})
	}
}

func TestHighestMapped(t *testing.T) {
	dir := t.TempDir()
	for in, want := range map[string]int{
		"         0       1001          1\n         1     100000      65536\n": 65536,
		"0 1001 1\n":                         0,
		"         0          0 4294967295\n": 4294967294,
	} {
		p := filepath.Join(dir, "map")
		os.WriteFile(p, []byte(in), 0o644)
		if got, err := highestMapped(p); err != nil || got != want {
			t.Errorf("highestMapped(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	p := filepath.Join(dir, "bad")
	os.WriteFile(p, []byte("0 x 1\n"), 0o644)
	if _, err := highestMapped(p); err == nil {
		t.Error("a bad map: want an error")
	}
}
