package engines

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// One private containerd (Debian's) serves both ctr (namespace "default")
// and the CRI (namespace "k8s.io"); it is started on first use and stopped by PID.
var (
	ctrdDir  string
	ctrdSock string
)

var containerdSetup = sync.OnceValue(func() error {
	fl := debFlavour()
	if fl.skip != "" {
		return errors.New(fl.skip)
	}
	ctrdDir = filepath.Join(baseDir, "containerd")
	ctrdSock = filepath.Join(ctrdDir, "containerd.sock")
	if err := os.MkdirAll(filepath.Join(ctrdDir, "cni"), 0o755); err != nil {
		return err
	}
	// The CRI handlers keep the runc shim's default root, as an operator's would.
	d, err := startContainerd(fl, ctrdDir, fl.config(criConf(ctrdDir, "")), 0, []string{"default", "k8s.io"}, "")
	if err != nil {
		return err
	}
	return d.importImages("default", "k8s.io")
})

// criConf is the configuration of a containerd for the crictl scenarios:
// two CRI runtime handlers over the stock runc shim, as an operator would
// configure them (docs/engines.md), with runc root root ("" the shim's
// default); ctr picks the binary itself.
func criConf(dir, root string) ctrdConf {
	vm := vmBin
	if vm == "" {
		vm = runtimeBin // the reference runtime: the handler exists but means nothing
	}
	ann := []string{"io.runh.*"}
	return ctrdConf{dir: dir, debug: true, sandboxImage: pauseName, defaultRuntime: "runh", runtimes: []ctrdRuntime{
		{name: "runh", bin: runtimeBin, root: root, podAnnotations: ann},
		{name: "runh-vm", bin: vm, root: root, podAnnotations: ann},
	}}
}

// ---- containerd flavours ----

// ctrdFlavour is one containerd that the CRI scenarios and critest run
// against: Debian's (1.6) from $PATH, and the 2.x that
// scripts/mkcontainerd2.sh builds from the Go module proxy (make engines-deps).
type ctrdFlavour struct {
	name string // "containerd1.6", "containerd2.4": subtests
	key  string // "" for Debian's, else "ctrd2.4": summary rows and paths
	dir  string // its containerd, ctr and containerd-shim-runc-v2; "" for $PATH
	v3   bool   // configured in version 3, as containerd 2.x reads it
	skip string // why it cannot run here
}

// suffix tells the flavour's summary rows from Debian's, whose rows
// ("crictl/process", "critest/runh") predate the others.
func (f ctrdFlavour) suffix() string {
	if f.key == "" {
		return ""
	}
	return "-" + f.key
}

func (f ctrdFlavour) bin(name string) string {
	if f.dir == "" {
		return name
	}
	return filepath.Join(f.dir, name)
}

var minorRE = regexp.MustCompile(`(\d+\.\d+)\.\d+`)

// debFlavour is Debian's containerd, named by its version.
var debFlavour = sync.OnceValue(func() ctrdFlavour {
	f := ctrdFlavour{name: "containerd1.6"}
	for _, b := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(b); err != nil {
			f.skip = fmt.Sprintf("%s not installed (apt-get install --no-install-recommends containerd)", b)
			return f
		}
	}
	if m := minorRE.FindStringSubmatch(runCmd(runOpts{timeout: 30 * time.Second}, "containerd", "--version").stdout); m != nil {
		f.name = "containerd" + m[1]
	}
	return f
})

// ctrd2Flavour is the containerd 2.x in $CONTAINERD2_DIR (default
// build/engines/containerd2; "none" leaves it out).
var ctrd2Flavour = sync.OnceValue(func() ctrdFlavour {
	dir := os.Getenv("CONTAINERD2_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot, "build/engines/containerd2")
	}
	f := ctrdFlavour{name: "containerd2", key: "ctrd2", dir: dir, v3: true}
	if dir == "none" {
		f.skip = "CONTAINERD2_DIR=none"
		return f
	}
	for _, b := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		if !fileExists(filepath.Join(dir, b)) {
			f.skip = fmt.Sprintf("containerd 2.x not built: no %s in %s (make engines-deps builds it with scripts/mkcontainerd2.sh)", b, dir)
			if e := strings.TrimSpace(readFile(filepath.Join(dir, "build-error.txt"))); e != "" {
				f.skip += ": " + strings.Join(strings.Fields(e), " ")
			}
			return f
		}
	}
	if m := minorRE.FindStringSubmatch(readFile(filepath.Join(dir, "containerd.version"))); m != nil {
		f.name, f.key = "containerd"+m[1], "ctrd"+m[1]
	}
	return f
})

// ctrdFlavours are the containerds of the CRI scenarios and critest, in
// the order they run; one that cannot run is there with its reason.
func ctrdFlavours() []ctrdFlavour {
	fl := []ctrdFlavour{debFlavour(), ctrd2Flavour()}
	if f := fl[1]; f.skip != "" {
		summaryNote(f.name + ": " + f.skip)
	}
	return fl
}

// ctrdRuntime is one CRI runtime handler over the stock runc shim.
type ctrdRuntime struct {
	name, bin string
	// root is the shim's runc root, to which it adds the namespace; ""
	// for its default, /run/containerd/runc.
	root           string
	podAnnotations []string // pod annotations let through to config.json
}

// ctrdConf is what a test containerd is configured with. Everything of
// its own lives under dir: root, state, sockets, opt, the CNI conf_dir
// (dir/cni), NRI's socket.
type ctrdConf struct {
	dir            string
	debug          bool
	sandboxImage   string
	hostsDir       string // registry hosts.toml directories ("" none)
	defaultRuntime string
	runtimes       []ctrdRuntime
}

// config writes c in the form the flavour reads: version 2 for 1.6 (the
// CRI plugin's settings in one table), version 3 for 2.x (the CRI split
// into an images and a runtime plugin, CNI bin_dirs).
func (f ctrdFlavour) config(c ctrdConf) string {
	var b strings.Builder
	var rt string // the runtimes' table
	if !f.v3 {
		b.WriteString(containerdConfigHead(c.dir, 2, "aufs", "btrfs", "zfs", "devmapper"))
		if c.debug {
			b.WriteString("[debug]\n  level = \"debug\"\n")
		}
		fmt.Fprintf(&b, `[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[2]q
  disable_tcp_service = true
  # Root here lacks CAP_SYS_RESOURCE: it cannot lower oom_score_adj to the
  # sandbox's -998, so clamp it as for rootless setups.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "%[1]s/cni"
`, c.dir, c.sandboxImage)
		if c.hostsDir != "" {
			fmt.Fprintf(&b, "  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = %q\n", c.hostsDir)
		}
		fmt.Fprintf(&b, "  [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    snapshotter = \"overlayfs\"\n    default_runtime_name = %q\n", c.defaultRuntime)
		rt = `plugins."io.containerd.grpc.v1.cri".containerd.runtimes`
	} else {
		// NRI, on by default in 2.x, listens in dir rather than /var/run/nri.
		b.WriteString(containerdConfigHead(c.dir, 3, "btrfs", "zfs", "devmapper", "blockfile", "erofs"))
		if c.debug {
			b.WriteString("[debug]\n  level = \"debug\"\n")
		}
		fmt.Fprintf(&b, `[plugins."io.containerd.nri.v1.nri"]
  socket_path = "%[1]s/nri.sock"
  plugin_path = "%[1]s/nri/plugins"
  plugin_config_path = "%[1]s/nri/conf.d"
[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = %[2]q
`, c.dir, c.sandboxImage)
		if c.hostsDir != "" {
			fmt.Fprintf(&b, "  [plugins.\"io.containerd.cri.v1.images\".registry]\n    config_path = %q\n", c.hostsDir)
		}
		fmt.Fprintf(&b, `[plugins."io.containerd.cri.v1.runtime"]
  # Root here lacks CAP_SYS_RESOURCE (see above).
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "%[1]s/cni"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = %[2]q
`, c.dir, c.defaultRuntime)
		rt = `plugins."io.containerd.cri.v1.runtime".containerd.runtimes`
	}
	for _, r := range c.runtimes {
		fmt.Fprintf(&b, "    [%s.%q]\n      runtime_type = \"io.containerd.runc.v2\"\n", rt, r.name)
		if len(r.podAnnotations) > 0 {
			q := make([]string, len(r.podAnnotations))
			for i, a := range r.podAnnotations {
				q[i] = strconv.Quote(a)
			}
			fmt.Fprintf(&b, "      pod_annotations = [%s]\n", strings.Join(q, ", "))
		}
		fmt.Fprintf(&b, "      [%s.%q.options]\n        BinaryName = %q\n", rt, r.name, r.bin)
		if r.root != "" {
			fmt.Fprintf(&b, "        Root = %q\n", r.root)
		}
	}
	return b.String()
}

// ctrdDaemon is a running test containerd.
type ctrdDaemon struct {
	fl   ctrdFlavour
	dir  string
	sock string
	cmd  *exec.Cmd
}

// startContainerd writes conf to dir/config.toml and starts the flavour's
// containerd on it (log: dir/containerd.log), in the extra namespaces of
// cloneflags. When the suite ends it removes what is left in namespaces,
// stops the daemon by PID, and unmounts and removes runcRoot ("" none).
func startContainerd(fl ctrdFlavour, dir, conf string, cloneflags uintptr, namespaces []string, runcRoot string) (*ctrdDaemon, error) {
	d := &ctrdDaemon{fl: fl, dir: dir, sock: filepath.Join(dir, "containerd.sock")}
	confPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "containerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(fl.bin("containerd"), "--config", confPath)
	if fl.dir != "" {
		// containerd looks for its shim in $PATH before its own directory:
		// without this a 2.x would run Debian's 1.6 shim.
		cmd.Env = append(os.Environ(), "PATH="+fl.dir+":"+os.Getenv("PATH"))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by -timeout must not leave the daemon behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Cloneflags: cloneflags}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", fl.bin("containerd"), err)
	}
	d.cmd = cmd
	atExit(func() {
		d.stop(namespaces)
		logf.Close()
		if runcRoot != "" {
			unmountUnder(runcRoot)
			os.RemoveAll(runcRoot)
		}
	})
	if !waitFor(30*time.Second, func() bool { return d.ctr("default", runOpts{timeout: 10 * time.Second}, "version").code == 0 }) {
		return nil, fmt.Errorf("%s did not answer on %s: %s", fl.name, d.sock, tailFile(logPath, 5))
	}
	return d, nil
}

// ctr runs the flavour's ctr against the daemon, stdin held open as ctr() does.
func (d *ctrdDaemon) ctr(ns string, o runOpts, args ...string) result {
	if o.stdin == nil {
		o.holdOpen = true
	}
	return runCmd(o, append([]string{d.fl.bin("ctr"), "-a", d.sock, "-n", ns}, args...)...)
}

// importImages imports the busybox and pause images into namespaces.
func (d *ctrdDaemon) importImages(namespaces ...string) error {
	archive, err := busyboxOCI()
	if err != nil {
		return fmt.Errorf("write OCI archive: %w", err)
	}
	for _, ns := range namespaces {
		if r := d.ctr(ns, runOpts{timeout: 2 * time.Minute}, "images", "import", archive); r.code != 0 {
			return fmt.Errorf("%s: ctr -n %s images import: %s", d.fl.name, ns, r)
		}
	}
	return nil
}

// busyboxOCI writes the OCI archive of imageName and pauseName once.
var busyboxOCI = sync.OnceValues(func() (string, error) {
	archive := filepath.Join(baseDir, "busybox-oci.tar")
	return archive, ociArchive(archive)
})

// stop removes what is left in the daemon's namespaces (pods through the
// CRI, then every task, whose shim outlives containerd otherwise), then
// stops the daemon by PID.
func (d *ctrdDaemon) stop(namespaces []string) {
	o := runOpts{timeout: 3 * time.Minute}
	if bin, err := findCrictl(); err == nil {
		ep := "unix://" + d.sock
		runCmd(o, bin, "--config", os.DevNull, "--runtime-endpoint", ep, "--image-endpoint", ep, "rmp", "-f", "-a")
	}
	o.timeout = time.Minute
	for _, ns := range namespaces {
		for _, id := range strings.Fields(d.ctr(ns, o, "containers", "ls", "-q").stdout) {
			d.ctr(ns, o, "task", "kill", "-s", "SIGKILL", id)
			d.ctr(ns, o, "task", "delete", "-f", id)
			d.ctr(ns, o, "containers", "rm", id)
		}
	}
	stopProcess(d.cmd, 15*time.Second)
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ctr runs a ctr command against the private containerd. Its stdin is a
// pipe held open: ctr 1.6 hangs when stdin reaches EOF before the task runs.
func ctr(ns string, o runOpts, args ...string) result {
	if o.stdin == nil {
		o.holdOpen = true
	}
	return runCmd(o, append([]string{"ctr", "-a", ctrdSock, "-n", ns}, args...)...)
}

// ctrFlush keeps an exec'd process alive a moment after it prints: ctr 1.6
// can drop the last output of a process that exits right after writing it
// (a containerd client race, seen with runc and runh alike).
const ctrFlush = "sleep 0.3"

// ctrT is one ctr scenario: its mode, container ID and helpers.
type ctrT struct {
	t    *testing.T
	mode string
	id   string
}

func newCtr(t *testing.T, mode string) *ctrT {
	name := t.Name()[strings.LastIndex(t.Name(), "/")+1:]
	c := &ctrT{t: t, mode: mode, id: "ctr-" + mode[:1] + "-" + name}
	t.Cleanup(func() {
		o := runOpts{timeout: time.Minute}
		ctr("default", o, "task", "kill", "-s", "SIGKILL", c.id)
		ctr("default", o, "task", "delete", "-f", c.id)
		ctr("default", o, "containers", "rm", c.id)
		if t.Failed() {
			t.Logf("containerd log for %s:\n%s", c.id, grepLines(readFile(filepath.Join(ctrdDir, "containerd.log")), c.id, 15))
		}
	})
	return c
}

func readFile(p string) string { b, _ := os.ReadFile(p); return string(b) }

// runArgs are `ctr run`'s runtime selection: the runh-vm path selects
// hypervisor isolation, as the runc shim's BinaryName would.
func (c *ctrT) runArgs() []string {
	bin := runtimeBin
	if c.mode == modeHypervisor {
		bin = vmBin
	}
	return []string{"run", "--runc-binary", bin, "--runc-root", filepath.Join(ctrdDir, "runc-root")}
}

func (c *ctrT) do(args ...string) result {
	return ctr("default", runOpts{timeout: cmdTimeout(c.mode)}, args...)
}

func (c *ctrT) ok(args ...string) string {
	c.t.Helper()
	r := c.do(args...)
	if r.code != 0 || r.err != nil {
		c.t.Fatalf("ctr %s: %s", strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.stdout)
}

// run runs `ctr run [flags] IMAGE ID args...` in the foreground.
func (c *ctrT) run(flags []string, args ...string) result {
	argv := append(c.runArgs(), flags...)
	argv = append(argv, imageName, c.id)
	return c.do(append(argv, args...)...)
}

// detached starts the container's task in the background.
func (c *ctrT) detached(flags []string, args ...string) {
	c.t.Helper()
	if len(args) == 0 {
		args = []string{"sleep", "100000"}
	}
	r := c.run(append([]string{"-d"}, flags...), args...)
	if r.code != 0 {
		c.t.Fatalf("ctr run -d: %s", r)
	}
}

func (c *ctrT) status() string {
	for _, l := range strings.Split(c.do("task", "ls").stdout, "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == c.id {
			return f[2]
		}
	}
	return ""
}

func (c *ctrT) waitStatus(want string) {
	c.t.Helper()
	if !waitFor(cmdTimeout(c.mode), func() bool { return c.status() == want }) {
		c.t.Fatalf("task %s: status %q, want %s", c.id, c.status(), want)
	}
}

// background starts a foreground ctr command without waiting for it.
func (c *ctrT) background(stdin io.Reader, argv []string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- ctr("default", runOpts{stdin: stdin, timeout: cmdTimeout(c.mode)}, argv...) }()
	return ch
}

func TestCtr(t *testing.T) {
	hostKernel := strings.TrimSpace(runCmd(runOpts{}, "uname", "-r").stdout)
	runScenarios(t, "ctr", containerdSetup, []scenario{
		{name: "run-rm-echo", fn: func(t *testing.T, mode string) {
			c := newCtr(t, mode)
			lines := strings.Split(expectOK(t, c.run([]string{"--rm"}, "sh", "-c", "echo hello; uname -r")), "\n")
			if len(lines) != 2 || lines[0] != "hello" {
				t.Fatalf("want hello and a kernel release, got %q", lines)
			}
			checkKernel(t, mode, hostKernel, lines[1])
		}},
		{name: "rootfs", fn: func(t *testing.T, mode string) {
			c := newCtr(t, mode)
			dir := filepath.Join(t.TempDir(), "rootfs")
			if out, err := exec.Command("cp", "-a", rootfsDir, dir).CombinedOutput(); err != nil {
				t.Fatalf("cp rootfs: %v: %s", err, out)
			}
			// No image config here, so no PATH either.
			argv := append(c.runArgs(), "--rm", "--rootfs", dir, c.id, "/bin/echo", "hello")
			expectOut(t, c.do(argv...), 0, "hello")
		}},
		{name: "exit-code", fn: func(t *testing.T, mode string) {
			expectOut(t, newCtr(t, mode).run([]string{"--rm"}, "sh", "-c", "exit 7"), 7, "")
		}},
		{name: "stdin", fn: func(t *testing.T, mode string) {
			c := newCtr(t, mode)
			pr, pw := io.Pipe()
			argv := append(c.runArgs(), "--rm", imageName, c.id, "cat") // ctr always attaches stdin
			done := c.background(pr, argv)
			// Feed stdin only once the task runs (the ctr 1.6 quirk).
			c.waitStatus("RUNNING")
			io.WriteString(pw, "hello stdin\n")
			pw.Close()
			expectOut(t, <-done, 0, "hello stdin")
		}},
		{name: "detached-exec-ps-kill-delete", fn: func(t *testing.T, mode string) {
			c := newCtr(t, mode)
			c.detached(nil)
			c.waitStatus("RUNNING")
			expectOut(t, c.do("task", "exec", "--exec-id", "e1", c.id, "sh", "-c", "echo in-exec; "+ctrFlush+"; exit 5"), 5, "in-exec")
			if ps := c.ok("task", "ps", c.id); len(strings.Split(ps, "\n")) < 2 {
				t.Fatalf("task ps lists no process: %q", ps)
			}
			c.ok("task", "kill", "-s", "SIGKILL", c.id)
			c.waitStatus("STOPPED")
			expectDeleteStatus(t, c.do("task", "delete", c.id), 137)
		}},
		{name: "pause-resume", fn: func(t *testing.T, mode string) {
			c := newCtr(t, mode)
			c.detached(nil)
			c.waitStatus("RUNNING")
			c.ok("task", "pause", c.id)
			c.waitStatus("PAUSED")
			c.ok("task", "resume", c.id)
			c.waitStatus("RUNNING")
			expectOut(t, c.do("task", "exec", "--exec-id", "e1", c.id, "sh", "-c", "echo alive; "+ctrFlush), 0, "alive")
		}},
		{name: "kill-usr1-trap", fn: func(t *testing.T, mode string) {
			c := newCtr(t, mode)
			c.detached(nil, "sh", "-c", usr1Trap)
			n := 0
			if !waitFor(cmdTimeout(mode), func() bool {
				n++
				return c.do("task", "exec", "--exec-id", fmt.Sprintf("p%d", n), c.id, "test", "-f", "/tmp/trap-ready").code == 0
			}) {
				t.Fatal("trap never became ready")
			}
			c.ok("task", "kill", "-s", "SIGUSR1", c.id)
			c.waitStatus("STOPPED")
			expectDeleteStatus(t, c.do("task", "delete", c.id), 3)
		}},
		{name: "sigkill-137", fn: func(t *testing.T, mode string) {
			c := newCtr(t, mode)
			done := c.background(nil, append(c.runArgs(), "--rm", imageName, c.id, "sleep", "100000"))
			c.waitStatus("RUNNING")
			c.ok("task", "kill", "-s", "SIGKILL", c.id)
			if r := <-done; r.code != 137 {
				t.Fatalf("ctr run: want exit 137, got %s", r)
			}
		}},
		{name: "tty-run-exec", fn: func(t *testing.T, mode string) {
			c := newCtr(t, mode)
			argv := append([]string{"ctr", "-a", ctrdSock, "-n", "default"}, c.runArgs()...)
			argv = append(argv, "-t", "--rm", imageName, c.id, "tty")
			expectPTS(t, runCmd(runOpts{holdOpen: true, timeout: cmdTimeout(mode)}, inTTY(argv)...))
			c.detached(nil)
			c.waitStatus("RUNNING")
			argv = []string{"ctr", "-a", ctrdSock, "-n", "default", "task", "exec", "-t", "--exec-id", "t1", c.id, "tty"}
			expectPTS(t, runCmd(runOpts{holdOpen: true, timeout: cmdTimeout(mode)}, inTTY(argv)...))
		}},
		{name: "env-cwd", fn: func(t *testing.T, mode string) {
			r := newCtr(t, mode).run([]string{"--rm", "--env", "GREETING=hi there", "--cwd", "/tmp"}, "sh", "-c", `echo "$GREETING"; pwd`)
			expectOut(t, r, 0, "hi there\n/tmp")
		}},
		{name: "read-only", fn: func(t *testing.T, mode string) {
			r := newCtr(t, mode).run([]string{"--rm", "--read-only"}, "sh", "-c", "touch /x 2>/dev/null && echo rootfs-writable || echo rootfs-ro")
			expectOut(t, r, 0, "rootfs-ro")
		}},
		{name: "mount-bind", fn: func(t *testing.T, mode string) {
			dir := t.TempDir()
			r := newCtr(t, mode).run([]string{"--rm", "--mount", "type=bind,src=" + dir + ",dst=/data,options=rbind:rw"},
				"sh", "-c", "echo from-container > /data/f && cat /data/f")
			expectOut(t, r, 0, "from-container")
			checkFile(t, filepath.Join(dir, "f"), "from-container")
		}},
		{name: "privileged", fn: func(t *testing.T, mode string) {
			expectOut(t, newCtr(t, mode).run([]string{"--rm", "--privileged"}, "sh", "-c", privCheck), 0, "privileged")
		}},
		{name: "uidmap", fn: func(t *testing.T, mode string) {
			r := newCtr(t, mode).run([]string{"--rm", "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536"},
				"sh", "-c", "cat /proc/self/uid_map; id -u")
			if got := strings.Join(strings.Fields(expectOK(t, r)), " "); got != "0 100000 65536 0" {
				t.Fatalf("uid_map and uid: got %q", got)
			}
		}},
		{name: "memory-limit", fn: func(t *testing.T, mode string) {
			// ctr's default spec mounts no cgroupfs: ask for one to read the limit inside.
			r := newCtr(t, mode).run([]string{"--rm", "--memory-limit", "67108864", "--mount", "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro"}, "sh", "-c", catMemLimit)
			expectOut(t, r, 0, "67108864")
		}},
		{name: "oom-137", fn: func(t *testing.T, mode string) {
			r := newCtr(t, mode).run([]string{"--rm", "--memory-limit", "33554432"}, "sh", "-c", memHog)
			if r.code != 137 {
				t.Fatalf("want exit 137, got %s", r)
			}
		}},
		{name: "task-metrics", fn: func(t *testing.T, mode string) {
			c := newCtr(t, mode)
			c.detached(nil)
			c.waitStatus("RUNNING")
			if out := c.ok("task", "metrics", c.id); !strings.Contains(out, "memory.") {
				t.Fatalf("task metrics shows no memory figures: %q", out)
			}
		}},
	})
}

// expectDeleteStatus checks the exit status `ctr task delete` reports: ctr
// 1.6 exits 0 and warns "exit with non-zero exit code N" on stderr.
func expectDeleteStatus(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != 0 || !strings.Contains(r.stderr, fmt.Sprintf("exit code %d", code)) {
		t.Fatalf("task delete: want exit status %d reported, got %s", code, r)
	}
}

// containerdConfigHead is the start of a test containerd's configuration
// in the schema of the given version (2 for 1.6, 3 for 2.x): everything of
// its own under dir (root, state, sockets, opt), the named snapshotters,
// which this host cannot use, off (tracing too on 1.6).
func containerdConfigHead(dir string, version int, snapshotters ...string) string {
	var off []string
	for _, sn := range snapshotters {
		off = append(off, strconv.Quote("io.containerd.snapshotter.v1."+sn))
	}
	if version == 2 {
		off = append(off, `"io.containerd.internal.v1.tracing"`)
	}
	return fmt.Sprintf(`version = %[2]d
root = "%[1]s/root"
state = "%[1]s/state"
disabled_plugins = [%[3]s]
[grpc]
  address = "%[1]s/containerd.sock"
[ttrpc]
  address = "%[1]s/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "%[1]s/opt"
`, dir, version, strings.Join(off, ", "))
}
