package engines

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A private dockerd (it starts its own containerd) with runh registered as
// the runtimes "runh" and "runh-vm", as docs/engines.md tells operators.
var (
	dockerDir string
	dockerEnv []string
	// The Debian client: another docker in PATH may speak a newer API.
	dockerCLI = "/usr/bin/docker"
)

var dockerSetup = sync.OnceValue(func() error {
	dockerDir = filepath.Join(baseDir, "docker")
	env, err := startDockerd(dockerDir, "--iptables=false", "--ip6tables=false", "--bridge=none")
	dockerEnv = env
	return err
})

// startDockerd starts a private dockerd under dir with the given network
// flags, imports the image and returns the client environment for it.
func startDockerd(dir string, netFlags ...string) ([]string, error) {
	if _, err := exec.LookPath("dockerd"); err != nil || !fileExists(dockerCLI) {
		return nil, fmt.Errorf("dockerd or %s not installed (apt-get install --no-install-recommends docker.io)", dockerCLI)
	}
	sock := filepath.Join(dir, "docker.sock")
	for _, d := range []string{"data", "exec", "client"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	runtimes := map[string]any{"runh": map[string]any{"path": runtimeBin}}
	if !isRef {
		runtimes["runh-vm"] = map[string]any{"path": runtimeBin, "runtimeArgs": []string{"--isolation", "hypervisor"}}
	}
	conf, _ := json.MarshalIndent(map[string]any{"runtimes": runtimes}, "", "  ")
	confPath := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(confPath, conf, 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "dockerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"--config-file", confPath,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"), "-H", "unix://" + sock, "--debug"}
	cmd := exec.Command("dockerd", append(args, netFlags...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: a test binary killed by -timeout must not leave the daemon behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	env := []string{"DOCKER_HOST=unix://" + sock, "DOCKER_CONFIG=" + filepath.Join(dir, "client")}
	cli := func(o runOpts, args ...string) result {
		o.env = append(o.env, env...)
		return runCmd(o, append([]string{dockerCLI}, args...)...)
	}
	atExit(func() { stopDockerd(cmd, cli); logf.Close() })
	if !waitFor(60*time.Second, func() bool { return cli(runOpts{}, "version").code == 0 }) {
		return nil, fmt.Errorf("dockerd did not answer on %s: %s", sock, tailFile(logPath, 5))
	}
	if r := cli(runOpts{timeout: 2 * time.Minute}, "import", "--change", `CMD ["/bin/sh"]`, imageTar, imageName); r.code != 0 {
		return nil, fmt.Errorf("docker import: %s", r)
	}
	return env, nil
}

func stopDockerd(cmd *exec.Cmd, cli func(runOpts, ...string) result) {
	if ids := strings.Fields(cli(runOpts{}, "ps", "-aq").stdout); len(ids) > 0 {
		cli(runOpts{timeout: 2 * time.Minute}, append([]string{"rm", "-f"}, ids...)...)
	}
	// A network's bridge and iptables rules outlive the daemon otherwise.
	cli(runOpts{}, "network", "prune", "-f")
	_ = cmd.Process.Signal(syscall.SIGTERM) // dockerd stops its containerd itself
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func docker(o runOpts, args ...string) result {
	o.env = append(o.env, dockerEnv...)
	return runCmd(o, append([]string{dockerCLI}, args...)...)
}

type dockerT struct {
	t       *testing.T
	mode    string
	runtime string
	dir     string   // the daemon's directory (its log)
	env     []string // the client's environment for that daemon
}

func newDocker(t *testing.T, mode string) *dockerT {
	d := &dockerT{t: t, mode: mode, runtime: "runh", dir: dockerDir, env: dockerEnv}
	if mode == modeHypervisor {
		d.runtime = "runh-vm"
	}
	return d
}

func (d *dockerT) do(args ...string) result {
	return runCmd(runOpts{env: d.env, timeout: cmdTimeout(d.mode)}, append([]string{dockerCLI}, args...)...)
}

func (d *dockerT) ok(args ...string) string {
	d.t.Helper()
	r := d.do(args...)
	if r.code != 0 || r.err != nil {
		d.t.Fatalf("docker %s: %s\ndockerd log:\n%s", strings.Join(args, " "), r,
			grepLines(readFile(filepath.Join(d.dir, "dockerd.log")), "level=error", 5))
	}
	return strings.TrimSpace(r.stdout)
}

// runArgs starts `docker run` with the mode's runtime and no network.
func (d *dockerT) runArgs(flags ...string) []string {
	return append([]string{"run", "--runtime", d.runtime, "--network", "none"}, flags...)
}

func (d *dockerT) name() string {
	n := "dk-" + d.mode[:1] + "-" + d.t.Name()[strings.LastIndex(d.t.Name(), "/")+1:]
	d.t.Cleanup(func() { d.do("rm", "-f", n) })
	return n
}

func (d *dockerT) detached(args ...string) string {
	d.t.Helper()
	n := d.name()
	if len(args) == 0 {
		args = []string{"sleep", "100000"}
	}
	d.ok(append(d.runArgs("-d", "--name", n, imageName), args...)...)
	return n
}

func (d *dockerT) status(n string) string { return d.ok("inspect", "--format", "{{.State.Status}}", n) }

func TestDocker(t *testing.T) {
	hostKernel := strings.TrimSpace(runCmd(runOpts{}, "uname", "-r").stdout)
	runScenarios(t, "docker", dockerSetup, []scenario{
		{name: "run-rm-echo", fn: func(t *testing.T, mode string) {
			d := newDocker(t, mode)
			lines := strings.Split(expectOK(t, d.do(d.runArgs("--rm", imageName, "sh", "-c", "echo hello; uname -r")...)), "\n")
			if len(lines) != 2 || lines[0] != "hello" {
				t.Fatalf("want hello and a kernel release, got %q", lines)
			}
			checkKernel(t, mode, hostKernel, lines[1])
		}},
		{name: "exit-code", fn: func(t *testing.T, mode string) {
			d := newDocker(t, mode)
			expectOut(t, d.do(d.runArgs("--rm", imageName, "sh", "-c", "exit 7")...), 7, "")
		}},
		{name: "detached-exec-stop-rm", fn: func(t *testing.T, mode string) {
			d := newDocker(t, mode)
			n := d.detached()
			expectOut(t, d.do("exec", n, "sh", "-c", "echo in-exec; exit 5"), 5, "in-exec")
			expectOut(t, d.do("exec", "-u", "1000", "-w", "/tmp", n, "sh", "-c", "id -u; pwd"), 0, "1000\n/tmp")
			d.ok("stop", "-t", "1", n)
			if s := d.status(n); s != "exited" {
				t.Fatalf("after stop: %q", s)
			}
			d.ok("rm", n)
		}},
		{name: "tty", fn: func(t *testing.T, mode string) {
			d := newDocker(t, mode)
			argv := append([]string{dockerCLI}, d.runArgs("-it", "--rm", imageName, "tty")...)
			expectPTS(t, runCmd(runOpts{env: dockerEnv, holdOpen: true, timeout: cmdTimeout(mode)}, inTTY(argv)...))
		}},
		{name: "kill-usr1-trap", fn: func(t *testing.T, mode string) {
			d := newDocker(t, mode)
			n := d.detached("sh", "-c", usr1Trap)
			if !waitFor(cmdTimeout(mode), func() bool { return d.do("exec", n, "test", "-f", "/tmp/trap-ready").code == 0 }) {
				t.Fatal("trap never became ready")
			}
			d.ok("kill", "-s", "USR1", n)
			expectOut(t, d.do("wait", n), 0, "3")
		}},
		{name: "pause-unpause", fn: func(t *testing.T, mode string) {
			d := newDocker(t, mode)
			n := d.detached()
			d.ok("pause", n)
			if s := d.status(n); s != "paused" {
				t.Fatalf("after pause: %q", s)
			}
			d.ok("unpause", n)
			if s := d.status(n); s != "running" {
				t.Fatalf("after unpause: %q", s)
			}
			expectOut(t, d.do("exec", n, "echo", "alive"), 0, "alive")
		}},
		{name: "restart", fn: func(t *testing.T, mode string) {
			// Docker restarts the container in the same bundle: a new VM
			// under the same ID in hypervisor isolation.
			d := newDocker(t, mode)
			n := d.detached("sh", "-c", "echo started; exec sleep 100000")
			d.ok("restart", "-t", "1", n)
			if s := d.status(n); s != "running" {
				t.Fatalf("after restart: %q", s)
			}
			expectOut(t, d.do("exec", n, "echo", "alive"), 0, "alive")
			if !waitFor(10*time.Second, func() bool { return strings.Count(d.do("logs", n).stdout, "started") == 2 }) {
				t.Fatalf("logs after restart: %q", d.do("logs", n).stdout)
			}
		}},
		{name: "memory-cgroup", fn: func(t *testing.T, mode string) {
			d := newDocker(t, mode)
			expectOut(t, d.do(d.runArgs("--rm", "--memory", "64m", imageName, "sh", "-c", catMemLimit)...), 0, "67108864")
		}},
		{name: "read-only", fn: func(t *testing.T, mode string) {
			d := newDocker(t, mode)
			r := d.do(d.runArgs("--rm", "--read-only", imageName, "sh", "-c", "touch /x 2>/dev/null && echo rootfs-writable || echo rootfs-ro")...)
			expectOut(t, r, 0, "rootfs-ro")
		}},
	})
}
