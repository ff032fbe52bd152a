package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"github.com/opencontainers/cgroups"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestListPsPauseEvents covers list, ps, pause/resume and events on one
// container whose init prints a counter, so freezing is observable in every
// mode from the host.
func TestListPsPauseEvents(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.id("pause")
		bundle := x.bundle("pause", nil, "sh", "-c", `i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.1; done`)
		out := createFile(t, x.dir, "stdout")
		x.create(id, bundle, out)
		x.must("start", id)
		s := x.waitStatus(id, "running")
		waitFileCount(t, out.Name(), "tick-", 3, x.timeout())
		parent := x
		sub := func(name string, f func(t *testing.T, x *h)) {
			t.Run(name, func(t *testing.T) { f(t, parent.at(t)) })
		}

		sub("list", func(t *testing.T, x *h) {
			r := x.must("list")
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[0], "STATUS") {
				t.Fatalf("list table: want a header and one row: %q", r.stdout)
			}
			row := strings.Fields(lines[1])
			if len(row) < 4 || row[0] != id || row[1] != strconv.Itoa(s.Pid) || row[2] != "running" || row[3] != bundle {
				t.Errorf("list row %q, want %s %d running %s ...", lines[1], id, s.Pid, bundle)
			}
			if r2 := x.must("list", "--format", "table"); r2.stdout != r.stdout {
				t.Errorf("list --format table %q differs from list %q", r2.stdout, r.stdout)
			}
			r = x.must("list", "--format", "json")
			var l []state
			if err := json.Unmarshal([]byte(r.stdout), &l); err != nil || len(l) != 1 {
				t.Fatalf("list --format json: %v: %q", err, r.stdout)
			}
			if l[0].ID != id || l[0].Status != "running" || l[0].Pid != s.Pid || l[0].Bundle != bundle {
				t.Errorf("list json entry %+v, want id %s running pid %d", l[0], id, s.Pid)
			}
			if r := x.must("list", "--quiet"); r.stdout != id+"\n" {
				t.Errorf("list --quiet = %q, want %q", r.stdout, id+"\n")
			}
		})
		sub("ps", func(t *testing.T, x *h) {
			pids := x.psPids(id)
			if len(pids) == 0 {
				t.Fatalf("ps --format json: no pids")
			}
			if x.mode == ModeProcess && !containsInt(pids, s.Pid) {
				t.Errorf("ps pids %v lack init pid %d", pids, s.Pid)
			}
			r := x.must("ps", id)
			if !strings.Contains(firstLine(r.stdout), "PID") || !strings.Contains(r.stdout, "sh") {
				t.Errorf("ps table: want a PID header and the sh init: %q", r.stdout)
			}
			// Extra arguments go to ps(1).
			r = x.must("ps", id, "-o", "pid,comm")
			if !strings.Contains(firstLine(r.stdout), "PID") || !strings.Contains(r.stdout, "sh") {
				t.Errorf("ps -o pid,comm: %q", r.stdout)
			}
		})
		sub("events-stats", func(t *testing.T, x *h) {
			r := x.must("events", "--stats", id)
			var ev struct {
				Type string                     `json:"type"`
				ID   string                     `json:"id"`
				Data map[string]json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &ev); err != nil {
				t.Fatalf("events --stats: %v: %q", err, r.stdout)
			}
			if ev.Type != "stats" || ev.ID != id || ev.Data["pids"] == nil {
				t.Errorf("events --stats = %q, want type stats, id %s, pids data", r.stdout, id)
			}
		})
		sub("events-stream", func(t *testing.T, x *h) {
			// Without --stats events streams until the container stops: read
			// the first line, then stop our events process.
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			c, wait := x.start(opts{stdout: pw}, "events", "--interval", "1s", id)
			pw.Close()
			line := make(chan string, 1)
			go func() {
				l, _ := bufio.NewReader(pr).ReadString('\n')
				line <- l
			}()
			select {
			case l := <-line:
				var ev struct{ Type, ID string }
				if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Type != "stats" || ev.ID != id {
					t.Errorf("events line %q (%v), want a stats event for %s", l, err, id)
				}
			case <-time.After(x.timeout()):
				t.Errorf("events: no line within %v", x.timeout())
			}
			c.Process.Kill()
			wait()
		})
		sub("pause-resume", func(t *testing.T, x *h) {
			x.must("pause", id)
			if st := x.state(id); st.Status != "paused" {
				t.Errorf("status after pause %q, want paused", st.Status)
			}
			if r := x.must("list", "--format", "json"); !strings.Contains(r.stdout, `"paused"`) {
				t.Errorf("list does not show paused: %q", r.stdout)
			}
			// Let output in flight land, then the counter must stand still.
			time.Sleep(300 * time.Millisecond)
			frozen := readFile(out.Name())
			time.Sleep(1500 * time.Millisecond)
			if now := readFile(out.Name()); now != frozen {
				t.Errorf("counter advanced while paused: %d -> %d bytes", len(frozen), len(now))
			}
			x.mustFail("pause", id) // already paused
			x.must("resume", id)
			if st := x.state(id); st.Status != "running" {
				t.Errorf("status after resume %q, want running", st.Status)
			}
			n := strings.Count(frozen, "tick-")
			waitFileCount(t, out.Name(), "tick-", n+3, x.timeout())
			x.mustFail("resume", id) // not paused
		})

		x.must("delete", "--force", id)
		x.assertGone(id)
	})
}

// TestUpdate changes resources with each form of update and reads the
// values back from inside the container (cgroup v1 or v2 names alike), and
// from the host's cgroup files: all in process mode, the CPU ones with
// hypervisor isolation.
func TestUpdate(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		// A cgroup namespace makes /sys/fs/cgroup the container's own cgroup.
		id := x.startContainer("update", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
		}, "sleep", "100000")
		pid := x.state(id).Pid

		// check reads the cgroup files inside the container; in process
		// mode the host's files of the same cgroup must agree.
		check := func(t *testing.T, want []cgExpect) {
			t.Helper()
			var files []string
			for _, w := range want {
				files = append(files, w.v1, w.v2)
			}
			r := x.at(t).must("exec", id, "sh", "-c",
				`cd /sys/fs/cgroup; for f in `+strings.Join(files, " ")+`; do [ -f $f ] && echo "$f=$(cat $f)"; done; true`)
			got := map[string]string{}
			for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
				if k, v, ok := strings.Cut(l, "="); ok {
					got[k] = v
				}
			}
			for _, w := range want {
				if v, ok := got[w.v1]; ok {
					if v != w.v1Val {
						t.Errorf("inside the container %s = %q, want %q", w.v1, v, w.v1Val)
					}
				} else if v, ok := got[w.v2]; ok {
					if !w.v2OK(v) {
						t.Errorf("inside the container %s = %q, want %s", w.v2, v, w.v2Want())
					}
				} else {
					t.Errorf("inside the container neither %s nor %s exists (read %v)", w.v1, w.v2, got)
				}
				ctrl, file, _ := strings.Cut(w.v1, "/")
				// A VM's host cgroup (its shim and QEMU) has the
				// container's CPU settings, not its memory or pids ones
				// (docs/hypervisor.md).
				if x.mode != ModeProcess && ctrl != "cpu" && ctrl != "cpuset" {
					continue
				}
				p, err := hostCgroupFile(pid, ctrl, file, w.v2)
				if err != nil {
					t.Error(err)
				} else if v := strings.TrimSpace(readFile(p)); cgroupV2Host() && !w.v2OK(v) {
					t.Errorf("host %s = %q, want %s", p, v, w.v2Want())
				} else if !cgroupV2Host() && v != w.v1Val {
					t.Errorf("host %s = %q, want %q", p, v, w.v1Val)
				}
			}
		}
		basic := func(mem, pids int64, shares uint64) []cgExpect {
			m, p := strconv.FormatInt(mem, 10), strconv.FormatInt(pids, 10)
			// v2 gets libcontainer's conversion from shares to weight,
			// the one create uses too.
			weight := cgExpect{v1: "cpu/cpu.shares", v1Val: strconv.FormatUint(shares, 10),
				v2: "cpu.weight", v2Val: strconv.FormatUint(cgroups.ConvertCPUSharesToCgroupV2Value(shares), 10)}
			if isRunc {
				// Older runc (Debian 13's 1.1) converts linearly (512 ->
				// 20, not 59): the reference may give either, runh the
				// new one.
				weight.v2Also = strconv.FormatUint(1+(shares-2)*9999/262142, 10)
			}
			return []cgExpect{
				{v1: "memory/memory.limit_in_bytes", v1Val: m, v2: "memory.max", v2Val: m},
				{v1: "pids/pids.max", v1Val: p, v2: "pids.max", v2Val: p},
				weight,
			}
		}

		t.Run("flags", func(t *testing.T) {
			// runc spells the CPU shares flag --cpu-share.
			x.at(t).must("update", "--memory", "67108864", "--pids-limit", "77", "--cpu-share", "512", id)
			check(t, basic(64<<20, 77, 512))
		})
		t.Run("cpu-flags", func(t *testing.T) {
			x.at(t).must("update", "--cpu-period", "100000", "--cpu-quota", "50000", "--cpuset-cpus", "0", id)
			check(t, []cgExpect{
				{"cpu/cpu.cfs_period_us", "100000", "cpu.max", "50000 100000", ""},
				{"cpu/cpu.cfs_quota_us", "50000", "cpu.max", "50000 100000", ""},
				{"cpuset/cpuset.cpus", "0", "cpuset.cpus", "0", ""},
			})
		})
		t.Run("memory-swap", func(t *testing.T) {
			x.at(t).must("update", "--memory", "50331648", "--memory-swap", "100663296", id)
			check(t, []cgExpect{
				{"memory/memory.limit_in_bytes", "50331648", "memory.max", "50331648", ""},
				// v2 limits swap alone: total minus memory.
				{"memory/memory.memsw.limit_in_bytes", "100663296", "memory.swap.max", "50331648", ""},
			})
		})
		t.Run("resources-file", func(t *testing.T) {
			res := fmt.Sprintf(`{"memory":{"limit":%d,"swap":%d},"pids":{"limit":66},"cpu":{"shares":256}}`, 96<<20, 192<<20)
			file := filepath.Join(x.dir, "res.json")
			if err := os.WriteFile(file, []byte(res), 0o644); err != nil {
				t.Fatal(err)
			}
			x.at(t).must("update", "--resources", file, id)
			check(t, basic(96<<20, 66, 256))
		})
		t.Run("resources-stdin", func(t *testing.T) {
			res := fmt.Sprintf(`{"memory":{"limit":%d},"pids":{"limit":55},"cpu":{"shares":1024}}`, 80<<20)
			if r := x.at(t).runO(opts{stdin: strings.NewReader(res)}, "update", "--resources", "-", id); r.code != 0 {
				t.Fatalf("update --resources -: %v", r)
			}
			check(t, basic(80<<20, 55, 1024))
		})
		t.Run("bad-value", func(t *testing.T) {
			x.at(t).mustFail("update", "--pids-limit", "lots", id)
			check(t, basic(80<<20, 55, 1024))
		})

		x.must("delete", "--force", id)
		x.assertGone(id)
	})
}

// TestFeatures checks features prints the runtime-spec features JSON.
func TestFeatures(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		r := x.must("features")
		var f struct {
			OCIVersionMin string            `json:"ociVersionMin"`
			OCIVersionMax string            `json:"ociVersionMax"`
			Hooks         []string          `json:"hooks"`
			MountOptions  []string          `json:"mountOptions"`
			Annotations   map[string]string `json:"annotations"`
			Linux         *struct {
				Namespaces []string `json:"namespaces"`
			} `json:"linux"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &f); err != nil {
			t.Fatalf("features: %v: %q", err, r.stdout)
		}
		if !strings.HasPrefix(f.OCIVersionMin, "1.") || !strings.HasPrefix(f.OCIVersionMax, "1.") {
			t.Errorf("features ociVersionMin %q / ociVersionMax %q", f.OCIVersionMin, f.OCIVersionMax)
		}
		if f.Linux == nil || !contains(f.Linux.Namespaces, "pid") {
			t.Errorf("features: linux.namespaces lacks pid: %q", r.stdout)
		}
	})
}

// TestSpec checks spec writes a default config.json that runs as it is
// (a terminal shell over the console socket) and refuses to overwrite it.
func TestSpec(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		bundle := filepath.Join(x.dir, "specbundle")
		if err := os.Mkdir(bundle, 0o755); err != nil {
			t.Fatal(err)
		}
		x.must("spec", "--bundle", bundle)
		file := filepath.Join(bundle, "config.json")
		var raw map[string]any
		if err := json.Unmarshal([]byte(readFile(file)), &raw); err != nil {
			t.Fatalf("spec wrote bad JSON: %v", err)
		}
		var s specs.Spec
		if err := json.Unmarshal([]byte(readFile(file)), &s); err != nil {
			t.Fatal(err)
		}
		if s.Version == "" || s.Root == nil || s.Root.Path != "rootfs" || s.Process == nil ||
			!s.Process.Terminal || len(s.Process.Args) != 1 || s.Process.Args[0] != "sh" {
			t.Errorf("spec: want runc's default (rootfs, terminal sh), got %s", readFile(file))
		}
		x.mustFail("spec", "--bundle", bundle) // config.json exists

		// The config runs unchanged but for the isolation annotation.
		if x.mode != ModeProcess {
			ann, _ := raw["annotations"].(map[string]any)
			if ann == nil {
				ann = map[string]any{}
			}
			ann[IsolationAnnotation] = x.mode
			raw["annotations"] = ann
			data, _ := json.Marshal(raw)
			if err := os.WriteFile(file, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		rootfs := filepath.Join(bundle, "rootfs")
		if err := os.Mkdir(rootfs, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(rootfsDir, rootfs, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(rootfs, unix.MNT_DETACH) })

		id := x.id("spec")
		cs := newConsoleSocket(t, x)
		x.create(id, bundle, nil, "--console-socket", cs.path)
		p := cs.receive(t, x.timeout())
		x.must("start", id)
		p.write(t, "echo spec-''ok; exit 0\n")
		p.waitFor(t, "spec-ok", x.timeout())
		x.waitStatus(id, "stopped")
		x.must("delete", id)
		x.assertGone(id)

		rootless := filepath.Join(x.dir, "rootless")
		if err := os.Mkdir(rootless, 0o755); err != nil {
			t.Fatal(err)
		}
		x.must("spec", "--rootless", "--bundle", rootless)
		var rs specs.Spec
		if err := json.Unmarshal([]byte(readFile(filepath.Join(rootless, "config.json"))), &rs); err != nil {
			t.Fatal(err)
		}
		userns := false
		for _, ns := range rs.Linux.Namespaces {
			userns = userns || ns.Type == specs.UserNamespace
		}
		if !userns || len(rs.Linux.UIDMappings) == 0 {
			t.Errorf("spec --rootless: want a user namespace with uid mappings")
		}
	})
}

// cgExpect is one cgroup value as cgroup v1 and v2 name it; v2Also, when
// set, is another v2 value accepted.
type cgExpect struct{ v1, v1Val, v2, v2Val, v2Also string }

func (e cgExpect) v2OK(v string) bool { return v == e.v2Val || (e.v2Also != "" && v == e.v2Also) }

func (e cgExpect) v2Want() string {
	if e.v2Also != "" {
		return strconv.Quote(e.v2Val) + " or " + strconv.Quote(e.v2Also)
	}
	return strconv.Quote(e.v2Val)
}

func containsInt(list []int, n int) bool {
	for _, l := range list {
		if l == n {
			return true
		}
	}
	return false
}
