package engines

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// findCrictl finds crictl: $CRICTL, build/engines/bin/crictl (make
// engines-deps builds it from sigs.k8s.io/cri-tools), or $PATH.
var findCrictl = sync.OnceValues(func() (string, error) {
	bin := os.Getenv("CRICTL")
	if bin == "" {
		bin = filepath.Join(repoRoot, "build/engines/bin/crictl")
	}
	if fileExists(bin) {
		return bin, nil
	}
	p, err := exec.LookPath("crictl")
	if err != nil {
		return "", fmt.Errorf("crictl not found at %s or in PATH (make engines-deps builds it)", bin)
	}
	return p, nil
})

// criEnv is a containerd whose CRI the crictl scenarios (and TestApps)
// drive: Debian's, shared with ctr, or a containerd 2.x of its own, each
// with its own CNI network.
type criEnv struct {
	fl   ctrdFlavour
	dir  string // its containerd's directory: config.toml, containerd.log, cni/
	sock string
	root string // the handlers' runc root, to which the shim adds the namespace
	net  subnet // the pods' CNI network
	once func() error
}

// setup starts the containerd (once) and says why the scenarios must skip.
func (e *criEnv) setup() error { return e.once() }

func newCRIEnv(fl ctrdFlavour) *criEnv {
	e := &criEnv{fl: fl, root: "/run/containerd/runc"}
	if fl.key != "" {
		// A root of its own: short (runh-vm keeps sockets there), and not
		// under /run/containerd, which another engines run ending
		// meanwhile removes if it made it.
		e.root = fmt.Sprintf("/run/runh-cri2-%d", os.Getpid())
	}
	e.once = sync.OnceValue(func() error {
		if fl.skip != "" {
			return errors.New(fl.skip)
		}
		if err := netHostSetup(); err != nil {
			return err
		}
		if fl.key == "" {
			if err := containerdSetup(); err != nil {
				return err
			}
			e.dir, e.sock = ctrdDir, ctrdSock
		} else {
			e.dir = filepath.Join(baseDir, fl.key)
			e.sock = filepath.Join(e.dir, "containerd.sock")
			if err := os.MkdirAll(filepath.Join(e.dir, "cni"), 0o755); err != nil {
				return err
			}
			d, err := startContainerd(fl, e.dir, fl.config(criConf(e.dir, e.root)), 0, []string{"k8s.io"}, e.root)
			if err != nil {
				return err
			}
			if err := d.importImages("k8s.io"); err != nil {
				return err
			}
		}
		if _, err := findCrictl(); err != nil {
			return err
		}
		// The CRI plugin learns about images imported behind its back on a
		// periodic sync: wait until it lists the sandbox image.
		if !waitFor(30*time.Second, func() bool {
			return strings.Contains(runCmd(runOpts{}, e.crictlArgs("images", "-q", pauseName)...).stdout, "sha256:")
		}) {
			return fmt.Errorf("CRI does not list %s: %s", pauseName, runCmd(runOpts{}, e.crictlArgs("images")...))
		}
		var err error
		e.net, err = criCNI(filepath.Join(e.dir, "cni"), filepath.Join(e.dir, "ipam"))
		return err
	})
	return e
}

func (e *criEnv) crictlArgs(args ...string) []string {
	bin, _ := findCrictl()
	ep := "unix://" + e.sock
	return append([]string{bin, "--config", os.DevNull, "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "3m"}, args...)
}

// leftovers lists what the runtime left of the pod's sandbox and containers.
func (e *criEnv) leftovers(ids ...string) []string {
	return runtimeLeftoversIn(filepath.Join(e.root, "k8s.io"), ids...)
}

var (
	debCRI   = sync.OnceValue(func() *criEnv { return newCRIEnv(debFlavour()) })
	ctrd2CRI = sync.OnceValue(func() *criEnv { return newCRIEnv(ctrd2Flavour()) })
)

func criEnvOf(fl ctrdFlavour) *criEnv {
	if fl.key == "" {
		return debCRI()
	}
	return ctrd2CRI()
}

// criNetSetup, crictlArgs and runtimeLeftovers are Debian's containerd's
// (TestApps runs there).
func criNetSetup() error                      { return debCRI().setup() }
func crictlArgs(args ...string) []string      { return debCRI().crictlArgs(args...) }
func runtimeLeftovers(ids ...string) []string { return debCRI().leftovers(ids...) }

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// criCNI writes the CNI network of a CRI's pods into its conf_dir
// (containerd watches it): a bridge on a free test subnet, with hairpin
// and portmap for hostPorts, IPAM state in ipamDir; the bridge is removed
// at exit.
func criCNI(confDir, ipamDir string) (subnet, error) {
	var s subnet
	for range 155 {
		n := 100 + (netBase+int(netSeq.Add(1)))%155
		s = subnet{n: n, v4: fmt.Sprintf("10.89.%d.0/24", n), v6: fmt.Sprintf("fd89:89:%d::/64", n), bridge: fmt.Sprintf("rhnt%d", n)}
		if !s.inUse() {
			break
		}
	}
	if s.inUse() {
		return s, errors.New("no free test subnet in 10.89.100-254.0/24")
	}
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       s.bridge,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": s.bridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type": "host-local", "dataDir": ipamDir,
					"ranges": [][]map[string]string{{{"subnet": s.v4}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	b, _ := json.Marshal(conf)
	atExit(func() {
		if fileExists("/sys/class/net/" + s.bridge) {
			runCmd(runOpts{timeout: 30 * time.Second}, "ip", "link", "del", s.bridge)
		}
	})
	return s, os.WriteFile(filepath.Join(confDir, "10-"+s.bridge+".conflist"), b, 0o644)
}

// criT drives one scenario's pods through crictl.
type criT struct {
	t    *testing.T
	mode string
	dir  string
	env  *criEnv // nil: Debian's containerd
}

func (c *criT) cri() *criEnv {
	if c.env == nil {
		return debCRI()
	}
	return c.env
}

func (c *criT) crictl(args ...string) result {
	return runCmd(runOpts{timeout: cmdTimeout(c.mode)}, c.cri().crictlArgs(args...)...)
}

func (c *criT) ok(args ...string) string {
	c.t.Helper()
	r := c.crictl(args...)
	if r.code != 0 {
		c.t.Fatalf("crictl %s: %s\ncontainerd log:\n%s", strings.Join(args, " "), r,
			grepLines(readFile(filepath.Join(c.cri().dir, "containerd.log")), "level=error", 5))
	}
	return strings.TrimSpace(r.stdout)
}

// handler is the RuntimeClass handler of the mode (docs/engines.md).
func (c *criT) handler() string {
	if c.mode == modeHypervisor {
		return "runh-vm"
	}
	return "runh"
}

// pod starts a pod on the CRI network; sharedPID shares its process
// namespace; hostPort, if not 0, publishes the containers' port 8080.
func (c *criT) pod(name string, sharedPID bool, hostPort int) (id, config string) {
	c.t.Helper()
	pid := 1 // CONTAINER
	if sharedPID {
		pid = 0 // POD
	}
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "runh-engines", "uid": name + "-" + c.mode, "attempt": 0},
		"log_directory": c.dir,
		"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"pid": pid}}},
	}
	if hostPort != 0 {
		cfg["port_mappings"] = []map[string]any{{"protocol": 0, "container_port": 8080, "host_port": hostPort}}
	}
	config = writeJSON(c.t, filepath.Join(c.dir, name+".json"), cfg)
	id = c.ok("runp", "--runtime", c.handler(), config)
	c.t.Cleanup(func() { c.crictl("stopp", id); c.crictl("rmp", id) })
	return id, config
}

// container creates and starts a container of pod running script; memory,
// if not 0, is its limit in bytes.
func (c *criT) container(pod, podConfig, name, script string, memory int64) string {
	c.t.Helper()
	linux := map[string]any{}
	if memory != 0 {
		linux["resources"] = map[string]any{"memory_limit_in_bytes": memory}
	}
	return c.containerOf(pod, podConfig, map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": imageName},
		"command":  []string{"/bin/sh", "-c", script},
		"linux":    linux,
	})
}

// containerOf creates and starts a container of pod from its CRI
// ContainerConfig (metadata.name names its config and log files).
func (c *criT) containerOf(pod, podConfig string, config map[string]any) string {
	c.t.Helper()
	name := config["metadata"].(map[string]any)["name"].(string)
	config["log_path"] = name + ".log"
	cfg := writeJSON(c.t, filepath.Join(c.dir, "container-"+name+".json"), config)
	id := c.ok("create", "--no-pull", pod, cfg, podConfig)
	c.ok("start", id)
	return id
}

// stop stops a container within a second. containerd 1.6 can fail it with
// "ttrpc: closed" when its SIGKILL meets the exit handler that is shutting
// the container's shim down (the process ended after the second, before
// containerd saw it: a VM container on a busy machine); containerd 1.7
// and later retry that themselves, so it is retried once here.
func (c *criT) stop(id string) {
	c.t.Helper()
	r := c.crictl("stop", "--timeout", "1", id)
	if r.code == 0 {
		return
	}
	if !strings.Contains(r.stderr, "ttrpc: closed") {
		c.t.Fatalf("crictl stop %s: %s", id, r)
	}
	c.t.Logf("crictl stop %s: %s; again", id, firstLine(r.stderr))
	c.ok("stop", "--timeout", "1", id)
}

func (c *criT) state(id string) string {
	return c.ok("inspect", "-o", "go-template", "--template", "{{.status.state}}", id)
}

// exitCode waits for the container to exit and returns its exit code.
func (c *criT) exitCode(id string) string {
	c.t.Helper()
	if !waitFor(cmdTimeout(c.mode), func() bool { return c.state(id) == "CONTAINER_EXITED" }) {
		c.t.Fatalf("container %s: state %s, want CONTAINER_EXITED", id, c.state(id))
	}
	return c.ok("inspect", "-o", "go-template", "--template", "{{.status.exitCode}} {{.status.reason}}", id)
}

// runtimeLeftoversIn lists what the runtime left on the host of the pod's
// sandbox and containers (ids) with state under root: state directories,
// processes (a shim, QEMU or member process names its state directory),
// mounts and cgroups.
func runtimeLeftoversIn(root string, ids ...string) []string {
	var left []string
	for _, id := range ids {
		dir := filepath.Join(root, id)
		if fileExists(dir) {
			left = append(left, "state directory "+dir)
		}
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			cl := readFile("/proc/" + e.Name() + "/cmdline")
			if e.Name() != "self" && strings.Contains(cl, dir) {
				left = append(left, "process "+e.Name()+": "+strings.ReplaceAll(cl, "\x00", " "))
			}
		}
		for _, l := range strings.Split(readFile("/proc/self/mountinfo"), "\n") {
			if strings.Contains(l, id) && !strings.Contains(l, "/io.containerd.") {
				left = append(left, "mount "+l)
			}
		}
		for _, hier := range []string{"memory", "pids", "cpu,cpuacct", "unified"} {
			out := runCmd(runOpts{}, "find", "/sys/fs/cgroup/"+hier, "-maxdepth", "4", "-type", "d", "-name", id).stdout
			if s := strings.TrimSpace(out); s != "" {
				left = append(left, "cgroup "+s)
			}
		}
	}
	return left
}

// TestCRI runs Kubernetes pods through containerd's CRI and crictl, with
// the handler of each mode: runh-vm puts a whole pod in one VM. Each
// containerd flavour (Debian's 1.6, a 2.x) runs the same scenarios at once,
// its summary rows "crictl<suffix>/<mode>".
func TestCRI(t *testing.T) {
	for _, fl := range ctrdFlavours() {
		e := criEnvOf(fl)
		t.Run(fl.name, func(t *testing.T) {
			t.Parallel()
			runScenarios(t, "crictl"+fl.suffix(), e.setup, criScenarios(e))
		})
	}
}

func criScenarios(e *criEnv) []scenario {
	newCRI := func(t *testing.T, mode string) *criT { return &criT{t: t, mode: mode, dir: t.TempDir(), env: e} }
	return []scenario{
		{name: "pod", fn: func(t *testing.T, mode string) {
			c := newCRI(t, mode)
			net := e.net
			hostPort := freePort(t)
			pod, podCfg := c.pod("web", false, hostPort)
			web := c.container(pod, podCfg, "web", "echo hello-from-web; "+httpdScript, 0)
			cli := c.container(pod, podCfg, "cli", "echo hello-from-cli; exec sleep 100000", 0)
			// The second container reaches the first over the pod's loopback.
			get := `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 127.0.0.1 8080`
			eventually(t, cmdTimeout(mode), "cli -> localhost:8080", func() error {
				r := c.crictl("exec", "-s", cli, "sh", "-c", get)
				if !strings.Contains(r.stdout, "web-reply") {
					return fmt.Errorf("%s", r)
				}
				return nil
			})
			// One /dev/shm for the pod (containerd's tmpfs; a guest
			// tmpfs in the pod's VM), as its IPC namespace is one.
			c.ok("exec", "-s", web, "sh", "-c", "echo pod-shm > /dev/shm/runh-test")
			if got := c.ok("exec", "-s", cli, "cat", "/dev/shm/runh-test"); got != "pod-shm" {
				t.Fatalf("cli reads %q in /dev/shm, where web wrote pod-shm", got)
			}
			// Both in the same kernel: the guest's with runh-vm.
			host := strings.TrimSpace(runCmd(runOpts{}, "uname", "-r").stdout)
			k1, k2 := c.ok("exec", "-s", web, "uname", "-r"), c.ok("exec", "-s", cli, "uname", "-r")
			if k1 != k2 || (mode == modeHypervisor) == (k1 == host) {
				t.Fatalf("kernels: web %q, cli %q, host %q (mode %s)", k1, k2, host, mode)
			}
			for id, want := range map[string]string{web: "hello-from-web", cli: "hello-from-cli"} {
				if !waitFor(20*time.Second, func() bool { return strings.Contains(c.crictl("logs", id).stdout, want) }) {
					t.Fatalf("logs of %s: %s", id, c.crictl("logs", id))
				}
			}
			// The host reaches the pod by its IP and through the hostPort.
			ip := c.ok("inspectp", "-o", "go-template", "--template", "{{.status.network.ip}}", pod)
			if !net.contains(ip) {
				t.Fatalf("pod IP %q not in %s", ip, net.v4)
			}
			for _, addr := range []string{ip + ":8080", fmt.Sprintf("%s:%d", net.gateway(), hostPort)} {
				eventually(t, cmdTimeout(mode), "host -> "+addr, func() error {
					body, err := httpGet("http://" + addr + "/")
					if err == nil && strings.TrimSpace(body) != "web-reply" {
						err = fmt.Errorf("got %q", body)
					}
					return err
				})
			}
			// Removing one container leaves the other running.
			c.stop(cli)
			c.ok("rm", cli)
			if st := c.state(web); st != "CONTAINER_RUNNING" {
				t.Fatalf("web after cli was removed: %s", st)
			}
			c.ok("exec", "-s", web, "true")
			c.ok("stopp", pod)
			c.ok("rmp", pod)
			if left := e.leftovers(pod, web, cli); len(left) > 0 {
				t.Fatalf("left after rmp:\n%s", strings.Join(left, "\n"))
			}
		}},
		{name: "shared-pid", fn: func(t *testing.T, mode string) {
			c := newCRI(t, mode)
			pod, podCfg := c.pod("pidns", true, 0)
			c.container(pod, podCfg, "a", "exec sleep 424242", 0)
			b := c.container(pod, podCfg, "b", "exec sleep 100000", 0)
			eventually(t, cmdTimeout(mode), "b sees a's process", func() error {
				r := c.crictl("exec", "-s", b, "ps", "-o", "args")
				if !strings.Contains(r.stdout, "sleep 424242") {
					return fmt.Errorf("%s", r)
				}
				return nil
			})
		}},
		{name: "oom", fn: func(t *testing.T, mode string) {
			c := newCRI(t, mode)
			pod, podCfg := c.pod("oom", false, 0)
			other := c.container(pod, podCfg, "other", "exec sleep 100000", 0)
			hog := c.container(pod, podCfg, "hog", "sleep 1; exec dd if=/dev/zero of=/dev/null bs=256M count=1", 32<<20)
			if got := c.exitCode(hog); got != "137 OOMKilled" {
				t.Fatalf("hog at a 32 MiB limit: exit and reason %q, want 137 OOMKilled", got)
			}
			if st := c.state(other); st != "CONTAINER_RUNNING" {
				t.Fatalf("the other container after the OOM kill: %s", st)
			}
			c.ok("exec", "-s", other, "true")
		}},
		{name: "vm-killed", fn: func(t *testing.T, mode string) {
			if mode != modeHypervisor {
				t.Skip("kills the pod's VM: hypervisor isolation only")
			}
			c := newCRI(t, mode)
			pod, podCfg := c.pod("crash", false, 0)
			a := c.container(pod, podCfg, "a", "exec sleep 100000", 0)
			b := c.container(pod, podCfg, "b", "exec sleep 100000", 0)
			shimPid := runtimeStatePidRoot(t, filepath.Join(e.root, "k8s.io"), pod)
			if err := syscall.Kill(qemuOf(t, shimPid), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{a, b} {
				c.exitCode(id)
			}
			c.ok("stopp", pod)
			c.ok("rmp", pod)
			if left := e.leftovers(pod, a, b); len(left) > 0 {
				t.Fatalf("left after rmp:\n%s", strings.Join(left, "\n"))
			}
		}},
	}
}

// httpGet fetches url and returns its body.
func httpGet(url string) (string, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	r, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	return string(b), err
}

// runtimeStatePidRoot is the PID runh reports for id under root.
func runtimeStatePidRoot(t *testing.T, root, id string) int {
	t.Helper()
	r := runCmd(runOpts{timeout: 30 * time.Second}, runtimeBin, "--root", root, "state", id)
	var st struct {
		Pid int `json:"pid"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.Pid <= 0 {
		t.Fatalf("%s state %s: %s", runtimeBin, id, r)
	}
	return st.Pid
}

// qemuOf returns the QEMU process of the shim pid.
func qemuOf(t *testing.T, shim int) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		if ppid, _, _, ok := procStat(pid); ok && ppid == shim && strings.Contains(readFile("/proc/"+e.Name()+"/cmdline"), "qemu") {
			return pid
		}
	}
	t.Fatalf("no QEMU child of shim %d", shim)
	return 0
}
