package engines

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var ptsRE = regexp.MustCompile(`^/dev/pts/[0-9]+$`)

// expectPTS checks that tty(1), run under script(1), printed a pty: the
// first line of the terminal's output (clients may log after it).
func expectPTS(t *testing.T, r result) {
	t.Helper()
	if got := firstLine(expectOK(t, r)); !ptsRE.MatchString(got) {
		t.Fatalf("tty printed %q, want /dev/pts/N; %s", got, r)
	}
}

// podmanEnv is the private configuration every podman call runs with.
var podmanEnv []string

// podmanSetup writes podman's private configuration and imports the image.
var podmanSetup = sync.OnceValue(func() error {
	for _, b := range []string{"podman", "conmon"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not installed (apt-get install --no-install-recommends podman conmon)", b)
		}
	}
	dir := filepath.Join(baseDir, "podman")
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		return err
	}
	// Root here lacks CAP_SYS_RESOURCE: podman's default ulimits (1048576)
	// exceed the hard limits, so ask for what podman itself runs with.
	var nofile, nproc syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile)
	_ = syscall.Getrlimit(6 /* RLIMIT_NPROC */, &nproc)
	if nproc.Max > 32768 { // podman lowers its own nproc to 32768
		nproc.Max = 32768
	}
	conf := fmt.Sprintf(`[containers]
netns = "none"
default_ulimits = ["nofile=%[2]d:%[2]d", "nproc=%[3]d:%[3]d"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "%[1]s/events.log"
lock_type = "file"
tmp_dir = "%[1]s/tmp"
volume_path = "%[1]s/volumes"
[network]
# CNI, whatever else is installed: the network scenarios expect its bridges.
network_backend = "cni"
network_config_dir = "%[1]s/cni"
`, dir, nofile.Max, nproc.Max)
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n", dir+"/root", dir+"/runroot")
	files := map[string]string{"containers.conf": conf, "storage.conf": storage, "registries.conf": "unqualified-search-registries = []\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	podmanEnv = []string{
		"CONTAINERS_CONF=" + dir + "/containers.conf",
		"CONTAINERS_STORAGE_CONF=" + dir + "/storage.conf",
		"CONTAINERS_REGISTRIES_CONF=" + dir + "/registries.conf",
	}
	atExit(func() {
		runCmd(runOpts{env: podmanEnv, timeout: 2 * time.Minute}, "podman", "--runtime", runtimeBin, "rm", "-a", "-f", "-t", "0")
	})
	r := runCmd(runOpts{env: podmanEnv}, "podman", "import", "--change", `CMD ["/bin/sh"]`, imageTar, imageName)
	if r.code != 0 {
		return fmt.Errorf("podman import: %s", r)
	}
	return nil
})

// podman runs one podman command in mode. For run and create, hypervisor
// mode adds the isolation annotation; every other verb finds the mode in
// the runtime's state, as a podman user would rely on.
type podman struct {
	t       *testing.T
	mode    string
	runtime string
	global  []string // extra global options
}

func newPodman(t *testing.T, mode string) *podman {
	return &podman{t: t, mode: mode, runtime: runtimeBin}
}

func (p *podman) args(args []string) []string {
	argv := append([]string{"podman", "--runtime", p.runtime}, p.global...)
	if p.mode == modeHypervisor && p.runtime == runtimeBin && len(args) > 0 && (args[0] == "run" || args[0] == "create") {
		argv = append(argv, args[0], "--annotation", "io.runh.isolation=hypervisor")
		return append(argv, args[1:]...)
	}
	return append(argv, args...)
}

func (p *podman) run(args ...string) result {
	return runCmd(runOpts{env: podmanEnv, timeout: cmdTimeout(p.mode)}, p.args(args)...)
}

func (p *podman) runWith(o runOpts, args ...string) result {
	o.env, o.timeout = append(o.env, podmanEnv...), cmdTimeout(p.mode)
	return runCmd(o, p.args(args)...)
}

// ok runs a command that must succeed and returns its trimmed stdout.
func (p *podman) ok(args ...string) string {
	p.t.Helper()
	r := p.run(args...)
	if r.code != 0 || r.err != nil {
		p.t.Fatalf("podman %s: %s", strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.stdout)
}

// name returns a container name unique to this test and removes the
// container when the test ends.
func (p *podman) name() string {
	n := "pm-" + p.mode[:1] + "-" + strings.NewReplacer("/", "-", "_", "-").Replace(p.t.Name()[strings.LastIndex(p.t.Name(), "/")+1:])
	p.t.Cleanup(func() { p.run("rm", "-f", "-t", "0", n) })
	return n
}

// detached starts a long-running container and returns its name.
func (p *podman) detached(extra ...string) string {
	p.t.Helper()
	n := p.name()
	args := append([]string{"run", "-d", "--name", n}, extra...)
	p.ok(append(args, imageName, "sleep", "100000")...)
	return n
}

func (p *podman) status(n string) string {
	return p.ok("inspect", "--format", "{{.State.Status}}", n)
}

func TestPodman(t *testing.T) {
	hostKernel := strings.TrimSpace(runCmd(runOpts{}, "uname", "-r").stdout)
	runScenarios(t, "podman", podmanSetup, []scenario{
		{name: "run-rm-echo", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			r := p.run("run", "--rm", imageName, "sh", "-c", "echo hello; uname -r")
			lines := strings.Split(expectOK(t, r), "\n")
			if len(lines) != 2 || lines[0] != "hello" {
				t.Fatalf("want hello and a kernel release, got %s", r)
			}
			checkKernel(t, mode, hostKernel, lines[1])
		}},
		{name: "runh-vm-path", fn: func(t *testing.T, mode string) {
			if mode != modeHypervisor {
				t.Skip("the runh-vm path selects hypervisor isolation")
			}
			p := newPodman(t, mode)
			p.runtime = vmBin
			r := p.run("run", "--rm", imageName, "uname", "-r")
			checkKernel(t, mode, hostKernel, expectOK(t, r))
		}},
		{name: "rootfs", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			dir := filepath.Join(t.TempDir(), "rootfs")
			if out, err := exec.Command("cp", "-a", rootfsDir, dir).CombinedOutput(); err != nil {
				t.Fatalf("cp rootfs: %v: %s", err, out)
			}
			expectOut(t, p.run("run", "--rm", "--rootfs", dir, "echo", "hello"), 0, "hello")
		}},
		{name: "exit-code", fn: func(t *testing.T, mode string) {
			expectOut(t, newPodman(t, mode).run("run", "--rm", imageName, "sh", "-c", "exit 7"), 7, "")
		}},
		{name: "stdin", fn: func(t *testing.T, mode string) {
			r := newPodman(t, mode).runWith(runOpts{stdin: strings.NewReader("hello stdin\n")}, "run", "-i", "--rm", imageName, "cat")
			expectOut(t, r, 0, "hello stdin")
		}},
		{name: "create-start-attach", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			n := p.name()
			p.ok("create", "--name", n, imageName, "echo", "attached")
			expectOut(t, p.run("start", "--attach", n), 0, "attached")
		}},
		{name: "detached-ps-exec-stop-rm", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			n := p.detached()
			if got := p.ok("ps", "--filter", "name=^"+n+"$", "--format", "{{.Names}}"); got != n {
				t.Fatalf("ps: want %s, got %q", n, got)
			}
			if s := p.status(n); s != "running" {
				t.Fatalf("status %q", s)
			}
			expectOut(t, p.run("exec", n, "sh", "-c", "exit 5"), 5, "")
			expectOut(t, p.run("exec", "-u", "1000", n, "id", "-u"), 0, "1000")
			expectOut(t, p.run("exec", "-e", "FOO=bar", n, "sh", "-c", "echo $FOO"), 0, "bar")
			expectOut(t, p.run("exec", "-w", "/tmp", n, "pwd"), 0, "/tmp")
			p.ok("stop", "-t", "1", n)
			if s := p.status(n); s != "exited" {
				t.Fatalf("after stop: status %q", s)
			}
			p.ok("rm", n)
			if out := p.ok("ps", "-a", "-q", "--filter", "name=^"+n+"$"); out != "" {
				t.Fatalf("after rm: ps -a still lists %q", out)
			}
		}},
		{name: "tty-run-exec", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			expectPTS(t, runCmd(runOpts{env: podmanEnv, holdOpen: true, timeout: cmdTimeout(mode)},
				inTTY(p.args([]string{"run", "-it", "--rm", imageName, "tty"}))...))
			n := p.detached()
			expectPTS(t, runCmd(runOpts{env: podmanEnv, holdOpen: true, timeout: cmdTimeout(mode)},
				inTTY(p.args([]string{"exec", "-it", n, "tty"}))...))
		}},
		{name: "env-workdir", fn: func(t *testing.T, mode string) {
			r := newPodman(t, mode).run("run", "--rm", "-e", "GREETING=hi there", "-w", "/tmp", imageName, "sh", "-c", `echo "$GREETING"; pwd`)
			expectOut(t, r, 0, "hi there\n/tmp")
		}},
		{name: "hostname", fn: func(t *testing.T, mode string) {
			expectOut(t, newPodman(t, mode).run("run", "--rm", "--hostname", "box1", imageName, "hostname"), 0, "box1")
		}},
		{name: "read-only", fn: func(t *testing.T, mode string) {
			r := newPodman(t, mode).run("run", "--rm", "--read-only", imageName, "sh", "-c",
				"touch /x 2>/dev/null && echo rootfs-writable || echo rootfs-ro; touch /tmp/y && echo tmp-ok")
			expectOut(t, r, 0, "rootfs-ro\ntmp-ok")
		}},
		{name: "memory-update", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			n := p.detached("--memory", "64m")
			expectOut(t, p.run("exec", n, "sh", "-c", catMemLimit), 0, "67108864")
			p.ok("update", "--memory", "96m", n)
			expectOut(t, p.run("exec", n, "sh", "-c", catMemLimit), 0, "100663296")
		}},
		{name: "pids-limit", fn: func(t *testing.T, mode string) {
			expectOut(t, newPodman(t, mode).run("run", "--rm", "--pids-limit", "42", imageName, "sh", "-c", catPidsMax), 0, "42")
		}},
		{name: "user", fn: func(t *testing.T, mode string) {
			expectOut(t, newPodman(t, mode).run("run", "--rm", "--user", "1000", imageName, "id", "-u"), 0, "1000")
		}},
		{name: "cap-drop-add", fn: func(t *testing.T, mode string) {
			r := newPodman(t, mode).run("run", "--rm", "--cap-drop", "all", "--cap-add", "NET_ADMIN", imageName,
				"sh", "-c", "grep CapEff /proc/self/status | cut -f2")
			expectOut(t, r, 0, capMaskNetAdmin)
		}},
		{name: "privileged", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			expectOut(t, p.run("run", "--rm", "--privileged", imageName, "sh", "-c", privCheck), 0, "privileged")
			if r := p.run("run", "--rm", imageName, "sh", "-c", privCheck); r.code == 0 {
				t.Fatalf("unprivileged container could mount: %s", r)
			}
		}},
		{name: "volume-tmpfs", fn: func(t *testing.T, mode string) {
			vol := t.TempDir()
			r := newPodman(t, mode).run("run", "--rm", "-v", vol+":/data", "--tmpfs", "/scratch", imageName, "sh", "-c",
				`echo from-container > /data/f && awk '$2 == "/scratch" {print $3}' /proc/mounts`)
			expectOut(t, r, 0, "tmpfs")
			checkFile(t, filepath.Join(vol, "f"), "from-container")
		}},
		{name: "uidmap", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			// containers/storage briefly makes its vfs dir 0700 while another
			// container's layer is written, which an ID-mapped container's init
			// cannot traverse (runc and runh alike): use a storage of its own.
			dir, err := os.MkdirTemp(baseDir, "u") // podman: runroot <= 50 chars
			if err != nil {
				t.Fatal(err)
			}
			p.global = []string{"--root", dir + "/g", "--runroot", dir + "/r"}
			p.ok("import", imageTar, imageName)
			r := p.run("run", "--rm", "--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536", imageName,
				"sh", "-c", "cat /proc/self/uid_map; id -u")
			got := strings.Fields(expectOK(t, r))
			if strings.Join(got, " ") != "0 100000 65536 0" {
				t.Fatalf("uid_map and uid: got %q", got)
			}
		}},
		{name: "kill-usr1-trap", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			n := p.name()
			p.ok("run", "-d", "--name", n, imageName, "sh", "-c", usr1Trap)
			if !waitFor(cmdTimeout(mode), func() bool { return p.run("exec", n, "test", "-f", "/tmp/trap-ready").code == 0 }) {
				t.Fatal("trap never became ready")
			}
			p.ok("kill", "--signal", "USR1", n)
			expectOut(t, p.run("wait", n), 0, "3")
			if logs := p.ok("logs", n); !strings.Contains(logs, "caught") {
				t.Fatalf("logs: want caught, got %q", logs)
			}
		}},
		{name: "sigkill-137", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			n := p.detached()
			p.ok("kill", "--signal", "KILL", n)
			expectOut(t, p.run("wait", n), 0, "137")
		}},
		{name: "oom-137", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			n := p.name()
			p.ok("create", "--name", n, "--memory", "32m", "--memory-swap", "32m", imageName, "sh", "-c", memHog)
			// conmon 2.1.6 writes its "oom" marker into its cwd while podman
			// 4.3 looks for it in the bundle (StaticDir): start from there.
			dir := p.ok("inspect", "--format", "{{.StaticDir}}", n)
			r := p.runWith(runOpts{dir: dir}, "start", "--attach", n)
			if r.code != 137 {
				t.Fatalf("want exit 137, got %s", r)
			}
			if got := p.ok("inspect", "--format", "{{.State.OOMKilled}}", n); got != "true" {
				t.Fatalf("OOMKilled: %q", got)
			}
		}},
		{name: "pause-unpause", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			n := p.detached()
			p.ok("pause", n)
			if s := p.status(n); s != "paused" {
				t.Fatalf("after pause: %q", s)
			}
			p.ok("unpause", n)
			if s := p.status(n); s != "running" {
				t.Fatalf("after unpause: %q", s)
			}
			expectOut(t, p.run("exec", n, "echo", "alive"), 0, "alive")
		}},
		{name: "top", fn: func(t *testing.T, mode string) {
			// podman top lists the processes in the /proc of the mount
			// namespace of the runtime's PID: the container's in process
			// isolation, the VM's on the host (runh's shim and QEMU) in
			// hypervisor isolation; never the host's others.
			p := newPodman(t, mode)
			n := p.detached()
			out := p.ok("top", n)
			want := map[string]string{modeProcess: "sleep 100000", modeHypervisor: "qemu-system"}[mode]
			if rows := strings.Count(out, "\n"); !strings.Contains(out, want) || rows > 3 || strings.Contains(out, "conmon") {
				t.Fatalf("top: want %q and no host processes, got %q", want, out)
			}
			// ps(1) options psgo does not know run ps in the container:
			// its own processes in both modes.
			if out := p.ok("top", n, "-ef"); !strings.Contains(out, "sleep 100000") || strings.Contains(out, "conmon") {
				t.Fatalf("top -ef: want the container's sleep only, got %q", out)
			}
		}},
		{name: "restart", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			n := p.name()
			p.ok("run", "-d", "--name", n, imageName, "sh", "-c", "echo started; exec sleep 100000")
			p.ok("restart", "-t", "1", n)
			if s := p.status(n); s != "running" {
				t.Fatalf("after restart: %q", s)
			}
			expectOut(t, p.run("exec", n, "echo", "alive"), 0, "alive")
			if !waitFor(10*time.Second, func() bool { return strings.Count(p.run("logs", n).stdout, "started") == 2 }) {
				t.Fatalf("logs after restart: %q", p.run("logs", n).stdout)
			}
		}},
		{name: "rm-force-running", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			n := p.detached()
			id := p.ok("inspect", "--format", "{{.Id}}", n)
			p.ok("rm", "-f", "-t", "0", n)
			if out := p.ok("ps", "-a", "-q", "--filter", "name=^"+n+"$"); out != "" {
				t.Fatalf("after rm -f: ps -a lists %q", out)
			}
			if out := runCmd(runOpts{}, runtimeBin, "list", "-q").stdout; strings.Contains(out, id) {
				t.Fatalf("runtime still lists %s after rm -f", id)
			}
		}},
	})
}

// checkKernel tells the two modes apart: a VM-isolated container runs the
// guest kernel, a process-isolated one the host's.
func checkKernel(t *testing.T, mode, host, got string) {
	t.Helper()
	if mode == modeProcess && got != host {
		t.Fatalf("process isolation: kernel %q, host runs %q", got, host)
	}
	if mode == modeHypervisor && got == host {
		t.Fatalf("hypervisor isolation: container runs the host kernel %q", got)
	}
}

func checkFile(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) != want {
		t.Fatalf("%s: want %q, got %q (%v)", path, want, b, err)
	}
}
