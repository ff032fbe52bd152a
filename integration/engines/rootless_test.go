package engines

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRootless runs runh as an ordinary user the test creates (with its
// own subordinate ID ranges), beside runc, and expects the same answers
// from both: directly on a bundle, and under that user's rootless podman
// (a user namespace from newuidmap, the network from slirp4netns), there
// in both isolation modes (runh and runh-vm). The user, its ID ranges,
// its podman storage and its processes are removed when the test ends.
func TestRootless(t *testing.T) {
	record(t, "rootless", modeProcess)
	if isRef {
		t.Skip("runs runh and the reference runtime side by side: nothing to do in a reference run")
	}
	ref, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed: the rootless answers have nothing to be compared with")
	}
	for _, tool := range []string{"useradd", "usermod", "userdel", "setpriv", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (passwd, util-linux)", tool)
		}
	}
	u := newRootlessUser(t)
	runtimes := []string{ref, runtimeBin}
	podmanRuntimes := runtimes
	vm := slices.Contains(testModes, modeHypervisor) && vmBin != ""
	if vm {
		podmanRuntimes = append(podmanRuntimes, vmBin)
	}

	t.Run("defaults", func(t *testing.T) { rootlessDefaults(t, u) })
	t.Run("direct", func(t *testing.T) { rootlessDirect(t, u, runtimes) })
	t.Run("podman", func(t *testing.T) { rootlessPodman(t, u, podmanRuntimes) })
	t.Run("hypervisor-direct-refused", func(t *testing.T) {
		if !vm {
			t.Skip("hypervisor mode not in RUNH_TEST_MODES, or no runh-vm")
		}
		rootlessHypervisorDirect(t, u)
	})
}

// rlUser is the ordinary user the rootless tests run as.
type rlUser struct {
	name        string
	uid, gid    int
	first, last int    // its subordinate IDs
	home        string // its HOME
	xdg         string // its XDG_RUNTIME_DIR
	dir         string // home, xdg and its files live here
}

const rlComment = "runh rootless test"

// newRootlessUser creates an ordinary user with a home and a runtime
// directory under the suite's temp dir and a subordinate ID range of its
// own, and removes all of it (and whatever still runs as it) at the end.
func newRootlessUser(t *testing.T) *rlUser {
	t.Helper()
	reapStaleRootlessUsers(t)
	u := &rlUser{name: fmt.Sprintf("runhrl%d", os.Getpid()%100000), dir: filepath.Join(baseDir, "rootless")}
	u.home, u.xdg = filepath.Join(u.dir, "home"), filepath.Join(u.dir, "xdg")
	if err := os.MkdirAll(u.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// useradd would add ranges of its own (login.defs SUB_UID_COUNT):
	// the test adds its own, so that it knows what to remove.
	if out, err := exec.Command("useradd", "-M", "-d", u.home, "-s", "/bin/sh", "-c", rlComment,
		"-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", u.name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	lu, err := user.Lookup(u.name)
	if err != nil {
		exec.Command("userdel", u.name).Run()
		t.Fatal(err)
	}
	u.uid, _ = strconv.Atoi(lu.Uid)
	u.gid, _ = strconv.Atoi(lu.Gid)
	first := freeSubIDRange()
	last := first + rlRange - 1
	u.first, u.last = first, last
	t.Cleanup(func() { u.remove(t, first, last) })
	ids := fmt.Sprintf("%d-%d", first, last)
	if out, err := exec.Command("usermod", "--add-subuids", ids, "--add-subgids", ids, u.name).CombinedOutput(); err != nil {
		t.Fatalf("usermod --add-subuids: %v: %s", err, out)
	}
	for _, d := range []string{u.home, u.xdg} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, u.uid, u.gid); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("user %s (uid %d), subordinate IDs %s, XDG_RUNTIME_DIR %s", u.name, u.uid, ids, u.xdg)
	return u
}

const rlRange = 65536

// freeSubIDRange is the first ID past every range in /etc/subuid and
// /etc/subgid (and past 100000, where Debian's ranges start).
func freeSubIDRange() int {
	next := 100000
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		data, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(data), "\n") {
			p := strings.Split(strings.TrimSpace(line), ":")
			if len(p) != 3 {
				continue
			}
			start, err1 := strconv.Atoi(p[1])
			n, err2 := strconv.Atoi(p[2])
			if err1 == nil && err2 == nil && start+n > next {
				next = start + n
			}
		}
	}
	return (next + rlRange - 1) / rlRange * rlRange
}

// remove undoes newRootlessUser: the user's podman storage, its
// processes (podman's pause process, slirp4netns, conmon; also those
// running as its subordinate IDs), its ID ranges, the user and its files.
func (u *rlUser) remove(t *testing.T, first, last int) {
	u.podman("system", "reset", "--force")
	for i := 0; i < 50; i++ {
		if killUserProcs(u.uid, first, last) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	unmountUnder(u.dir)
	ids := fmt.Sprintf("%d-%d", first, last)
	if out, err := exec.Command("usermod", "--del-subuids", ids, "--del-subgids", ids, u.name).CombinedOutput(); err != nil {
		t.Errorf("usermod --del-subuids: %v: %s", err, out)
	}
	if out, err := exec.Command("userdel", u.name).CombinedOutput(); err != nil {
		t.Errorf("userdel %s: %v: %s", u.name, err, out)
	}
	for _, f := range []string{"/etc/subuid", "/etc/subgid", "/etc/passwd"} {
		if data, _ := os.ReadFile(f); strings.Contains(string(data), u.name+":") {
			t.Errorf("%s still names %s", f, u.name)
		}
	}
	os.RemoveAll(u.dir)
}

// killUserProcs SIGKILLs every process whose real UID is uid or in
// [first, last] and returns how many it found.
func killUserProcs(uid, first, last int) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		id := procRealUID(pid)
		if id < 0 {
			continue
		}
		if id == uid || (id >= first && id <= last) {
			syscall.Kill(pid, syscall.SIGKILL)
			n++
		}
	}
	return n
}

// procRealUID is the real UID of pid, or -1 (also for a zombie: its
// parent, here often an init that does not reap, holds nothing of it).
func procRealUID(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "State:" && f[1] == "Z" {
			return -1
		}
		if len(f) > 1 && f[0] == "Uid:" {
			id, err := strconv.Atoi(f[1])
			if err != nil {
				return -1
			}
			return id
		}
	}
	return -1
}

// reapStaleRootlessUsers removes the users a killed run of this test
// left behind: they carry the test's comment and their home is gone with
// that run's temp dir.
func reapStaleRootlessUsers(t *testing.T) {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), ":")
		if len(p) < 7 || !strings.HasPrefix(p[0], "runhrl") || p[4] != rlComment || fileExists(p[5]) {
			continue
		}
		uid, _ := strconv.Atoi(p[2])
		killUserProcs(uid, -1, -1)
		exec.Command("usermod", "--del-subuids", "0-4294967294", "--del-subgids", "0-4294967294", p[0]).Run()
		if out, err := exec.Command("userdel", p[0]).CombinedOutput(); err == nil {
			t.Logf("removed stale test user %s", p[0])
		} else {
			t.Logf("stale test user %s: userdel: %v: %s", p[0], err, out)
		}
	}
}

// env is the environment of a login of u: the harness's own (root's)
// would tell runh and podman they are root ($USER), or point them at
// root's directories.
func (u *rlUser) env(extra ...string) []string {
	return append([]string{
		"USER=" + u.name, "LOGNAME=" + u.name, "HOME=" + u.home, "XDG_RUNTIME_DIR=" + u.xdg,
		"TMPDIR=" + u.xdg, "XDG_CONFIG_HOME=" + u.home + "/.config", "XDG_DATA_HOME=" + u.home + "/.local/share",
	}, extra...)
}

// run runs argv as u.
func (u *rlUser) run(o runOpts, argv ...string) result {
	o.env = append(u.env(), o.env...)
	if o.dir == "" {
		o.dir = u.home
	}
	if o.timeout == 0 {
		o.timeout = cmdTimeout(modeProcess)
	}
	return runCmd(o, append([]string{"setpriv", "--reuid", strconv.Itoa(u.uid), "--regid", strconv.Itoa(u.gid), "--init-groups", "--"}, argv...)...)
}

// podman runs podman as u with a private configuration: vfs storage in
// its home, cgroupfs (no systemd here), events in a file.
func (u *rlUser) podman(args ...string) result {
	return u.podmanTimeout(cmdTimeout(modeProcess), args...)
}

// podmanTimeout is podman with a timeout (a VM container's verbs take
// longer under TCG).
func (u *rlUser) podmanTimeout(d time.Duration, args ...string) result {
	conf := filepath.Join(u.dir, "containers.conf")
	if !fileExists(conf) {
		os.WriteFile(conf, []byte("[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"), 0o644)
		os.WriteFile(filepath.Join(u.dir, "registries.conf"), []byte("unqualified-search-registries = []\n"), 0o644)
	}
	env := []string{"CONTAINERS_CONF=" + conf, "CONTAINERS_REGISTRIES_CONF=" + filepath.Join(u.dir, "registries.conf")}
	return u.run(runOpts{env: env, timeout: d}, append([]string{"podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"}, args...)...)
}

func (u *rlUser) podmanOK(t *testing.T, args ...string) string {
	t.Helper()
	r := u.podman(args...)
	if r.code != 0 || r.err != nil {
		t.Fatalf("%s: podman %s: %s", u.name, strings.Join(args, " "), r)
	}
	return strings.TrimSpace(r.stdout)
}

// stateName is the directory runtime rt keeps its state in under
// $XDG_RUNTIME_DIR: its name, runh's for runh-vm.
func stateName(rt string) string {
	if rt == vmBin {
		return filepath.Base(runtimeBin)
	}
	return filepath.Base(rt)
}

// stateEntries lists the state root of runtime rt under u's
// XDG_RUNTIME_DIR (runc's or runh's default there).
func (u *rlUser) stateEntries(t *testing.T, rt string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(u.xdg, stateName(rt)))
	if err != nil {
		t.Fatalf("state root of %s: %v", rt, err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// expectStateRoot checks that rt keeps its state in u's runtime
// directory, as runc does: owned by u, 0700 and sticky (so the session
// does not prune it).
func (u *rlUser) expectStateRoot(t *testing.T, rt string) {
	t.Helper()
	dir := filepath.Join(u.xdg, stateName(rt))
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("%s: no state root in $XDG_RUNTIME_DIR: %v", rt, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != u.uid || fi.Mode().Perm() != 0o700 || fi.Mode()&os.ModeSticky == 0 {
		t.Fatalf("%s: state root %s is %v owned by %d, want drwx-----T owned by %d", rt, dir, fi.Mode(), st.Uid, u.uid)
	}
}

// rootlessDefaults checks runh's default state root and its --rootless
// auto detection for root, for the user, and for root of a user namespace,
// through `runh --help` (the default it shows) and `runh check`.
func rootlessDefaults(t *testing.T, u *rlUser) {
	type checkJSON struct {
		Process struct {
			Rootless         bool   `json:"rootless"`
			UID              int    `json:"uid"`
			InUserNS         bool   `json:"inUserNamespace"`
			StateDir         string `json:"stateDir"`
			StateDirWritable bool   `json:"stateDirWritable"`
			Cgroups          string `json:"cgroups"`
			Usable           bool   `json:"usable"`
			Reason           string `json:"reason"`
		} `json:"process"`
		Hypervisor struct {
			Usable bool   `json:"usable"`
			Reason string `json:"reason"`
		} `json:"hypervisor"`
	}
	check := func(t *testing.T, r result) checkJSON {
		t.Helper()
		var c checkJSON
		if err := json.Unmarshal([]byte(expectOK(t, r)), &c); err != nil {
			t.Fatalf("check --format json: %v: %s", err, r)
		}
		return c
	}
	asRoot := func(env []string, argv ...string) result {
		return runCmd(runOpts{env: env, timeout: time.Minute}, argv...)
	}
	// root in a user namespace of its own (root mapped to itself only),
	// as runh runs under rootless podman.
	inNS := func(argv ...string) []string {
		return append([]string{"unshare", "--user", "--map-root-user", "--"}, argv...)
	}
	rootXDG := t.TempDir()
	cases := []struct {
		name      string
		r         func(argv ...string) result
		wantRoot  string
		rootless  bool // --rootless resolved
		inUserNS  bool
		privilege bool // the host's root
		stateOK   bool // the state root is writable
		extraArgs []string
	}{
		{"root ignores XDG_RUNTIME_DIR", func(a ...string) result { return asRoot([]string{"XDG_RUNTIME_DIR=" + rootXDG}, a...) },
			"/run/runh", false, false, true, true, nil},
		{"user", func(a ...string) result { return u.run(runOpts{timeout: time.Minute}, a...) },
			filepath.Join(u.xdg, "runh"), true, false, false, true, nil},
		{"user without XDG_RUNTIME_DIR", func(a ...string) result {
			return u.run(runOpts{env: []string{"XDG_RUNTIME_DIR="}, timeout: time.Minute}, a...)
		}, "/run/runh", true, false, false, false, nil},
		{"user --rootless=false", func(a ...string) result { return u.run(runOpts{timeout: time.Minute}, a...) },
			filepath.Join(u.xdg, "runh"), false, false, false, true, []string{"--rootless=false"}},
		// runc's rule: root of a user namespace uses $XDG_RUNTIME_DIR
		// unless $USER says root.
		{"root of a user namespace", func(a ...string) result {
			return asRoot([]string{"XDG_RUNTIME_DIR=" + rootXDG, "USER=someone"}, inNS(a...)...)
		}, filepath.Join(rootXDG, "runh"), true, true, false, true, nil},
		{"root of a user namespace, USER=root", func(a ...string) result {
			return asRoot([]string{"XDG_RUNTIME_DIR=" + rootXDG, "USER=root"}, inNS(a...)...)
		}, "/run/runh", true, true, false, true, nil},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "-"), func(t *testing.T) {
			help := c.r(runtimeBin, "--help")
			if want := fmt.Sprintf("(default: %q)", c.wantRoot); !strings.Contains(help.stdout, want) {
				t.Errorf("runh --help: want --root %s, got:\n%s", want, grepLines(help.stdout, "--root", 2))
			}
			got := check(t, c.r(append(append([]string{runtimeBin}, c.extraArgs...), "check", "--format", "json")...))
			p := got.Process
			if p.StateDir != c.wantRoot || p.Rootless != c.rootless || p.InUserNS != c.inUserNS {
				t.Errorf("check: stateDir %q rootless %v inUserNamespace %v, want %q %v %v", p.StateDir, p.Rootless, p.InUserNS, c.wantRoot, c.rootless, c.inUserNS)
			}
			if p.StateDirWritable != c.stateOK {
				t.Errorf("check: stateDirWritable %v, want %v (%s)", p.StateDirWritable, c.stateOK, p.Reason)
			}
			if c.rootless && c.stateOK && !p.Usable {
				t.Errorf("check: process isolation not usable: %s", p.Reason)
			}
			// An ordinary user needs a user namespace for a VM; root
			// of one has what the shim needs (whatever else the host
			// lacks is the same for root).
			h := got.Hypervisor
			if !c.privilege && !c.inUserNS && (h.Usable || !strings.Contains(h.Reason, rlNeedsUserNS)) {
				t.Errorf("check: hypervisor usable %v (%s), want not usable: %s", h.Usable, h.Reason, rlNeedsUserNS)
			}
			if c.inUserNS && strings.Contains(h.Reason, rlNeedsUserNS) {
				t.Errorf("check in a user namespace: hypervisor refused for lack of one: %s", h.Reason)
			}
			t.Logf("check: rootless %v, state dir %s (writable %v), cgroups %s", p.Rootless, p.StateDir, p.StateDirWritable, p.Cgroups)
		})
	}
	// A default root that is made is the user's, 0700 and sticky.
	expectOK(t, u.run(runOpts{}, runtimeBin, "list"))
	u.expectStateRoot(t, runtimeBin)
	if r := u.run(runOpts{}, runtimeBin, "--rootless", "maybe", "list"); r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("--rootless maybe: want a one-line error, got %s", r)
	}
}

// rootlessDirect runs a bundle from `spec --rootless` as the user, with
// each runtime: the container is root in a user namespace mapping only the
// user; a memory limit (no cgroup the user may write on this host) fails
// as runc fails; nothing is left in the state root.
func rootlessDirect(t *testing.T, u *rlUser, runtimes []string) {
	plain, limited := u.bundle(t, "bundle", false), u.bundle(t, "bundle-limit", true)
	answers := map[string][]string{}
	for _, rt := range runtimes {
		name := filepath.Base(rt)
		var a []string
		r := u.run(runOpts{}, rt, "run", "--bundle", plain, "rl-"+name)
		out := expectOK(t, r)
		a = append(a, "run: "+strings.Join(strings.Fields(out), " "))
		r = u.run(runOpts{}, rt, "run", "--bundle", limited, "rl-limit-"+name)
		a = append(a, fmt.Sprintf("limit: exit %d, %v", r.code, strings.Contains(r.stderr, "cannot set memory limit")))
		if name != "runc" && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: the refused limit's error is more than one line: %s", name, r)
		}
		// Rootless off: the cgroups must be written, and cannot be.
		r = u.run(runOpts{}, rt, "--rootless", "false", "run", "--bundle", plain, "rl-strict-"+name)
		a = append(a, fmt.Sprintf("--rootless false: exit %d, %v", r.code, strings.Contains(r.stderr, "permission denied")))
		u.expectStateRoot(t, rt)
		if left := u.stateEntries(t, rt); len(left) != 0 {
			t.Errorf("%s left %v in its state root", name, left)
		}
		answers[name] = a
		t.Logf("%s: %s", name, strings.Join(a, " | "))
	}
	compareAnswers(t, runtimes, answers)
	if got := answers[filepath.Base(runtimeBin)]; len(got) > 0 && got[0] != fmt.Sprintf("run: 0 0 %d 1", u.uid) {
		t.Errorf("want uid 0 mapped to %d only, got %q", u.uid, got[0])
	}
}

// bundle writes, once, a bundle in u's home whose config is what
// `runh spec --rootless` writes for u (u mapped to root), over the suite's
// busybox rootfs; the process prints its UID and uid_map. limit adds a
// memory limit.
func (u *rlUser) bundle(t *testing.T, name string, limit bool) string {
	t.Helper()
	dir := filepath.Join(u.home, name)
	p := filepath.Join(dir, "config.json")
	if fileExists(p) {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(dir, u.uid, u.gid)
	expectOK(t, u.run(runOpts{}, runtimeBin, "spec", "--rootless", "--bundle", dir))
	var spec map[string]any
	data, err := os.ReadFile(p)
	if err == nil {
		err = json.Unmarshal(data, &spec)
	}
	if err != nil {
		t.Fatal(err)
	}
	spec["root"] = map[string]any{"path": rootfsDir, "readonly": true}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"sh", "-c", "id -u; cat /proc/self/uid_map"}
	if limit {
		spec["linux"].(map[string]any)["resources"] = map[string]any{"memory": map[string]any{"limit": 64 << 20}}
	}
	data, _ = json.Marshal(spec)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// compareAnswers fails unless every runtime gave the first's answers.
func compareAnswers(t *testing.T, runtimes []string, answers map[string][]string) {
	t.Helper()
	want := answers[filepath.Base(runtimes[0])]
	for _, rt := range runtimes[1:] {
		got := answers[filepath.Base(rt)]
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s answered differently from %s:\n%s:\n  %s\n%s:\n  %s", filepath.Base(rt), filepath.Base(runtimes[0]),
				filepath.Base(runtimes[0]), strings.Join(want, "\n  "), filepath.Base(rt), strings.Join(got, "\n  "))
		}
	}
}

// rootlessPodman drives the user's podman with each runtime: run, the
// user namespace, exec, a volume, a published port (slirp4netns), stop
// and rm, and compares the answers.
func rootlessPodman(t *testing.T, u *rlUser, runtimes []string) {
	for _, b := range []string{"podman", "conmon", "newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install podman conmon uidmap)", b)
		}
	}
	// The image goes into the user's own storage.
	u.podmanOK(t, "import", "--change", `CMD ["/bin/sh"]`, imageTar, imageName)
	network := []string{"--network", "slirp4netns"}
	noPort := ""
	if _, err := exec.LookPath("slirp4netns"); err != nil {
		noPort = "slirp4netns not installed (apt-get install slirp4netns)"
	} else if restoreTun, err := userTun(); err != nil {
		noPort = err.Error()
	} else {
		defer restoreTun()
	}
	if noPort != "" {
		network = []string{"--network", "none"}
	}
	answers := map[string][]string{}
	for _, rt := range runtimes {
		name := filepath.Base(rt)
		t.Run(name, func(t *testing.T) {
			if rt == vmBin {
				record(t, "rootless", modeHypervisor)
			}
			answers[name] = rootlessPodmanScenario(t, u, rt, network, noPort == "")
		})
	}
	compareAnswers(t, runtimes, answers)
	t.Run("published-port", func(t *testing.T) {
		if noPort != "" {
			t.Skip("no published port tried: " + noPort)
		}
		// Tried in each runtime's scenario above, answers compared.
	})
}

// userTun makes /dev/net/tun usable by ordinary users, as udev's rules
// do on an ordinary host (this one has no udev: the node is root's only),
// and returns how to put it back. slirp4netns opens it in the user's
// namespace.
func userTun() (func(), error) {
	fi, err := os.Stat("/dev/net/tun")
	if err != nil {
		return nil, fmt.Errorf("no /dev/net/tun: %w", err)
	}
	mode := fi.Mode().Perm()
	if mode&0o006 == 0o006 {
		return func() {}, nil
	}
	if err := os.Chmod("/dev/net/tun", 0o666); err != nil {
		return nil, fmt.Errorf("/dev/net/tun is %v, and chmod: %w", mode, err)
	}
	return func() { os.Chmod("/dev/net/tun", mode) }, nil
}

// rlNeedsUserNS is what runh says of hypervisor isolation for an ordinary
// user outside a user namespace of its own (hvshim.NeedsUserNS).
const rlNeedsUserNS = "an ordinary user needs a user namespace of its own"

// rootlessPodmanScenario runs the scenario with runtime rt and returns the
// answers every runtime must give alike. What differs between the modes
// for a reason is checked here instead: the container's uid_map (in a VM,
// the guest kernel's own user namespace, the identity; with process
// isolation podman's, the user and its range) and a memory limit set by
// update (a VM's guest applies it; no cgroup of its own is the user's on
// the host for a process container).
func rootlessPodmanScenario(t *testing.T, u *rlUser, rt string, network []string, port bool) []string {
	name := filepath.Base(rt)
	isVM := rt == vmBin
	mode := modeProcess
	if isVM {
		mode = modeHypervisor
	}
	podman := func(args ...string) string {
		t.Helper()
		r := u.podmanTimeout(cmdTimeout(mode), append([]string{"--runtime", rt}, args...)...)
		if r.code != 0 || r.err != nil {
			t.Fatalf("%s: podman --runtime %s %s: %s", u.name, name, strings.Join(args, " "), r)
		}
		return strings.TrimSpace(r.stdout)
	}
	var a []string
	say := func(k, v string) { a = append(a, k+": "+strings.Join(strings.Fields(v), " ")) }

	out := strings.Split(podman("run", "--rm", "--network", "none", imageName, "sh", "-c", "id -u; cat /proc/self/uid_map"), "\n")
	say("run", out[0])
	uidMap := strings.Join(strings.Fields(strings.Join(out[1:], " ")), " ")
	wantMap := fmt.Sprintf("0 %d 1 1 %d %d", u.uid, u.first, rlRange)
	if isVM {
		wantMap = "0 0 4294967295"
	}
	if uidMap != wantMap {
		t.Errorf("%s: uid_map %q, want %q", name, uidMap, wantMap)
	}

	vol := filepath.Join(u.home, "vol-"+name)
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(vol, "in"), []byte("from the host\n"), 0o644)
	os.Chown(vol, u.uid, u.gid)
	os.Chown(filepath.Join(vol, "in"), u.uid, u.gid)
	c := "rl-" + name
	defer u.podmanTimeout(cmdTimeout(mode), "--runtime", rt, "rm", "-f", "-t", "0", c)
	args := []string{"run", "-d", "--name", c, "-v", vol + ":/vol"}
	args = append(args, network...)
	hostPort := 0
	if port {
		hostPort = freePort(t)
		args = append(args, "-p", fmt.Sprintf("127.0.0.1:%d:8080", hostPort))
	}
	id := podman(append(args, imageName, "sh", "-c", httpdScript)...)
	say("status", podman("inspect", "--format", "{{.State.Status}}", c))

	// The state is the user's, under its runtime directory.
	u.expectStateRoot(t, rt)
	if st := u.stateEntries(t, rt); !slices.Contains(st, id) {
		t.Errorf("%s: state root %v does not hold the container %s", name, st, id)
	}

	say("exec", podman("exec", c, "sh", "-c", "id -u; cat /vol/in; echo from-the-container > /vol/out"))
	if fi, err := os.Stat(filepath.Join(vol, "out")); err != nil {
		t.Errorf("%s: the container's file is not in the volume: %v", name, err)
	} else {
		// Root in the container is the user outside.
		say("volume file owner is the user", strconv.FormatBool(int(fi.Sys().(*syscall.Stat_t).Uid) == u.uid))
	}
	if port {
		var body string
		var err error
		waitFor(30*time.Second, func() bool {
			body, err = httpGet(fmt.Sprintf("http://127.0.0.1:%d/", hostPort))
			return err == nil
		})
		if err != nil {
			t.Errorf("%s: published port %d: %v", name, hostPort, err)
		}
		say("published port", body)
	}
	// Without a cgroup of its own (cgroup v1 here) a limit fails as
	// runc's does; where the user has a delegated cgroup both apply it.
	// A VM's guest applies it in the guest.
	r := u.podmanTimeout(cmdTimeout(mode), "--runtime", rt, "update", "--memory", "64m", c)
	refused := r.code != 0 && strings.Contains(r.stderr, "cannot set memory limit")
	if isVM {
		limit := podman("exec", c, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
		if r.code != 0 || limit != "67108864" {
			t.Errorf("%s: update --memory 64m: exit %d (%s), the guest's limit %q, want it applied", name, r.code, strings.TrimSpace(r.stderr), limit)
		}
	} else if refused != !rlDelegated() {
		t.Errorf("%s: update --memory: exit %d, refused %v: %s", name, r.code, refused, r.stderr)
	}
	podman("stop", "-t", "1", c)
	say("stopped", podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", c))
	podman("rm", c)
	if left := u.stateEntries(t, rt); len(left) != 0 {
		t.Errorf("%s left %v in its state root after rm", name, left)
	}
	if isVM {
		u.expectNoVMLeft(t)
	}
	t.Logf("%s: %s", name, strings.Join(a, " | "))
	return a
}

// rlDelegated says whether this host gives an ordinary user cgroups of
// its own (cgroup v2 with a delegated subtree): not on cgroup v1.
func rlDelegated() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil && os.Getenv("DBUS_SESSION_BUS_ADDRESS") != ""
}

// expectNoVMLeft checks that no VM of the user outlives its container: no
// QEMU (it runs as the top ID of the user's subordinate range), no shim,
// and in the user's cache (where the initrd and templates must be, and
// not in the system's) no half-made template or template lock held.
func (u *rlUser) expectNoVMLeft(t *testing.T) {
	t.Helper()
	waitFor(10*time.Second, func() bool { return len(u.vmProcs()) == 0 })
	if p := u.vmProcs(); len(p) != 0 {
		t.Errorf("left running after rm: %v", p)
	}
	cache := filepath.Join(u.home, ".cache", "runh")
	if m, _ := filepath.Glob(filepath.Join(cache, "initrd-*")); len(m) == 0 {
		t.Errorf("no initrd in the user's cache %s", cache)
	}
	ents, err := os.ReadDir(filepath.Join(cache, "templates"))
	if err != nil {
		t.Errorf("templates: %v", err)
	}
	for _, e := range ents {
		p := filepath.Join(cache, "templates", e.Name())
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("a half-made template is left: %s", p)
		}
		if strings.HasSuffix(e.Name(), ".lock") {
			f, err := os.Open(p)
			if err == nil {
				if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
					t.Errorf("template lock %s still held", p)
				}
				f.Close()
			}
		}
	}
	// The system's cache holds nothing of the user's.
	filepath.WalkDir("/var/cache/runh", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if id := int(fi.Sys().(*syscall.Stat_t).Uid); id == u.uid || (id >= u.first && id <= u.last) {
				t.Errorf("%s belongs to the rootless user", p)
			}
		}
		return nil
	})
}

// vmProcs lists the user's QEMU and shim processes ("pid args").
func (u *rlUser) vmProcs() []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		id := procRealUID(pid)
		if id != u.uid && (id < u.first || id > u.last) {
			continue
		}
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if strings.Contains(args[0], "qemu") || len(args) > 1 && args[1] == "shim" {
			out = append(out, fmt.Sprintf("%d %s", pid, strings.Join(args, " ")))
		}
	}
	return out
}

// rootlessHypervisorDirect checks that hypervisor isolation, which an
// ordinary user outside a user namespace of its own cannot have (the
// shim's namespaces and mounts need one), is refused in one line with
// nothing left behind.
func rootlessHypervisorDirect(t *testing.T, u *rlUser) {
	want := "runh: hypervisor isolation: " + rlNeedsUserNS + ", as rootless podman runs its runtime in; use process isolation"
	r := u.run(runOpts{}, runtimeBin, "--isolation", "hypervisor", "run", "--bundle", u.bundle(t, "bundle", false), "rl-vm")
	if r.code == 0 || strings.TrimSpace(r.stderr) != want {
		t.Errorf("runh --isolation hypervisor run as a user: want %q, got %s", want, r)
	}
	if left := u.stateEntries(t, runtimeBin); len(left) != 0 {
		t.Errorf("refused create left %v in the state root", left)
	}
}
