// Package engines drives runh through real container engines (podman,
// containerd's ctr, Docker, the Kubernetes CRI via crictl), in both isolation
// modes. Each engine runs from a private configuration, storage and socket
// under one temp dir, so the host's own engines (if any) are never touched.
//
// Parameters (environment):
//
//	RUNH_BINARY         runtime under test (default ../../bin/runh)
//	RUNH_TEST_MODES     isolation modes to run (default process,hypervisor)
//	ENGINE_RUNTIME_REF  run the same scenarios against this runtime instead
//	                    (e.g. /usr/sbin/runc) as the reference; process mode only
//	ENGINES_VM_SLOTS    hypervisor scenarios run at once (default 2)
//	ENGINES_KEEP        keep the temp dir (engine logs) after the run
//	ENGINES_TRACE       engines call the runtime through a wrapper that adds
//	                    --debug and logs every call's argv and exit status to
//	                    <temp dir>/runtime-calls.log (implies ENGINES_KEEP)
//	CONTAINERD2_DIR     containerd 2.x's containerd, ctr and shim, which the
//	                    CRI scenarios and critest also run against (default
//	                    ../../build/engines/containerd2; "none" leaves it out)
package engines

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
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

const (
	modeProcess    = "process"
	modeHypervisor = "hypervisor"
)

// Suite-wide settings, fixed in TestMain.
var (
	runtimeBin string // runtime under test (absolute)
	vmBin      string // its runh-vm path ("" for the reference runtime)
	isRef      bool   // runtimeBin is the reference runtime, not runh
	testModes  []string
	baseDir    string // everything the suite writes lives under here
	rootfsDir  string // busybox rootfs from scripts/mkrootfs.sh
	imageTar   string // the same rootfs as a tarball (podman/docker import)
	repoRoot   string
	vmSlots    chan struct{} // TCG boots are CPU-bound: few VM scenarios at once

	// stoppers run in reverse order when the suite ends (daemons, storage).
	stopMu   sync.Mutex
	stoppers []func()
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(mainWithCleanup(m))
}

func mainWithCleanup(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("engines: tests need root; skipping")
		return 0
	}
	wd, _ := os.Getwd()
	repoRoot = filepath.Clean(filepath.Join(wd, "../.."))
	bin := os.Getenv("RUNH_BINARY")
	if bin == "" {
		bin = filepath.Join(repoRoot, "bin/runh")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	runtimeBin = abs
	if ref := os.Getenv("ENGINE_RUNTIME_REF"); ref != "" {
		runtimeBin, isRef = ref, true
	} else if p := filepath.Join(filepath.Dir(abs), "runh-vm"); fileExists(p) {
		vmBin = p
	}
	if !fileExists(runtimeBin) {
		fmt.Fprintf(os.Stderr, "engines: runtime %s not found (set RUNH_BINARY or run make bin/runh)\n", runtimeBin)
		return 1
	}
	modes := os.Getenv("RUNH_TEST_MODES")
	if modes == "" {
		modes = modeProcess + "," + modeHypervisor
	}
	for _, md := range strings.Split(modes, ",") {
		md = strings.TrimSpace(md)
		if md != modeProcess && md != modeHypervisor {
			fmt.Fprintf(os.Stderr, "RUNH_TEST_MODES: unknown mode %q\n", md)
			return 1
		}
		testModes = append(testModes, md)
	}
	slots := 2
	if n, err := strconv.Atoi(os.Getenv("ENGINES_VM_SLOTS")); err == nil && n > 0 {
		slots = n
	}
	vmSlots = make(chan struct{}, slots)
	// The scenarios mostly wait on engines and daemons, so run many at once.
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "8")
	}

	baseDir, err = os.MkdirTemp("", "runh-engines-")
	if err == nil {
		// Containers in user namespaces (--uidmap) must reach their rootfs.
		err = os.Chmod(baseDir, 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Engines write a few host paths and parent cgroups whatever their
	// configuration says: remove those this run created, once every daemon
	// and whatever a stuck call left behind has gone.
	var created []string
	for _, p := range append(hostPaths, engineCgroups()...) {
		if !fileExists(p) {
			created = append(created, p)
		}
	}
	// dockerd turns forwarding on even without iptables; the network
	// scenarios add bridges and iptables chains (network_test.go).
	endHostNet := hostNetBegin()
	defer func() {
		stopMu.Lock()
		for i := len(stoppers) - 1; i >= 0; i-- {
			stoppers[i]()
		}
		stopMu.Unlock()
		killLeftovers(baseDir)
		unmountUnder(baseDir)
		// Host paths this run created may be another engines run's now
		// (containerd's /run/containerd holds its runc state and shim
		// sockets): only the last run to end removes them.
		if !endHostNet() {
			created = nil
		}
		for _, p := range created {
			if strings.HasPrefix(p, "/sys/fs/cgroup/") {
				removeCgroupTree(p)
			} else {
				os.RemoveAll(p)
			}
		}
		if os.Getenv("ENGINES_KEEP") != "" || os.Getenv("ENGINES_TRACE") != "" {
			fmt.Println("engines: kept", baseDir)
		} else {
			os.RemoveAll(baseDir)
		}
	}()
	if os.Getenv("ENGINES_TRACE") != "" {
		if err := traceRuntime(); err != nil {
			fmt.Fprintln(os.Stderr, "engines:", err)
			return 1
		}
	}
	if err := prepareImages(); err != nil {
		fmt.Fprintln(os.Stderr, "engines:", err)
		return 1
	}
	fmt.Printf("engines: runtime %s (reference=%v), modes %v, work dir %s\n", runtimeBin, isRef, testModes, baseDir)
	start := time.Now()
	code := m.Run()
	printSummary(time.Since(start))
	return code
}

// hostPaths are written outside the suite's temp dir by the engines alone:
// podman's exit and lock dirs and image copy cache, containerd's fifo and
// shim socket dirs (also the containerd that dockerd starts), dockerd's
// plugin dir and trust key; runc's default root, which podman uses with the
// reference runtime.
var hostPaths = []string{"/run/libpod", "/run/containers", "/var/lib/containers", "/run/containerd", "/opt/containerd",
	"/run/docker", "/etc/docker/key.json", "/etc/cni/net.d/cni.lock", "/run/runc"}

// traceRuntime points the engines at wrapper scripts that log each runtime
// call and add --debug (which goes where the engine's --log says). The
// runh-vm wrapper runs the real runh-vm path, so argv[0] still selects the mode.
func traceRuntime() error {
	dir := filepath.Join(baseDir, "trace")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(baseDir, "runtime-calls.log")
	wrap := func(name, real string) (string, error) {
		p := filepath.Join(dir, name)
		script := fmt.Sprintf("#!/bin/sh\necho \"$$ $(date +%%T.%%N) %[1]s $*\" >>%[2]s\n%[3]s --debug \"$@\"\nrc=$?\necho \"$$ exit $rc\" >>%[2]s\nexit $rc\n",
			name, logPath, real)
		return p, os.WriteFile(p, []byte(script), 0o755)
	}
	var err error
	if runtimeBin, err = wrap(filepath.Base(runtimeBin), runtimeBin); err != nil {
		return err
	}
	if vmBin != "" {
		vmBin, err = wrap("runh-vm", vmBin)
	}
	fmt.Println("engines: runtime calls traced to", logPath)
	return err
}

// engineCgroups are the parent cgroups the engines create under cgroupfs:
// ctr's /default, dockerd's /docker, the CRI's /k8s.io, podman's /libpod_parent.
func engineCgroups() []string {
	ctrls, _ := filepath.Glob("/sys/fs/cgroup/*")
	var out []string
	for _, c := range ctrls {
		for _, n := range []string{"default", "docker", "k8s.io", "libpod_parent"} {
			out = append(out, filepath.Join(c, n))
		}
	}
	return out
}

// removeCgroupTree removes a cgroup and its children, deepest first; a
// cgroup that still has processes stays (rmdir fails).
func removeCgroupTree(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(dirs[i])
	}
}

func atExit(f func()) {
	stopMu.Lock()
	stoppers = append(stoppers, f)
	stopMu.Unlock()
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// killLeftovers kills what a stuck runtime call left behind after the
// daemons stopped: every process whose command line names dir (a
// containerd-shim's -address, a runh shim's state dir) and its descendants,
// such as the QEMU of a VM-isolated container.
func killLeftovers(dir string) {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	var roots []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			// The fields after the parenthesised command: state, ppid, ...
			if i := bytes.LastIndexByte(stat, ')'); i > 0 {
				if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
					parent[pid], _ = strconv.Atoi(f[1])
				}
			}
		}
		if cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && bytes.Contains(cmdline, []byte(dir)) {
			roots = append(roots, pid)
		}
	}
	doomed := map[int]bool{}
	for _, r := range roots {
		doomed[r] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if doomed[pp] && !doomed[pid] {
				doomed[pid], changed = true, true
			}
		}
	}
	for pid := range doomed {
		fmt.Printf("engines: killing leftover process %d\n", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(doomed) > 0 {
		time.Sleep(500 * time.Millisecond) // let mounts held by them go
	}
}

// unmountUnder lazily unmounts anything an engine left mounted below dir,
// deepest first, so that removing dir never walks into a live mount.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mps = append(mps, f[4])
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}

// ---- results summary ----

var (
	resMu   sync.Mutex
	results = map[string]*[3]int{} // "engine/mode" -> pass, fail, skip
	notes   = map[string]bool{}    // lines printed below the counts
)

// summaryNote adds a line to the summary: why a whole part was left out,
// which go test without -v would not show.
func summaryNote(s string) {
	resMu.Lock()
	notes[s] = true
	resMu.Unlock()
}

// record counts a scenario's outcome under engine/mode when it ends.
func record(t *testing.T, engine, mode string) {
	t.Cleanup(func() {
		resMu.Lock()
		defer resMu.Unlock()
		k := engine + "/" + mode
		if results[k] == nil {
			results[k] = &[3]int{}
		}
		switch {
		case t.Skipped():
			results[k][2]++
		case t.Failed():
			results[k][1]++
		default:
			results[k][0]++
		}
	})
}

func printSummary(d time.Duration) {
	resMu.Lock()
	defer resMu.Unlock()
	var keys []string
	for k := range results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "engines summary (%s, %s):\n", filepath.Base(runtimeBin), d.Round(time.Second))
	for _, k := range keys {
		r := results[k]
		fmt.Fprintf(&b, "  %-26s pass %2d  fail %2d  skip %2d\n", k, r[0], r[1], r[2])
	}
	var ns []string
	for n := range notes {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	for _, n := range ns {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	fmt.Print(b.String())
	// go test shows a passing package's output only with -v: make prints
	// the summary from this file.
	if f := os.Getenv("ENGINES_SUMMARY"); f != "" {
		os.WriteFile(f, []byte(b.String()), 0o644)
	}
}

// ---- modes ----

// hypervisorUsable asks the runtime once whether hypervisor isolation works
// here (`check --format json` reporting "hypervisor": {"usable": true}).
var hypervisorUsable = sync.OnceValues(func() (bool, string) {
	if isRef {
		return false, "reference runtime " + runtimeBin + " has no hypervisor isolation"
	}
	if vmBin == "" {
		return false, "no runh-vm next to " + runtimeBin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, runtimeBin, "check", "--format", "json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return false, fmt.Sprintf("%s check --format json: %v: %s", runtimeBin, err, firstLine(stderr.String()+stdout.String()))
	}
	var report map[string]json.RawMessage
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		return false, fmt.Sprintf("check --format json: bad JSON: %v", err)
	}
	var hv struct {
		Usable bool   `json:"usable"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(report["hypervisor"], &hv); err != nil {
		_ = json.Unmarshal(report["hypervisor"], &hv.Usable)
	}
	if !hv.Usable {
		return false, "runh check: hypervisor not usable: " + hv.Reason
	}
	return true, ""
})

// scenario is one engine scenario; the same body runs in every mode.
type scenario struct {
	name string
	// processOnly marks scenarios the issue asks for in process isolation only.
	processOnly bool
	fn          func(t *testing.T, mode string)
}

// runScenarios runs every scenario in each mode (modes one after another,
// scenarios of a mode in parallel). setup returns a reason to skip the whole
// engine (package missing, daemon failed to start), checked once per mode.
func runScenarios(t *testing.T, engine string, setup func() error, list []scenario) {
	for _, mode := range testModes {
		t.Run(mode, func(t *testing.T) {
			skip := ""
			if err := setup(); err != nil {
				skip = err.Error()
			} else if mode == modeHypervisor {
				if ok, reason := hypervisorUsable(); !ok {
					skip = "hypervisor isolation not usable: " + reason
				}
			}
			for _, sc := range list {
				t.Run(sc.name, func(t *testing.T) {
					record(t, engine, mode)
					if skip != "" {
						t.Skip(skip)
					}
					if sc.processOnly && mode != modeProcess {
						t.Skip("process isolation only")
					}
					t.Parallel()
					if mode == modeHypervisor {
						vmSlots <- struct{}{}
						defer func() { <-vmSlots }()
					}
					sc.fn(t, mode)
				})
			}
		})
	}
}

// ---- running commands ----

type result struct {
	stdout, stderr string
	code           int // exit status; -1 if it did not exit normally
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("exit %d (%v)\nstdout: %s\nstderr: %s", r.code, r.err, strings.TrimSpace(r.stdout), strings.TrimSpace(r.stderr))
}

type runOpts struct {
	stdin    io.Reader
	holdOpen bool // give the child a stdin pipe kept open until it exits
	env      []string
	timeout  time.Duration
	dir      string // working directory; baseDir unless given
}

func cmdTimeout(mode string) time.Duration {
	if mode == modeHypervisor {
		return 2 * time.Minute // a VM container takes 5-30 s here under TCG
	}
	return 90 * time.Second
}

// runCmd runs argv in its own process group, which is killed as a whole on
// timeout: ctr forwards SIGTERM to the task, and script(1) starts sessions.
func runCmd(o runOpts, argv ...string) result {
	if o.timeout == 0 {
		o.timeout = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), o.env...)
	// Engines drop files into their cwd (conmon's "oom"): keep them out of the tree.
	cmd.Dir = o.dir
	if cmd.Dir == "" {
		cmd.Dir = baseDir
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var hold *os.File
	switch {
	case o.holdOpen:
		r, w, err := os.Pipe()
		if err != nil {
			return result{code: -1, err: err}
		}
		defer r.Close()
		cmd.Stdin, hold = r, w
	case o.stdin != nil:
		cmd.Stdin = o.stdin
	}
	err := cmd.Run()
	if hold != nil {
		hold.Close()
	}
	res := result{stdout: stdout.String(), stderr: stderr.String(), err: err}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		res.code, res.err = ee.ExitCode(), nil
	default:
		res.code = -1
		if ctx.Err() != nil {
			res.err = fmt.Errorf("timed out after %s: %w", o.timeout, err)
		}
	}
	return res
}

// inTTY runs argv under script(1), which gives it a real pty as its
// controlling terminal, as a person's shell would.
func inTTY(argv []string) []string {
	return []string{"script", "-qec", shellJoin(argv), "/dev/null"}
}

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// grepLines returns the last n lines of s containing sub, for failure reports.
func grepLines(s, sub string, n int) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.Join(out, "\n")
}

// expectOut checks exit status and that trimmed stdout equals want.
func expectOut(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code || strings.TrimSpace(strings.ReplaceAll(r.stdout, "\r", "")) != want {
		t.Fatalf("want exit %d and stdout %q, got %s", code, want, r)
	}
}

func expectOK(t *testing.T, r result) string {
	t.Helper()
	if r.code != 0 || r.err != nil {
		t.Fatalf("command failed: %s", r)
	}
	return strings.TrimSpace(strings.ReplaceAll(r.stdout, "\r", ""))
}

// waitFor polls cond every 200ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Shell snippets shared by the engines' scenarios. Cgroup files are read
// from inside the container so that the check is the same in both modes:
// cgroup v1 on this host (the container's own directories bound in), cgroup
// v2 inside the utility VM, where without a cgroup namespace the container
// sees the whole hierarchy and finds its own cgroup in /proc/self/cgroup.
const (
	cgroupV2Dir = `/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)`
	catMemLimit = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat " + cgroupV2Dir + "/memory.max"
	catPidsMax  = "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat " + cgroupV2Dir + "/pids.max"
	// usr1Trap exits 3 on SIGUSR1; the marker file says the trap is set.
	usr1Trap = "trap 'echo caught; exit 3' USR1; touch /tmp/trap-ready; while :; do sleep 0.1; done"
	// memHog grows without bound: tail keeps the newline-less "line" in memory.
	memHog = "tail /dev/zero"
	// privCheck succeeds only with CAP_SYS_ADMIN and an unrestricted mount.
	privCheck = "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo privileged"
	// capMaskNetAdmin is CapEff with only CAP_NET_ADMIN (bit 12).
	capMaskNetAdmin = "0000000000001000"
)
