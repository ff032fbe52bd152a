package engines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCritest runs critest, the CRI validation suite of cri-tools (the
// version of crictl; scripts/mkcritest.sh builds it with the ginkgo runner
// of its -parallel flag), against a containerd of its own with one
// io.containerd.runc.v2 handler per runtime, differing only in BinaryName:
// runc (Debian's, the reference), runh and runh-vm, one after the other;
// at the same time the same against containerd 2.x (ctrdFlavours), where
// runh-vm runs only with CRITEST_CONTAINERD2_VM=1 (more than 12 minutes of
// TCG) and the specs of fixed host ports (critestFixedPorts) are left to
// the first flavour; CRITEST_SERIAL=1 runs the flavours one after the
// other, every spec in each. The process handlers mostly wait on
// containerd, so 2.x's runs cost little beside 1.6's runh-vm.
// The suite's images are built offline (scripts/mkcriimages.sh) and served
// under their own names by Debian's docker-registry on loopback, to which
// the test's containerd sends every pull of their registries through
// hosts.toml files (critest's -registry-prefix would rename them, which its
// image tests do not expect).
//
// runh must pass every spec runc passes on the same containerd; runh-vm
// too, except the differences listed in critestVMExpected with their
// reasons. Specs that fail with every runtime here for reasons outside the
// runtime are in critestKnown; those that fail now and then with any
// runtime, for races in containerd, in critestFlaky. The summary counts passed/failed/skipped
// specs per handler: critest/<handler> for Debian's containerd,
// critest-ctrd2.N/<handler> for 2.x.
//
// Parameters (environment): CRITEST (the binary; default
// build/engines/bin/critest, ginkgo beside it), CRITEST_PARALLEL (ginkgo
// processes for runc and runh, default 2), CRITEST_VM_PARALLEL (for runh-vm,
// default 3: TCG is CPU-bound), CRITEST_VM_TIMEOUT (its time budget, a Go
// duration, default 12m; runc and runh get 8m, and take about a minute),
// CRITEST_FOCUS and CRITEST_SKIP (ginkgo regexps, to iterate on a few
// specs), CRITEST_REF (the reference runc; "none" leaves it out),
// CRITEST_CONTAINERD2_VM=1 (runh-vm on containerd 2.x too). Each handler's
// log and ginkgo JSON report are critest/<handler>.{log,json} in the
// suite's temp dir, critest/ctrd2.N/<handler>.{log,json} for containerd 2.x
// (ENGINES_KEEP=1 keeps it).
func TestCritest(t *testing.T) {
	serial := os.Getenv("CRITEST_SERIAL") != ""
	for i, fl := range ctrdFlavours() {
		t.Run(fl.name, func(t *testing.T) {
			if !serial {
				t.Parallel()
			}
			env, err := critestSetup(fl)
			if err != nil {
				t.Skip("critest: " + err.Error())
			}
			if i > 0 && !serial {
				env.notRun(critestFixedPorts)
			}
			// Specs whose result the reference runc gave in this run; without it,
			// critestKnown stands for the reference's failures.
			var ref map[string]string
			for _, h := range env.handlers {
				t.Run(h.name, func(t *testing.T) {
					if h.skip != "" {
						t.Skip(h.skip)
					}
					res, err := env.run(t, h)
					if res != nil {
						k := "critest" + fl.suffix() + "/" + h.name
						resMu.Lock()
						results[k] = &[3]int{res.count("passed"), res.count("failed"), res.count("skipped")}
						resMu.Unlock()
					}
					if err != nil {
						t.Fatal(err)
					}
					if len(res.incomplete) > 0 {
						t.Errorf("critest %s did not run to the end (%s): the specs it did not reach count as skipped (CRITEST_VM_TIMEOUT, CRITEST_VM_PARALLEL)",
							h.name, strings.Join(res.incomplete, "; "))
					}
					if h.name == "runc" {
						ref = res.state
					}
					res.check(t, fl, h, ref)
				})
			}
		})
	}
}

// critestExpect names specs (a substring of the full spec text, which must
// match exactly one spec of the suite) with the reason for their failure;
// ctrd, if set, is the one containerd flavour (ctrdFlavour.name prefix) it
// applies to.
type critestExpect struct{ spec, reason, ctrd string }

// critestKnown fail with every runtime here (runc included): containerd 1.6
// or the offline images, not the runtime.
var critestKnown = []critestExpect{
	{"public image with digest should be pulled and removed",
		"the suite pulls test-image-digest by the digest of its original manifest (sha256:9700f9a2...), which an image built offline cannot have", ""},
	{"Idempotence StopPodSandbox should not return an error if not found",
		"containerd 1.6 answers StopPodSandbox of an unknown ID with NotFound, where the CRI asks for success (as containerd 1.7 and later do)", "containerd1.6"},
	{"Idempotence StopContainer should not return an error if not found",
		"containerd 1.6 answers StopContainer of an unknown ID with NotFound, where the CRI asks for success (as containerd 1.7 and later do)", "containerd1.6"},
}

// critestFlaky fail now and then whatever the runtime, for races in
// containerd itself: their failures are logged, not held against runh.
var critestFlaky = []critestExpect{
	{"Image Identifier Consistency should return the same image identifier across all APIs",
		"a containerd 2.x race: the spec removes a container whose process exits as soon as it starts (the image's sh, no stdin). " +
			"RemoveContainer finds it still running while the exit handler is deleting its task, gets NotFound for the task, " +
			"returns from the stop without waiting for the exit (internal/cri/server/container_stop.go) and fails with " +
			"\"container is still running, to stop first\". The window spans the task's deletion, the runtime's delete included", "containerd2"},
	{"should terminate with exitCode 137 and reason OOMKilled",
		"a race in containerd's OOM watch on cgroup v1 (pkg/oom/v1: the shim's epoller drops the kernel's OOM notification " +
			"when the container's cgroup is gone by the time it reads it): on a loaded host the exit's delete wins, " +
			"the TaskOOM event is never sent and the reason is \"Error\"; seen with runh (process) with 8 VMs' load beside, " +
			"passing on the same host when quiet, as runc does", ""},
	{"should support listing stats for three created containers when filter is nil",
		"a containerd 1.6 race (containerd/containerd#10796): ListContainerStats lists the containers, then looks each up again " +
			"for its CPU rate and fails the whole list with NotFound for one that a parallel spec removed in between " +
			"(\"failed to get usage nano cores ... not found\"); seen with runh-vm, whose slower specs widen the window", "containerd1.6"},
	{"NRI plugin synchronization should receive information about all containers without the race condition during initialization",
		"\"second NRI test stub failed to become ready\": containerd 2.x's NRI synchronisation of a second plugin, before any container runs; seen with runc", "containerd2"},
}

// critestVMExpected are the specs runh-vm fails where runc passes: what
// hypervisor isolation cannot do, or what runh does not do yet.
var critestVMExpected = []critestExpect{
	{"runtime should support HostPID",
		"hostPID: the pod's processes would share the host's PID namespace, which lives in another kernel than the VM's; runh refuses it with hypervisor isolation", ""},
	{"runtime should support HostIpc is true",
		"hostIPC: SysV IPC objects and POSIX message queues of the host's kernel cannot be shared into a VM; runh refuses it with hypervisor isolation", ""},
	{"runtime should support HostNetwork is true",
		"hostNetwork: a VM cannot share the host's network stack; runh refuses it with hypervisor isolation", ""},
	{"runtime should support portforward in host network",
		"hostNetwork: a VM cannot share the host's network stack; runh refuses it with hypervisor isolation", ""},
	{"mount with 'rshared' should support propagation from host to container and vice versa",
		"Bidirectional (rshared) propagation would carry the guest's mounts back to the host, which a 9p share cannot: the container's mounts stay in the guest (rslave, HostToContainer, passes)", ""},
}

// critestHandler is one runtime handler of the test's containerd.
type critestHandler struct {
	name     string        // handler name, "critest/<name>" in the summary
	bin      string        // BinaryName
	parallel int           // ginkgo processes
	timeout  time.Duration // ginkgo's suite timeout
	vm       bool
	skip     string // reason to leave it out
	notRun   string // ginkgo -skip regexp of specs not started
}

// critestVMNotStarted are specs that containerd 1.6 cannot run whatever the
// runtime (the reference skips them), which with runh-vm would boot a pod's
// VM before skipping: they are not started with runh-vm on 1.6.
const critestVMNotStarted = `\[Feature:ImageVolume\]`

// critestFixedPorts are the specs that listen on fixed host ports
// (12000 to 12003, pkg/validate/consts*.go), which two suites running at
// once would both take: they run on the first containerd flavour only,
// unless CRITEST_SERIAL is set. What they check is containerd's port
// mapping and forwarding into the pod's network namespace, which the
// runtime only joins.
const critestFixedPorts = `runtime should support (port mapping with host port and container port|portforward)`

// notRun leaves the specs matching re out of every handler's run.
func (e *critestEnv) notRun(re string) {
	for i := range e.handlers {
		if h := &e.handlers[i]; h.notRun == "" {
			h.notRun = re
		} else {
			h.notRun += "|" + re
		}
	}
}

// critestShared is what every containerd flavour's critest run shares.
type critestShared struct {
	dir      string // baseDir/critest: the registry, hosts.toml files, the pods' tmp
	critest  string
	handlers []critestHandler
}

// critestEnv is the critest run of one containerd flavour.
type critestEnv struct {
	shared   *critestShared
	fl       ctrdFlavour
	dir      string // its containerd's config, root, state, socket and CNI; the reports
	runcRoot string // the handlers' --root (the runc shim adds the namespace)
	sock     string // containerd's socket
	nriSock  string // containerd's NRI socket, for the suite's NRI specs ("" none)
	ctrdPid  int    // containerd (critest joins its IPC namespace)
	handlers []critestHandler
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// critestSetup starts the flavour's containerd for critest, after what
// the flavours share (critestCommon) is ready.
func critestSetup(fl ctrdFlavour) (*critestEnv, error) {
	if fl.skip != "" {
		return nil, errors.New(fl.skip)
	}
	c, err := critestCommon()
	if err != nil {
		return nil, err
	}
	// The handlers' state lives in a root of the test's own, not the
	// shim's default /run/containerd/runc: another engines run ending
	// meanwhile removes /run/containerd if it made it. Short, as runh-vm
	// keeps sockets there.
	e := &critestEnv{shared: c, fl: fl, dir: c.dir, runcRoot: fmt.Sprintf("/run/runh-critest-%d", os.Getpid())}
	e.handlers = append([]critestHandler(nil), c.handlers...)
	vm := &e.handlers[2]
	if fl.key == "" {
		vm.notRun = critestVMNotStarted
	} else {
		e.dir = filepath.Join(c.dir, fl.key)
		e.runcRoot = fmt.Sprintf("/run/runh-critest2-%d", os.Getpid())
		// containerd 2.x has NRI on: the suite's NRI specs plug into it.
		e.nriSock = filepath.Join(e.dir, "nri.sock")
		if vm.skip == "" && os.Getenv("CRITEST_CONTAINERD2_VM") == "" {
			vm.skip = "runh-vm on " + fl.name + " runs with CRITEST_CONTAINERD2_VM=1 only: more than 12 minutes of TCG here"
		}
	}
	if err := os.MkdirAll(filepath.Join(e.dir, "cni"), 0o755); err != nil {
		return nil, err
	}
	if _, err := criCNI(filepath.Join(e.dir, "cni"), filepath.Join(e.dir, "ipam")); err != nil {
		return nil, err
	}
	return e, e.startContainerd()
}

// critestCommon checks the tools, builds the suite's images and serves
// them from a registry on loopback, once for every flavour.
var critestCommon = sync.OnceValues(func() (*critestShared, error) {
	e := &critestShared{dir: filepath.Join(baseDir, "critest")}
	e.critest = os.Getenv("CRITEST")
	if e.critest == "" {
		e.critest = filepath.Join(repoRoot, "build/engines/bin/critest")
	}
	if !fileExists(e.critest) {
		return nil, fmt.Errorf("%s not built (make engines-deps builds it with scripts/mkcritest.sh)", e.critest)
	}
	for _, b := range []string{"docker-registry", "skopeo", "umoci", "nsenter", "ipcmk"} {
		if _, err := exec.LookPath(b); err != nil {
			return nil, fmt.Errorf("%s not installed (make engines-deps: apt-get install --no-install-recommends docker-registry skopeo umoci util-linux)", b)
		}
	}
	if err := netHostSetup(); err != nil {
		return nil, err
	}

	// The runtime handlers, in the order they run.
	procPar, vmPar := envInt("CRITEST_PARALLEL", 2), envInt("CRITEST_VM_PARALLEL", 3)
	if _, err := exec.LookPath("ginkgo"); err != nil && !fileExists(filepath.Join(filepath.Dir(e.critest), "ginkgo")) {
		fmt.Println("engines: no ginkgo beside critest (scripts/mkcritest.sh builds it): critest runs without -parallel")
		procPar, vmPar = 1, 1
	}
	refBin := os.Getenv("CRITEST_REF")
	if refBin == "" {
		refBin, _ = exec.LookPath("runc")
	}
	has := func(mode string) bool {
		for _, m := range testModes {
			if m == mode {
				return true
			}
		}
		return false
	}
	runc := critestHandler{name: "runc", bin: refBin, parallel: procPar, timeout: 8 * time.Minute}
	switch {
	case isRef:
		runc.bin = runtimeBin
	case refBin == "none":
		runc.skip = "CRITEST_REF=none"
	case refBin == "" || !fileExists(refBin):
		runc.skip = "no runc to compare with (apt-get install runc, or CRITEST_REF=path)"
	}
	if runc.skip != "" {
		runc.bin = "runc" // the handler must name a binary even when skipped
	}
	runh := critestHandler{name: "runh", bin: runtimeBin, parallel: procPar, timeout: 8 * time.Minute}
	vmTimeout := 12 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("CRITEST_VM_TIMEOUT")); err == nil && d > 0 {
		vmTimeout = d
	}
	runhVM := critestHandler{name: "runh-vm", bin: vmBin, parallel: vmPar, timeout: vmTimeout, vm: true}
	switch {
	case isRef:
		runh.skip, runhVM.skip = "reference run", "reference run"
		runh.bin, runhVM.bin = runtimeBin, runtimeBin
	case !has(modeProcess):
		runh.skip = "RUNH_TEST_MODES has no process"
	}
	if !isRef {
		if !has(modeHypervisor) {
			runhVM.skip = "RUNH_TEST_MODES has no hypervisor"
		} else if ok, reason := hypervisorUsable(); !ok {
			runhVM.skip = "hypervisor isolation not usable: " + reason
		}
		if runhVM.bin == "" {
			runhVM.bin = runtimeBin // the handler must name a binary even when skipped
		}
	}
	e.handlers = []critestHandler{runc, runh, runhVM}

	for _, d := range []string{"tmp", "certs.d", "registry/storage"} {
		if err := os.MkdirAll(filepath.Join(e.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	// Pods and containers of critest keep their logs and host paths here.
	if err := os.Chmod(filepath.Join(e.dir, "tmp"), 0o1777); err != nil {
		return nil, err
	}
	images, err := critestImages()
	if err != nil {
		return nil, err
	}
	port, err := e.startRegistry()
	if err != nil {
		return nil, err
	}
	hosts, err := e.push(images, port)
	if err != nil {
		return nil, err
	}
	if err := e.hostsToml(hosts, port); err != nil {
		return nil, err
	}
	return e, nil
})

// critestImage is one image the suite pulls: its tag in the layout that
// scripts/mkcriimages.sh wrote, and the reference the suite names.
type critestImage struct{ layout, tag, ref string }

// critestImages builds the suite's images (or finds them in the cache).
func critestImages() ([]critestImage, error) {
	r := runCmd(runOpts{timeout: 15 * time.Minute}, filepath.Join(repoRoot, "scripts/mkcriimages.sh"))
	if r.code != 0 || r.err != nil {
		return nil, fmt.Errorf("scripts/mkcriimages.sh: %s", r)
	}
	dir := strings.TrimSpace(r.stdout)
	b, err := os.ReadFile(filepath.Join(dir, "images.txt"))
	if err != nil {
		return nil, err
	}
	var out []critestImage
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 {
			out = append(out, critestImage{layout: filepath.Join(dir, "oci"), tag: f[0], ref: f[1]})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no images in %s/images.txt", dir)
	}
	return out, nil
}

// startRegistry starts Debian's docker-registry (distribution 2.8) on a free
// loopback port with a private config and storage, stopped by PID at exit.
func (e *critestShared) startRegistry() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: 127.0.0.1:%d
`, filepath.Join(e.dir, "registry/storage"), port)
	confPath := filepath.Join(e.dir, "registry/config.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return 0, err
	}
	logf, err := os.Create(filepath.Join(e.dir, "registry/registry.log"))
	if err != nil {
		return 0, err
	}
	cmd := exec.Command("docker-registry", "serve", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return 0, fmt.Errorf("start docker-registry: %w", err)
	}
	atExit(func() { stopProcess(cmd, 10*time.Second); logf.Close() })
	url := fmt.Sprintf("http://127.0.0.1:%d/v2/", port)
	if !waitFor(30*time.Second, func() bool {
		r, err := http.Get(url)
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == http.StatusOK
	}) {
		return 0, fmt.Errorf("docker-registry does not answer on %s: %s", url, tailFile(logf.Name(), 5))
	}
	return port, nil
}

// stopProcess sends SIGTERM to cmd's process and SIGKILL after d.
func stopProcess(cmd *exec.Cmd, d time.Duration) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
	}
}

// push copies every image into the registry under its reference's path and
// returns the registry host names the references use.
func (e *critestShared) push(images []critestImage, port int) ([]string, error) {
	policy := filepath.Join(e.dir, "registry/policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var hosts []string
	for _, im := range images {
		host, path, ok := strings.Cut(im.ref, "/")
		if !ok {
			return nil, fmt.Errorf("image reference %q names no registry", im.ref)
		}
		if !seen[host] {
			seen[host] = true
			hosts = append(hosts, host)
		}
		r := runCmd(runOpts{timeout: 2 * time.Minute, env: []string{"TMPDIR=" + filepath.Join(e.dir, "tmp")}},
			"skopeo", "copy", "--quiet", "--policy", policy, "--dest-tls-verify=false",
			"oci:"+im.layout+":"+im.tag, fmt.Sprintf("docker://127.0.0.1:%d/%s", port, path))
		if r.code != 0 || r.err != nil {
			return nil, fmt.Errorf("skopeo copy %s: %s", im.ref, r)
		}
	}
	return hosts, nil
}

// hostsToml sends pulls from each registry host to the local registry, and
// nowhere else: no pull of the suite's ever leaves the machine.
func (e *critestShared) hostsToml(hosts []string, port int) error {
	for _, h := range hosts {
		d := filepath.Join(e.dir, "certs.d", h)
		conf := fmt.Sprintf("# %s is served by the test's registry over plain HTTP.\nserver = \"http://127.0.0.1:%d\"\n\n[host.\"http://127.0.0.1:%d\"]\n  capabilities = [\"pull\", \"resolve\"]\n", h, port, port)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(conf), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// startContainerd starts the flavour's containerd for critest: its own
// root, state, socket, CNI and registry configuration, one handler per
// runtime. It runs in an IPC namespace of its own, which critest joins: the
// HostIpc specs create a shared memory segment "on the host" (ipcmk) and
// leave it there.
func (e *critestEnv) startContainerd() error {
	conf := ctrdConf{dir: e.dir, sandboxImage: "registry.k8s.io/pause:3.6", hostsDir: filepath.Join(e.shared.dir, "certs.d"), defaultRuntime: "runc"}
	for _, h := range e.handlers {
		conf.runtimes = append(conf.runtimes, ctrdRuntime{name: h.name, bin: h.bin, root: e.runcRoot})
	}
	d, err := startContainerd(e.fl, e.dir, e.fl.config(conf), syscall.CLONE_NEWIPC, []string{"k8s.io"}, e.runcRoot)
	if err != nil {
		return err
	}
	e.sock, e.ctrdPid = d.sock, d.cmd.Process.Pid
	return nil
}

// critestResult is one critest run: each spec's state (passed, failed,
// skipped) and, for failures, the first lines of the message.
type critestResult struct {
	state   map[string]string
	message map[string]string
	// incomplete says why the suite stopped early ("Suite Timeout
	// Elapsed"): the specs it did not reach count as skipped.
	incomplete []string
}

func (r *critestResult) count(state string) int {
	n := 0
	for _, s := range r.state {
		if s == state {
			n++
		}
	}
	return n
}

func (r *critestResult) names(state string) []string {
	var out []string
	for n, s := range r.state {
		if s == state {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// run runs critest against handler h and reads its ginkgo JSON report.
func (e *critestEnv) run(t *testing.T, h critestHandler) (*critestResult, error) {
	report := filepath.Join(e.dir, h.name+".json")
	logPath := filepath.Join(e.dir, h.name+".log")
	ep := "unix://" + e.sock
	args := []string{"nsenter", "--ipc=/proc/" + strconv.Itoa(e.ctrdPid) + "/ns/ipc", "--", e.shared.critest,
		"-runtime-endpoint", ep, "-image-endpoint", ep, "-runtime-handler", h.name,
		"-ginkgo.json-report", report, "-ginkgo.no-color",
		"-ginkgo.timeout", h.timeout.String(),
		"-parallel", strconv.Itoa(h.parallel)}
	if e.nriSock != "" {
		args = append(args, "-nri-socket", e.nriSock)
	}
	if f := os.Getenv("CRITEST_FOCUS"); f != "" {
		args = append(args, "-ginkgo.focus", f)
	}
	for _, s := range []string{os.Getenv("CRITEST_SKIP"), h.notRun} {
		if s != "" {
			args = append(args, "-ginkgo.skip", s)
		}
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// The log fills as the specs run (ginkgo -v): tail it to follow a run.
	// ginkgo stops the specs at its -timeout and still writes the report;
	// the context is the backstop.
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout+3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	tmp := filepath.Join(e.shared.dir, "tmp")
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(e.shared.critest)+":"+os.Getenv("PATH"), "TMPDIR="+tmp)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err = cmd.Run()
	t.Logf("critest -runtime-handler %s -parallel %d on %s: %v in %s (log %s)", h.name, h.parallel, e.fl.name, exitText(err), time.Since(start).Round(time.Second), logPath)
	res, err := readGinkgoReport(report)
	if err != nil {
		return nil, fmt.Errorf("critest %s: %v: %s", h.name, err, tailFile(logPath, 15))
	}
	if len(res.state) == 0 {
		return res, fmt.Errorf("critest %s ran no spec: %s", h.name, tailFile(logPath, 15))
	}
	return res, nil
}

// exitText says how a command ended: "exit 0", "exit 1", or the error.
func exitText(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit 0"
	case errors.As(err, &ee) && ee.Exited():
		return fmt.Sprintf("exit %d", ee.ExitCode())
	}
	return err.Error()
}

// readGinkgoReport reads the It specs of a ginkgo JSON report.
func readGinkgoReport(path string) (*critestResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var reports []struct {
		SpecialSuiteFailureReasons []string
		SpecReports                []struct {
			ContainerHierarchyTexts []string
			LeafNodeType            string
			LeafNodeText            string
			State                   string
			Failure                 struct{ Message string }
		}
	}
	if err := json.Unmarshal(b, &reports); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res := &critestResult{state: map[string]string{}, message: map[string]string{}}
	for _, rep := range reports {
		res.incomplete = append(res.incomplete, rep.SpecialSuiteFailureReasons...)
		for _, s := range rep.SpecReports {
			if s.LeafNodeType != "It" {
				continue
			}
			name := strings.TrimPrefix(strings.Join(append(s.ContainerHierarchyTexts, s.LeafNodeText), " "), "[k8s.io] ")
			st := s.State
			switch st {
			case "passed", "skipped":
			case "pending":
				st = "skipped"
			default: // failed, timedout, panicked, interrupted, aborted
				st = "failed"
				res.message[name] = s.State + ": " + failureText(s.Failure.Message)
			}
			res.state[name] = st
		}
	}
	return res, nil
}

// failureText shortens a gomega failure message: its first line and, for
// a CRI error, the gRPC error's line ("rpc error: code = ... desc = ...").
func failureText(msg string) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	out := strings.TrimSpace(lines[0])
	for _, l := range lines[1:] {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "rpc error:") {
			return out + ": " + l
		}
	}
	if len(lines) > 1 {
		out += " | " + strings.TrimSpace(lines[1])
	}
	return out
}

// match returns the specs of res whose name contains the expectation's text.
func (r *critestResult) match(x critestExpect) []string {
	var out []string
	for n := range r.state {
		if strings.Contains(n, x.spec) {
			out = append(out, n)
		}
	}
	return out
}

// check compares handler h's results on flavour fl with the reference's
// (ref, nil when runc did not run) and the expected failures.
func (r *critestResult) check(t *testing.T, fl ctrdFlavour, h critestHandler, ref map[string]string) {
	t.Helper()
	expected := map[string]string{} // spec -> reason
	add := func(list []critestExpect, what string) {
		for _, x := range list {
			if x.ctrd != "" && !strings.HasPrefix(fl.name, x.ctrd) {
				continue
			}
			m := r.match(x)
			if len(m) > 1 {
				t.Errorf("%s entry %q matches %d specs: %s", what, x.spec, len(m), strings.Join(m, "; "))
			}
			for _, n := range m {
				expected[n] = x.reason
				if r.state[n] == "passed" && what != "critestFlaky" {
					t.Logf("%s: %q passes now with %s: drop it from %s", h.name, n, h.name, what)
				}
			}
		}
	}
	add(critestKnown, "critestKnown")
	add(critestFlaky, "critestFlaky")
	if h.vm {
		add(critestVMExpected, "critestVMExpected")
	}
	for _, n := range r.names("failed") {
		reason, ok := expected[n]
		switch {
		case h.name == "runc" && !ok:
			t.Logf("reference runc fails %q: %s", n, r.message[n])
		case ok:
			t.Logf("expected or racy failure %q (%s): %s", n, reason, r.message[n])
		case ref != nil && ref[n] == "failed":
			t.Logf("fails with runc too: %q: %s", n, r.message[n])
		default:
			t.Errorf("%s fails %q, which runc passes: %s", h.name, n, r.message[n])
		}
	}
}
