package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestLifecycle walks one container through create, start, kill and delete,
// checking state, the pid file, stdio inheritance, every signal spelling and
// that delete leaves nothing behind.
func TestLifecycle(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.id("life")
		// The init traps TERM so each delivered signal is visible as a line.
		bundle := x.bundle("life", func(s *specs.Spec) {
			s.Annotations["org.example.test"] = "lifecycle"
		}, "sh", "-c", `trap 'echo got-term' TERM; echo hello-from-init; while :; do sleep 0.1; done`)
		out := createFile(t, x.dir, "stdout")
		pidFile := filepath.Join(x.dir, "pid")
		before := time.Now().Add(-2 * time.Second)
		x.create(id, bundle, out, "--pid-file", pidFile)

		s := x.state(id)
		if s.Status != "created" {
			t.Errorf("status after create = %q, want created", s.Status)
		}
		if s.OCIVersion == "" {
			t.Errorf("state: empty ociVersion")
		}
		if s.ID != id {
			t.Errorf("state id = %q, want %q", s.ID, id)
		}
		if s.Pid <= 0 || !pidAlive(s.Pid) {
			t.Fatalf("state pid %d is not a live process", s.Pid)
		}
		if pf := readPidFile(t, pidFile); pf != s.Pid {
			t.Errorf("--pid-file has %d, state pid is %d", pf, s.Pid)
		}
		if s.Bundle != bundle {
			t.Errorf("state bundle = %q, want %q", s.Bundle, bundle)
		}
		if s.Rootfs != rootfsDir {
			t.Errorf("state rootfs = %q, want %q", s.Rootfs, rootfsDir)
		}
		created, err := time.Parse(time.RFC3339Nano, s.Created)
		if err != nil || created.Before(before) || created.After(time.Now().Add(2*time.Second)) {
			t.Errorf("state created = %q (parse err %v), want an RFC3339 time of now", s.Created, err)
		}
		if s.Annotations["org.example.test"] != "lifecycle" {
			t.Errorf("state annotations = %v, want org.example.test=lifecycle", s.Annotations)
		}
		if s.Owner == nil || (*s.Owner != "" && *s.Owner != "root") {
			t.Errorf("state owner = %v, want field present and \"\" or root", s.Owner)
		}
		if strings.Contains(readFile(out.Name()), "hello-from-init") {
			t.Errorf("container ran before start: %q", readFile(out.Name()))
		}
		cgroups, err := ownCgroupDirs(s.Pid)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pid %d, cgroups %v", s.Pid, cgroups)
		// The container's pid (the shim, with a VM) is accounted in a
		// cgroup of the container's own on the host.
		if len(cgroups) == 0 {
			t.Errorf("state pid %d is in no cgroup of its own on the host (same as the test's)", s.Pid)
		}

		x.must("start", id)
		if s2 := x.waitStatus(id, "running"); s2.Pid != s.Pid || !pidAlive(s2.Pid) {
			t.Errorf("running: pid %d (alive %v), want %d as at create", s2.Pid, pidAlive(s2.Pid), s.Pid)
		}
		// create's stdout is the container's when there is no terminal.
		waitFileCount(t, out.Name(), "hello-from-init", 1, x.timeout())

		r := x.mustFail("delete", id)
		if st := x.state(id); st.Status != "running" {
			t.Errorf("after refused delete: status %q, want running (%v)", st.Status, r)
		}

		for i, sig := range []string{"TERM", "SIGTERM", "15", ""} {
			args := []string{"kill", id}
			if sig != "" {
				args = append(args, sig) // "" checks the default, SIGTERM
			}
			x.must(args...)
			waitFileCount(t, out.Name(), "got-term", i+1, x.timeout())
		}
		x.must("kill", id, "KILL")
		x.waitStatus(id, "stopped")

		// Wrong-state verbs on the stopped container.
		x.mustFail("exec", id, "true")
		x.mustFail("start", id)

		x.must("delete", id)
		x.assertGone(id)
		x.waitPidGone(s.Pid, 10*time.Second)
		for _, d := range cgroups {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("cgroup %s left after delete", d)
			}
		}
		if ids := x.listIDs(); len(ids) != 0 {
			t.Errorf("list after delete = %v, want empty", ids)
		}
	})
}

// TestDeleteForce removes a running container with delete --force.
func TestDeleteForce(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.startContainer("force", nil, "sleep", "1000")
		s := x.state(id)
		cgroups, err := ownCgroupDirs(s.Pid)
		if err != nil {
			t.Fatal(err)
		}
		x.mustFail("delete", id)
		x.must("delete", "--force", id)
		x.assertGone(id)
		x.waitPidGone(s.Pid, 10*time.Second)
		for _, d := range cgroups {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("cgroup %s left after delete --force", d)
			}
		}
		if leaks := processesMentioning(x.root); len(leaks) > 0 {
			t.Errorf("processes naming %s left: %v", x.root, leaks)
		}
	})
}

// TestKillAll signals every process of the container, not only its init.
func TestKillAll(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		// Init ignores nothing; the children are what --all must reach.
		id := x.startContainer("killall", nil, "sh", "-c", "sleep 1000 & sleep 1000 & wait")
		var pids []int
		deadline := time.Now().Add(x.timeout())
		for len(pids) < 3 && time.Now().Before(deadline) {
			pids = x.psPids(id)
			time.Sleep(100 * time.Millisecond)
		}
		if len(pids) < 3 {
			t.Fatalf("ps shows %v, want init and two sleeps", pids)
		}
		x.must("kill", "--all", id, "KILL")
		x.waitStatus(id, "stopped")
		if x.mode == ModeProcess {
			for _, p := range pids {
				x.waitPidGone(p, 10*time.Second)
			}
		}
		x.must("delete", id)
		x.assertGone(id)
	})
}

// psPids returns the pids `ps --format json` reports.
func (x *h) psPids(id string) []int {
	x.t.Helper()
	r := x.must("ps", "--format", "json", id)
	var pids []int
	if err := jsonUnmarshal(r.stdout, &pids); err != nil {
		x.t.Fatalf("ps --format json: %v: %q", err, r.stdout)
	}
	return pids
}

// TestConcurrentCreate races several creates of one ID: exactly one wins,
// the others fail with one line and do not disturb the winner.
func TestConcurrentCreate(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		const n = 5
		id := x.id("race")
		bundle := x.bundle("race", nil, "sleep", "100000")
		x.cleanupContainer(id)
		results := make(chan result, n)
		for i := 0; i < n; i++ {
			go func() {
				_, wait := x.start(opts{}, "create", "--bundle", bundle, id)
				results <- wait()
			}()
		}
		// runc 1.1 loses this race (a loser removes the winner's state):
		// with runc the findings are logged and the test skipped.
		failed := false
		fail := func(format string, args ...any) {
			failed = true
			if isRunc {
				t.Logf("runc differs: "+format, args...)
			} else {
				t.Errorf(format, args...)
			}
		}
		wins := 0
		for i := 0; i < n; i++ {
			r := <-results
			switch {
			case r.code == 0:
				wins++
			case r.err != nil:
				fail("create did not finish: %v", r)
			case len(strings.Split(strings.TrimSpace(r.stderr), "\n")) != 1:
				fail("losing create: want one stderr line: %v", r)
			}
		}
		if wins != 1 {
			fail("%d of %d concurrent creates of one ID succeeded, want 1", wins, n)
		}
		if ids := x.listIDs(); len(ids) != 1 || ids[0] != id {
			fail("list = %v, want [%s]", ids, id)
		}
		if failed {
			if isRunc {
				t.Skip("runc 1.1 mishandles concurrent creates of one ID (see log)")
			}
			t.FailNow()
		}
		x.must("start", id)
		x.waitStatus(id, "running")
		x.must("delete", "--force", id)
		x.assertGone(id)
	})
}

// TestKillPaused: a paused container killed with kill --all KILL stops,
// and one removed with delete --force goes, leaving no cgroup (the
// shim's, in hypervisor isolation). On cgroup v2 a frozen process dies
// from SIGKILL at once, and an empty cgroup left frozen read as paused
// for ever.
func TestKillPaused(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		for _, how := range []string{"kill-all", "delete-force"} {
			t.Run(how, func(t *testing.T) {
				x := x.at(t)
				id := x.startContainer("paused-"+how, nil, "sh", "-c", "sleep 1000 & sleep 1000")
				pid := x.state(id).Pid
				cgroups, err := ownCgroupDirs(pid)
				if err != nil || len(cgroups) == 0 {
					t.Fatalf("container's cgroups: %v %v", cgroups, err)
				}
				x.must("pause", id)
				x.waitStatus(id, "paused")
				if how == "kill-all" {
					x.must("kill", "--all", id, "KILL")
					x.waitStatus(id, "stopped")
					x.must("delete", id)
				} else {
					x.must("delete", "--force", id)
				}
				x.assertGone(id)
				x.waitPidGone(pid, 10*time.Second)
				for _, d := range cgroups {
					if _, err := os.Stat(d); err == nil {
						t.Errorf("cgroup %s left behind", d)
					}
				}
			})
		}
	})
}
