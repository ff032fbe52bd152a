package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// badCase is one invocation that must fail cleanly.
type badCase struct {
	name string
	// args builds the command line; id is the fixture container, or for
	// cases without one an unused ID unique to the case; bundle is an empty
	// dir the case may fill.
	args func(t *testing.T, x *h, id, bundle string) []string
	// keywords: the error line must contain one of them (case-insensitive).
	keywords []string
	// runcDiff, when set, explains why runc is allowed to behave otherwise:
	// with runc the case is logged, not failed.
	runcDiff string
	// modes restricts the case to some isolation modes (nil: all).
	modes []string
}

var notExist = []string{"not exist", "does not exist", "not found", "no such"}

// createWith makes a case that runs create on a bundle changed by mutate.
func createWith(mutate func(t *testing.T, bundle string, s *specs.Spec)) func(*testing.T, *h, string, string) []string {
	return func(t *testing.T, x *h, id, bundle string) []string {
		s := DefaultSpec(rootfsDir, "true")
		if x.mode != ModeProcess {
			s.Annotations[IsolationAnnotation] = x.mode
		}
		// mutate comes last so that it may change the isolation too.
		if mutate != nil {
			mutate(t, bundle, s)
		}
		if err := WriteBundle(bundle, s, ""); err != nil {
			t.Fatal(err)
		}
		return []string{"create", "--bundle", bundle, id}
	}
}

const runcAnn = "runc ignores runh's annotations"

const runhVerb = "runc has no such verb (runh template)"

// annotation makes a case that creates a bundle carrying annotation k=v.
func annotation(k, v string) func(*testing.T, *h, string, string) []string {
	return createWith(func(_ *testing.T, _ string, s *specs.Spec) { s.Annotations[k] = v })
}

// writeConfig makes a case that runs create on a raw config.json.
func writeConfig(content string) func(*testing.T, *h, string, string) []string {
	return func(t *testing.T, x *h, id, bundle string) []string {
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{"create", "--bundle", bundle, id}
	}
}

// createID makes a case that creates a valid bundle under a bad ID.
func createID(id string) func(*testing.T, *h, string, string) []string {
	return func(t *testing.T, x *h, _, bundle string) []string {
		if err := NewBundle(bundle, rootfsDir, x.mode, nil, "true"); err != nil {
			t.Fatal(err)
		}
		return []string{"create", "--bundle", bundle, id}
	}
}

func verb(args ...string) func(*testing.T, *h, string, string) []string {
	return func(_ *testing.T, _ *h, id, _ string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			out[i] = strings.ReplaceAll(a, "ID", id)
		}
		return out
	}
}

// Cases needing no container.
var badNoContainer = []badCase{
	{name: "template-nics", args: verb("template", "--nics", "9"), keywords: []string{"--nics"}, runcDiff: runhVerb},
	{name: "template-memory", args: verb("template", "--memory", "9000"), keywords: []string{"largest template"}, runcDiff: runhVerb},
	{name: "config-malformed", args: writeConfig(`{"ociVersion": "1.0.2", "process": `), keywords: []string{"json", "config", "unexpected"}},
	{name: "config-not-object", args: writeConfig(`[1, 2]`), keywords: []string{"json", "config", "unmarshal"}},
	{name: "config-wrong-type", args: writeConfig(`{"ociVersion": "1.0.2", "process": {"args": "sh"}}`), keywords: []string{"json", "unmarshal", "args"}},
	{name: "config-missing", args: func(t *testing.T, x *h, id, bundle string) []string {
		return []string{"create", "--bundle", bundle, id}
	}, keywords: []string{"config.json"}},
	{name: "bundle-missing", args: func(t *testing.T, x *h, id, bundle string) []string {
		return []string{"create", "--bundle", filepath.Join(bundle, "nonexistent"), id}
	}, keywords: []string{"nonexistent", "no such file", "bundle"}},
	{name: "rootfs-missing", args: createWith(func(t *testing.T, bundle string, s *specs.Spec) {
		s.Root.Path = filepath.Join(bundle, "no-rootfs")
	}), keywords: []string{"rootfs", "no-rootfs", "no such file"}},
	{name: "rootfs-is-file", args: createWith(func(t *testing.T, bundle string, s *specs.Spec) {
		s.Root.Path = filepath.Join(bundle, "file")
		if err := os.WriteFile(s.Root.Path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}), keywords: []string{"rootfs", "not a directory"}},
	{name: "process-missing", args: createWith(func(t *testing.T, _ string, s *specs.Spec) { s.Process = nil }), keywords: []string{"process"}},
	{name: "args-empty", args: createWith(func(t *testing.T, _ string, s *specs.Spec) { s.Process.Args = nil }), keywords: []string{"args"}},
	{name: "binary-missing", args: createWith(func(t *testing.T, _ string, s *specs.Spec) {
		s.Process.Args = []string{"/no/such/binary"}
	}), keywords: []string{"/no/such/binary", "no such file", "not found"}},
	{name: "cwd-relative", args: createWith(func(t *testing.T, _ string, s *specs.Spec) { s.Process.Cwd = "tmp" }), keywords: []string{"cwd", "absolute", "relative"}},
	{name: "namespace-unknown", args: createWith(func(t *testing.T, _ string, s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
	}), keywords: []string{"namespace", "bogus"}},
	{name: "rootfs-symlink", args: createWith(func(t *testing.T, bundle string, s *specs.Spec) {
		link := filepath.Join(bundle, "rootfs-link")
		if err := os.Symlink(rootfsDir, link); err != nil {
			t.Fatal(err)
		}
		s.Root.Path = link
	}), keywords: []string{"symlink"}},
	{name: "netns-path-missing", args: createWith(func(t *testing.T, bundle string, s *specs.Spec) {
		setNetNS(s, filepath.Join(bundle, "no-netns"))
	}), keywords: []string{"no-netns", "no such file", "network namespace"}},
	{name: "netns-path-not-ns", args: createWith(func(t *testing.T, bundle string, s *specs.Spec) {
		setNetNS(s, filepath.Join(bundle, "config.json"))
	}), keywords: []string{"namespace"}},
	{name: "host-network-vm", args: createWith(func(t *testing.T, bundle string, s *specs.Spec) {
		setNetNS(s, "-")
	}), keywords: []string{"host network", "host's network"}, modes: []string{ModeHypervisor}},
	{name: "host-ipc-vm", args: createWith(func(t *testing.T, _ string, s *specs.Spec) {
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.IPCNamespace })
	}), keywords: []string{"host IPC"}, modes: []string{ModeHypervisor}},
	{name: "host-pid-vm", args: createWith(func(t *testing.T, _ string, s *specs.Spec) {
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.PIDNamespace })
	}), keywords: []string{"host PID"}, modes: []string{ModeHypervisor}},
	{name: "isolation-unknown", args: annotation(IsolationAnnotation, "bogus"), keywords: []string{IsolationAnnotation}, runcDiff: runcAnn},
	{name: "annotation-unknown", args: annotation("io.runh.typo", "1"), keywords: []string{"io.runh.typo"}, runcDiff: runcAnn},
	{name: "vm-memory-bad", args: annotation("io.runh.vm.memory", "lots"), keywords: []string{"io.runh.vm.memory"}, runcDiff: runcAnn},
	{name: "vm-memory-tiny", args: annotation("io.runh.vm.memory", "1"), keywords: []string{"io.runh.vm.memory"}, runcDiff: runcAnn},
	{name: "vm-cpus-zero", args: annotation("io.runh.vm.cpus", "0"), keywords: []string{"io.runh.vm.cpus"}, runcDiff: runcAnn},
	{name: "vm-accel-bad", args: annotation("io.runh.vm.accel", "warp"), keywords: []string{"io.runh.vm.accel"}, runcDiff: runcAnn},
	{name: "untrusted-not-bool", args: annotation("io.kubernetes.cri.untrusted-workload", "maybe"),
		keywords: []string{"io.kubernetes.cri.untrusted-workload"}, runcDiff: runcAnn},
	{name: "terminal-without-console-socket", args: createWith(func(t *testing.T, _ string, s *specs.Spec) {
		s.Process.Terminal = true
	}), keywords: []string{"console"}},
	{name: "console-socket-not-socket", args: func(t *testing.T, x *h, id, bundle string) []string {
		s := DefaultSpec(rootfsDir, "sh")
		s.Process.Terminal = true
		if err := WriteBundle(bundle, s, x.mode); err != nil {
			t.Fatal(err)
		}
		notSock := filepath.Join(bundle, "not-a-socket")
		if err := os.WriteFile(notSock, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return []string{"create", "--console-socket", notSock, "--bundle", bundle, id}
	}, keywords: []string{"console", "socket", "connect"}},
	{name: "id-dotdot-slash", args: createID("../x"), keywords: []string{"id", "invalid"}},
	{name: "id-slash", args: createID("a/b"), keywords: []string{"id", "invalid"}},
	{name: "id-dotdot", args: createID(".."), keywords: []string{"id", "invalid"}},
	{name: "id-empty", args: createID(""), keywords: []string{"id", "invalid"}},
	{name: "id-too-long", args: createID(strings.Repeat("a", 300)), keywords: []string{"id", "invalid", "long"}},
	{name: "id-newline", args: createID("a\nb"), keywords: []string{"id", "invalid"}},
	{name: "unknown-flag", args: func(t *testing.T, x *h, id, bundle string) []string {
		return []string{"create", "--no-such-flag", "--bundle", bundle, id}
	}, keywords: []string{"no-such-flag"}},
	{name: "unknown-global-flag", args: verb("--no-such-global", "list"), keywords: []string{"no-such-global"}},
	{name: "unknown-verb", args: verb("frobnicate"), keywords: []string{"frobnicate"}},
}

// Verbs on an ID that does not exist.
var badUnknownID = func() []badCase {
	var cases []badCase
	for _, v := range [][]string{
		{"start", "ID"}, {"state", "ID"}, {"kill", "ID"}, {"kill", "ID", "KILL"}, {"delete", "ID"},
		{"pause", "ID"}, {"resume", "ID"}, {"exec", "ID", "true"}, {"ps", "ID"},
		{"update", "--pids-limit", "10", "ID"}, {"events", "--stats", "ID"},
	} {
		name := strings.NewReplacer(" ID", "", "--", "", " ", "-").Replace(strings.Join(v, " "))
		cases = append(cases, badCase{name: "unknown-id-" + name, args: verb(v...), keywords: notExist})
	}
	return cases
}()

// Cases on a running container (created and started, `sleep`).
var badRunning = []badCase{
	{name: "start-running", args: verb("start", "ID"), keywords: []string{"running", "not in created state", "already"}},
	{name: "delete-running", args: verb("delete", "ID"), keywords: []string{"running", "not stopped"}},
	{name: "kill-unknown-signal", args: verb("kill", "ID", "SIGBOGUS"), keywords: []string{"signal"}},
	{name: "kill-bad-number", args: verb("kill", "ID", "99999"), keywords: []string{"signal", "invalid"}},
	{name: "create-duplicate", args: func(t *testing.T, x *h, id, bundle string) []string {
		if err := NewBundle(bundle, rootfsDir, x.mode, nil, "true"); err != nil {
			t.Fatal(err)
		}
		return []string{"create", "--bundle", bundle, id}
	}, keywords: []string{"exist"}},
	{name: "resume-not-paused", args: verb("resume", "ID"), keywords: []string{"not paused", "paused"}},
	{name: "checkpoint", args: verb("checkpoint", "ID"), keywords: []string{"not supported"},
		runcDiff: "runc implements checkpoint with criu (not installed here)"},
	{name: "restore", args: verb("restore", "ID"), keywords: []string{"not supported"},
		runcDiff: "runc implements restore with criu (not installed here)"},
}

// Cases on a stopped container.
var badStopped = []badCase{
	{name: "start-stopped", args: verb("start", "ID"), keywords: []string{"stopped"}},
	{name: "pause-stopped", args: verb("pause", "ID"), keywords: []string{"not running", "stopped"}},
	{name: "exec-stopped", args: verb("exec", "ID", "true"), keywords: []string{"stopped", "not running"}},
	{name: "kill-stopped", args: verb("kill", "ID", "KILL"), keywords: []string{"not running", "stopped"}},
}

var validID = regexp.MustCompile(`^[\w+.-]{1,200}$`)

var stackTrace = regexp.MustCompile(`panic:|goroutine \d+ \[|\.go:\d+`)

// TestBadInput runs every bad-input case: each must exit non-zero with one
// stderr line naming the problem, no stack trace, and leave nothing behind.
func TestBadInput(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		t.Run("no-container", func(t *testing.T) {
			for _, c := range append(slices.Clone(badNoContainer), badUnknownID...) {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					y := x.sub(t)
					runBadCase(t, y, c, y.id(c.name), false)
				})
			}
		})
		t.Run("running", func(t *testing.T) {
			y := x.sub(t)
			id := y.startContainer("badrun", nil, "sleep", "100000")
			for _, c := range badRunning {
				t.Run(c.name, func(t *testing.T) {
					runBadCase(t, y.at(t), c, id, true)
					if s := y.at(t).state(id); s.Status != "running" {
						t.Errorf("fixture status after the failed command: %q, want running", s.Status)
					}
				})
			}
		})
		t.Run("stopped", func(t *testing.T) {
			y := x.sub(t)
			id := y.id("badstop")
			y.create(id, y.bundle("badstop", nil, "true"), nil)
			y.must("start", id)
			y.waitStatus(id, "stopped")
			for _, c := range badStopped {
				t.Run(c.name, func(t *testing.T) {
					runBadCase(t, y.at(t), c, id, true)
					if s := y.at(t).state(id); s.Status != "stopped" {
						t.Errorf("fixture status after the failed command: %q, want stopped", s.Status)
					}
				})
			}
		})
	})
}

// runBadCase runs c; id is the fixture container when fixture is true,
// else an unused ID for the case.
func runBadCase(t *testing.T, x *h, c badCase, id string, fixture bool) {
	if c.modes != nil && !slices.Contains(c.modes, x.mode) {
		t.Skipf("case applies to modes %v only", c.modes)
	}
	fail := t.Errorf
	if isRunc && c.runcDiff != "" {
		fail = func(format string, args ...any) {
			t.Logf("runc differs (%s): "+format, append([]any{c.runcDiff}, args...)...)
		}
	}
	bundle := t.TempDir()
	args := c.args(t, x, id, bundle)
	last := args[len(args)-1]
	// A create that names a valid new ID may leave a container behind.
	mayCreate := args[0] == "create" && !(fixture && last == id) && validID.MatchString(last) && last != ".."
	// Whatever the case creates by mistake is removed at the end.
	if mayCreate {
		x.cleanupContainer(last)
	}
	beforeList, beforeRoot, beforeProcs := x.listIDs(), x.rootEntries(), processesMentioning(x.root)

	r := x.rt(args...)
	if r.err != nil {
		t.Fatalf("%v", r)
	}
	if r.code == 0 {
		fail("want a non-zero exit: %v", r)
	}
	var lines []string
	for _, l := range strings.Split(r.stderr, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		fail("want exactly one stderr line, got %d: %v", len(lines), r)
	}
	low := strings.ToLower(r.stderr)
	found := false
	for _, k := range c.keywords {
		found = found || strings.Contains(low, strings.ToLower(k))
	}
	if !found {
		fail("stderr names none of %q: %v", c.keywords, r)
	}
	if stackTrace.MatchString(r.stderr + r.stdout) {
		fail("output has a Go panic or stack trace: %v", r)
	}
	if after := x.listIDs(); !slices.Equal(after, beforeList) {
		fail("list changed from %v to %v", beforeList, after)
	}
	if after := x.rootEntries(); !slices.Equal(after, beforeRoot) {
		fail("--root entries changed from %v to %v", beforeRoot, after)
	}
	// Only new processes are a leak: a stopped fixture's shim may still be
	// on its way out while the case runs.
	for _, p := range processesMentioning(x.root) {
		if !slices.Contains(beforeProcs, p) {
			fail("new process %d naming %s after the failed command", p, x.root)
		}
	}
	if mayCreate {
		var left []string
		for _, d := range cgroupCandidates(last) {
			if _, err := os.Stat(d); err == nil {
				left = append(left, d)
			}
		}
		if len(left) > 0 {
			fail("cgroups left behind: %v", left)
		}
	}
}

// cgroupCandidates lists where a runtime would put the default cgroup of
// container id: /<id> in each hierarchy, or under the caller's own cgroup.
func cgroupCandidates(id string) []string {
	self, _ := parseCgroupFile("/proc/self/cgroup")
	var dirs []string
	for hier, p := range self {
		dirs = append(dirs, filepath.Join("/sys/fs/cgroup", hier, id))
		if p != "/" {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", hier, p, id))
		}
	}
	slices.Sort(dirs)
	return dirs
}

// setNetNS points the spec's network namespace at path, or with "-"
// removes it (host network).
func setNetNS(s *specs.Spec, path string) {
	var out []specs.LinuxNamespace
	for _, ns := range s.Linux.Namespaces {
		if ns.Type != specs.NetworkNamespace {
			out = append(out, ns)
		}
	}
	if path != "-" {
		out = append(out, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: path})
	}
	s.Linux.Namespaces = out
}
