package integration

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

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Suite-wide settings, fixed in TestMain.
var (
	runtimeBin string   // absolute path of the runtime under test
	testModes  []string // isolation modes every test body runs in
	rootfsDir  string   // shared read-only busybox rootfs
	isRunc     bool     // the binary is runc: tolerate its known differences
	vmSlots    chan struct{}
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(mainWithCleanup(m))
}

func mainWithCleanup(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("integration tests need root; skipping")
		return 0
	}
	bin := os.Getenv("RUNH_BINARY")
	if bin == "" {
		bin = "../bin/runh"
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if _, err := os.Stat(abs); err != nil {
		fmt.Fprintf(os.Stderr, "runtime binary: %v (set RUNH_BINARY or run make)\n", err)
		return 1
	}
	runtimeBin = abs
	if out, err := exec.Command(abs, "--version").Output(); err == nil {
		isRunc = strings.HasPrefix(string(out), "runc ")
	}

	modes := os.Getenv("RUNH_TEST_MODES")
	if modes == "" {
		modes = ModeProcess + "," + ModeHypervisor
	}
	for _, m := range strings.Split(modes, ",") {
		m = strings.TrimSpace(m)
		if m != ModeProcess && m != ModeHypervisor {
			fmt.Fprintf(os.Stderr, "RUNH_TEST_MODES: unknown mode %q\n", m)
			return 1
		}
		testModes = append(testModes, m)
	}

	// Most of a test's time is spent waiting on the runtime, not on CPU, so
	// run more tests at once than -parallel's GOMAXPROCS default; VM-backed
	// tests are bounded separately because TCG boots are CPU-bound.
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "8")
	}
	n, _ := strconv.Atoi(os.Getenv("RUNH_TEST_VM_PARALLEL"))
	if n <= 0 {
		n = 2
	}
	vmSlots = make(chan struct{}, n)

	dir, err := os.MkdirTemp("", "runh-rootfs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	rootfsDir = filepath.Join(dir, "rootfs")
	script, _ := filepath.Abs("../scripts/mkrootfs.sh")
	if err := BuildRootfs(script, rootfsDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// hypervisorProbe runs `check --format json` once and reports whether the
// runtime says hypervisor isolation is usable on this host.
var hypervisorProbe = sync.OnceValues(func() (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, runtimeBin, "check", "--format", "json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A non-zero exit may still come with a JSON report giving the reason.
	if err := cmd.Run(); err != nil && !json.Valid(stdout.Bytes()) {
		return false, fmt.Sprintf("%s check --format json: %v: %s", runtimeBin, err, firstLine(stderr.String()+stdout.String()))
	}
	// Accept {"hypervisor": {"usable": true, ...}}, {"hypervisor": true}
	// or a top-level {"usable": true, "reason": ...}.
	var report map[string]json.RawMessage
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		return false, fmt.Sprintf("check --format json: bad JSON: %v", err)
	}
	var hv struct {
		Usable bool   `json:"usable"`
		Reason string `json:"reason"`
	}
	if raw, ok := report["hypervisor"]; ok {
		if err := json.Unmarshal(raw, &hv); err != nil {
			_ = json.Unmarshal(raw, &hv.Usable)
		}
	} else {
		_ = json.Unmarshal(stdout.Bytes(), &hv)
	}
	if !hv.Usable {
		if hv.Reason != "" {
			return false, "check reports hypervisor not usable: " + hv.Reason
		}
		return false, "check reports hypervisor not usable: " + firstLine(stdout.String())
	}
	return true, ""
})

// h is the per-(test, mode) harness: a private --root, a scratch dir and the
// containers to remove when the test ends.
type h struct {
	t     *testing.T
	mode  string
	root  string
	dir   string
	short string // short dir for unix sockets (sun_path is 108 bytes)
}

// forEachMode runs body once per isolation mode as parallel subtests.
func forEachMode(t *testing.T, body func(t *testing.T, h *h)) {
	t.Parallel()
	for _, mode := range testModes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			if mode == ModeHypervisor {
				if ok, reason := hypervisorProbe(); !ok {
					t.Skipf("hypervisor isolation unsupported by %s: %s", runtimeBin, reason)
				}
				vmSlots <- struct{}{}
				defer func() { <-vmSlots }()
			}
			body(t, newH(t, mode))
		})
	}
}

func newH(t *testing.T, mode string) *h {
	t.Helper()
	short, err := os.MkdirTemp("", "rh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	x := &h{t: t, mode: mode, dir: t.TempDir(), short: short}
	x.root = x.newRoot()
	return x
}

// newRoot returns a fresh, short --root directory removed at cleanup.
func (x *h) newRoot() string {
	r, err := os.MkdirTemp(x.short, "root")
	if err != nil {
		x.t.Fatal(err)
	}
	return r
}

// at returns x bound to subtest t (same --root).
func (x *h) at(t *testing.T) *h {
	y := *x
	y.t = t
	return &y
}

// sub returns a harness for subtest t with its own fresh --root.
func (x *h) sub(t *testing.T) *h {
	y := *x
	y.t = t
	y.root = x.newRoot()
	return &y
}

// id returns a container ID unique to this test, mode and test process, so
// that cgroup paths never collide between modes or concurrent runs.
func (x *h) id(name string) string {
	return fmt.Sprintf("rh-%s-%c%d", name, x.mode[0], os.Getpid())
}

func (x *h) timeout() time.Duration {
	if x.mode == ModeHypervisor {
		return 180 * time.Second
	}
	return 30 * time.Second
}

// bundle writes a bundle for this mode under the test dir and returns it.
func (x *h) bundle(name string, mutate func(*specs.Spec), args ...string) string {
	x.t.Helper()
	dir := filepath.Join(x.dir, "bundle-"+name)
	if err := NewBundle(dir, rootfsDir, x.mode, mutate, args...); err != nil {
		x.t.Fatal(err)
	}
	return dir
}

type result struct {
	code           int // -1 when the command did not exit normally
	stdout, stderr string
	err            error
	bin            string
	args           []string
}

func (r result) String() string {
	return fmt.Sprintf("`%s %s`: exit %d (err %v)\nstdout: %q\nstderr: %q",
		filepath.Base(r.bin), strings.Join(r.args, " "), r.code, r.err, r.stdout, r.stderr)
}

type opts struct {
	stdin  io.Reader
	stdout *os.File // default: a temp file (never a pipe: containers inherit it)
	stderr *os.File
	extra  []*os.File
	noRoot bool     // do not pass --root
	ctty   bool     // new session with stdin as controlling terminal
	bin    string   // run this binary instead of the runtime under test
	env    []string // added to the environment
}

// cmd builds the runtime command with --root and a deadline. Stdio defaults
// to temp files because a pipe inherited by a container would keep Wait from
// returning until the container exits.
func (x *h) cmd(o opts, args ...string) (*exec.Cmd, func() result) {
	x.t.Helper()
	full := args
	if !o.noRoot {
		full = append([]string{"--root", x.root}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), x.timeout())
	bin := runtimeBin
	if o.bin != "" {
		bin = o.bin
	}
	c := exec.CommandContext(ctx, bin, full...)
	c.Stdin = o.stdin
	if o.env != nil {
		c.Env = append(os.Environ(), o.env...)
	}
	outF, errF := o.stdout, o.stderr
	var tmp []*os.File
	for _, p := range []**os.File{&outF, &errF} {
		if *p == nil {
			f, err := os.CreateTemp(x.dir, "out")
			if err != nil {
				x.t.Fatal(err)
			}
			*p = f
			tmp = append(tmp, f)
		}
	}
	c.Stdout, c.Stderr = outF, errF
	c.ExtraFiles = o.extra
	if o.ctty {
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	wait := func() result {
		defer cancel()
		r := result{bin: bin, args: full, code: -1}
		r.err = c.Wait()
		var ee *exec.ExitError
		if r.err == nil {
			r.code = 0
		} else if errors.As(r.err, &ee) && ee.Exited() {
			r.code = ee.ExitCode()
			r.err = nil
		}
		if ctx.Err() != nil {
			r.err = fmt.Errorf("timed out after %v", x.timeout())
		}
		if o.stdout == nil {
			r.stdout = readFile(outF.Name())
		}
		if o.stderr == nil {
			r.stderr = readFile(errF.Name())
		}
		for _, f := range tmp {
			f.Close()
			os.Remove(f.Name())
		}
		return r
	}
	return c, wait
}

// start starts the command in the background; the returned func waits.
func (x *h) start(o opts, args ...string) (*exec.Cmd, func() result) {
	x.t.Helper()
	c, wait := x.cmd(o, args...)
	if err := c.Start(); err != nil {
		x.t.Fatalf("start %v: %v", args, err)
	}
	return c, wait
}

// runO runs the runtime to completion with the given stdio.
func (x *h) runO(o opts, args ...string) result {
	x.t.Helper()
	_, wait := x.start(o, args...)
	return wait()
}

// rt runs the runtime with default stdio.
func (x *h) rt(args ...string) result {
	x.t.Helper()
	return x.runO(opts{}, args...)
}

// must runs the runtime and fails the test unless it exits 0.
func (x *h) must(args ...string) result {
	x.t.Helper()
	r := x.rt(args...)
	if r.code != 0 {
		x.t.Fatalf("expected success: %v", r)
	}
	return r
}

// mustFail runs the runtime and fails the test unless it exits non-zero.
func (x *h) mustFail(args ...string) result {
	x.t.Helper()
	r := x.rt(args...)
	if r.code == 0 || r.err != nil {
		x.t.Errorf("expected a non-zero exit: %v", r)
	}
	return r
}

// cleanupContainer makes sure id is force-deleted when the test ends, and
// that nothing of it survives that.
func (x *h) cleanupContainer(id string) {
	root := x.root
	x.reapLeftovers(id) // registered first, so it runs after the delete
	x.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), x.timeout())
		defer cancel()
		out, err := exec.CommandContext(ctx, runtimeBin, "--root", root, "delete", "--force", id).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "not exist") {
			x.t.Logf("cleanup: delete --force %s: %v: %s", id, err, out)
		}
	})
}

// reapLeftovers registers a last-resort cleanup for container id: processes
// still in a cgroup named after it are killed and those cgroups removed, so
// a runtime that lost track of a container does not leak into later runs.
func (x *h) reapLeftovers(id string) {
	x.t.Cleanup(func() {
		ents, _ := os.ReadDir("/proc")
		var killed []int
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			for _, l := range strings.Split(readFile("/proc/"+e.Name()+"/cgroup"), "\n") {
				if strings.HasSuffix(l, "/"+id) {
					syscall.Kill(pid, syscall.SIGKILL)
					killed = append(killed, pid)
					break
				}
			}
		}
		for _, p := range killed {
			x.waitPidGone(p, 5*time.Second)
		}
		// A killed task leaves its cgroup only once reaped: retry a while.
		var removed []string
		for _, d := range cgroupCandidates(id) {
			for i := 0; i < 50; i++ {
				err := os.Remove(d)
				if err == nil {
					removed = append(removed, d)
				}
				if err == nil || os.IsNotExist(err) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		if len(killed)+len(removed) > 0 {
			report := x.t.Errorf // a leak, unless the runtime is the reference
			if isRunc {
				report = x.t.Logf
			}
			report("cleanup of %s after delete --force: killed %v, removed cgroups %v", id, killed, removed)
		}
	})
}

// create runs `create` for bundle with extra flags; stdout (may be nil)
// becomes the container's stdout.
func (x *h) create(id, bundle string, stdout *os.File, extra ...string) {
	x.t.Helper()
	x.cleanupContainer(id)
	args := append([]string{"create", "--bundle", bundle}, extra...)
	args = append(args, id)
	if r := x.runO(opts{stdout: stdout, stderr: stdout}, args...); r.code != 0 {
		x.t.Fatalf("create failed: %v (output file %s)", r, fileName(stdout))
	}
}

// startContainer creates and starts a container running args.
func (x *h) startContainer(name string, mutate func(*specs.Spec), args ...string) string {
	x.t.Helper()
	id := x.id(name)
	x.create(id, x.bundle(name, mutate, args...), nil)
	x.must("start", id)
	x.waitStatus(id, "running")
	return id
}

type state struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	Pid         int               `json:"pid"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     string            `json:"created"`
	Owner       *string           `json:"owner"`
	Annotations map[string]string `json:"annotations"`
}

func (x *h) state(id string) state {
	x.t.Helper()
	r := x.must("state", id)
	var s state
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		x.t.Fatalf("state %s: bad JSON %q: %v", id, r.stdout, err)
	}
	return s
}

// waitStatus polls state until the container reaches status.
func (x *h) waitStatus(id, status string) state {
	x.t.Helper()
	deadline := time.Now().Add(x.timeout())
	var s state
	for time.Now().Before(deadline) {
		if s = x.state(id); s.Status == status {
			return s
		}
		time.Sleep(100 * time.Millisecond)
	}
	x.t.Fatalf("container %s: status %q, want %q", id, s.Status, status)
	return s
}

// listIDs returns the IDs `list -q` prints.
func (x *h) listIDs() []string {
	x.t.Helper()
	r := x.must("list", "-q")
	ids := strings.Fields(r.stdout)
	sort.Strings(ids)
	return ids
}

// rootEntries lists the names directly under --root.
func (x *h) rootEntries() []string {
	ents, err := os.ReadDir(x.root)
	if err != nil && !os.IsNotExist(err) {
		x.t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// assertGone checks that nothing of container id is left: state fails, list
// does not show it, no state dir under --root.
func (x *h) assertGone(id string) {
	x.t.Helper()
	if r := x.rt("state", id); r.code == 0 {
		x.t.Errorf("state of deleted container %s succeeded: %v", id, r)
	}
	for _, l := range x.listIDs() {
		if l == id {
			x.t.Errorf("deleted container %s still listed", id)
		}
	}
	dir := filepath.Join(x.root, id)
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		x.t.Errorf("state dir %s still exists (err %v)", dir, err)
	}
	// A shim, QEMU or share mount of the container names its state dir.
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs, mounts := processesMentioning(dir), mountsMentioning(dir)
		if len(procs) == 0 && len(mounts) == 0 {
			break
		}
		if time.Now().After(deadline) {
			x.t.Errorf("left after delete: processes %v, mounts %v naming %s", procs, mounts, dir)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountsMentioning returns the host mountinfo lines that contain s.
func mountsMentioning(s string) []string {
	var out []string
	for _, l := range strings.Split(readFile("/proc/self/mountinfo"), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// pidAlive reports whether pid is a live (non-zombie) process.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitPidGone waits until pid is no longer a live process.
func (x *h) waitPidGone(pid int, d time.Duration) {
	x.t.Helper()
	deadline := time.Now().Add(d)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			x.t.Errorf("process %d still alive after %v", pid, d)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processesMentioning returns PIDs whose command line contains s: a runtime
// that leaks a shim or QEMU leaks a process naming its state dir.
func processesMentioning(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cl, []byte(s)) && pidAlive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}

func fileName(f *os.File) string {
	if f == nil {
		return ""
	}
	return f.Name()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// waitFileCount polls a file until it contains want n times.
func waitFileCount(t *testing.T, name, want string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := readFile(name)
		if strings.Count(got, want) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %d× %q within %v, got %q", name, n, want, d, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readPidFile(t *testing.T, name string) int {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		t.Fatalf("pid file %s: bad content %q", name, data)
	}
	return pid
}

func createFile(t *testing.T, dir, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// signalProc sends sig to a process the test started.
func signalProc(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill %d %v: %v", pid, sig, err)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
