package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runh-project/runh/integration"
	"golang.org/x/sys/unix"
)

// The userland section: a real program's work (Python's startup, a tree
// walk, reading, writing, a CPU-bound job) on a Debian minbase rootfs, in
// both isolation modes with runc beside. The steps are timed inside one
// container per contender and round, so a VM's boot is not part of them;
// the whole `run` of a small Python script is timed apart.

const (
	userland = "userland" // report section

	rowULPyFirst   = "`python3 -c pass`, first in the container"
	rowULPyAgain   = "`python3 -c pass`, again"
	rowULWalk      = "`find / -xdev`"
	rowULRead1     = "read files under /usr/lib, first time"
	rowULRead2     = "… the same files again"
	rowULWriteRoot = "write 64 MiB + fsync, into the rootfs"
	rowULWriteVol  = "write 64 MiB + fsync, into a bind-mounted volume"
	rowULCPU       = "CPU-bound: 20k sqlite inserts + sha256 (the TCG floor)"
	rowULWhole     = "whole `run` of a small Python script (sqlite, 1000 rows)"

	ulPyAgain  = 5        // repeated starts of python3 per container
	ulCPURuns  = 5        // runs of the CPU-bound job per container
	ulReadSize = 50 << 20 // bytes read, then read again
	ulVolume   = "/data"  // where the volume is mounted in the container

	// ulOverCPU names the ratio of VM/process over the CPU job's.
	ulOverCPU = "÷ CPU-bound's"
)

// ulSteps maps the keys the step script prints to rows, in table order.
var ulSteps = []struct{ key, row string }{
	{"py-first", rowULPyFirst}, {"py-again", rowULPyAgain}, {"walk", rowULWalk},
	{"read1", rowULRead1}, {"read2", rowULRead2},
	{"write-root", rowULWriteRoot}, {"write-vol", rowULWriteVol}, {"cpu", rowULCPU},
}

// ulScript runs in the container (bash: minbase has no `time` binary,
// but bash's keyword times a command without a shell of its own). It
// prints "key seconds" per step, "key value" for facts, and "error key:
// message" and exits 1 if a step fails; ulPython does the rest.
var ulScript = fmt.Sprintf(`set -u
TIMEFORMAT=%%R
step() {
	local key=$1; shift
	if ! { time "$@" >/tmp/step.out 2>/tmp/step.err; } 2>/tmp/step.time; then
		echo "error $key: $(tail -n 1 /tmp/step.err)"
		exit 1
	fi
	echo "$key $(cat /tmp/step.time)"
}
step py-first python3 -c pass
for ((i = 0; i < %d; i++)); do step py-again python3 -c pass; done
step walk find / -xdev
echo "walk-entries $(wc -l </tmp/step.out)"
echo "python $(python3 -c 'import sys; print(sys.version.split()[0])')"
exec python3 -c "$RUNH_BENCH_PY"
`, ulPyAgain)

// ulPython times the rest with time.perf_counter. The files read are
// those under /usr/lib in path order, up to the size, but the ones this
// process has mapped (its own libraries), which an earlier step has
// surely read already. The CPU job imports its modules before the clock
// starts and keeps its database in memory.
var ulPython = fmt.Sprintf(`import os, sys, time
def step(key, f):
    t0 = time.perf_counter()
    f()
    print(key, "%%.6f" %% (time.perf_counter() - t0), flush=True)
mapped = set()
for line in open("/proc/self/maps"):
    f = line.split(maxsplit=5)
    if len(f) == 6 and f[5].startswith("/"):
        mapped.add(f[5].strip())
files, size = [], 0
for d, dirs, names in os.walk("/usr/lib"):
    dirs.sort()
    for n in sorted(names):
        p = os.path.join(d, n)
        if os.path.islink(p) or not os.path.isfile(p) or os.path.realpath(p) in mapped:
            continue
        files.append(p)
        size += os.path.getsize(p)
        if size >= %[1]d:
            break
    if size >= %[1]d:
        break
print("read-files", len(files))
print("read-bytes", size, flush=True)
buf = bytearray(1 << 20)
def read():
    for p in files:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
step("read1", read)
step("read2", read)
block = os.urandom(1 << 20)
for key, path in (("write-root", "/var/tmp/runh-bench.dat"), ("write-vol", "%[2]s/runh-bench.dat")):
    def write():
        with open(path, "wb") as f:
            for _ in range(64):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
    step(key, write)
    os.unlink(path)
import hashlib, sqlite3
def cpu():
    db = sqlite3.connect(":memory:")
    db.execute("create table t (k integer primary key, h text)")
    for i in range(20000):
        db.execute("insert into t values (?, ?)", (i, hashlib.sha256(str(i).encode()).hexdigest()))
    db.commit()
    n, = db.execute("select count(*) from t").fetchone()
    assert n == 20000, n
    db.close()
for _ in range(%[3]d):
    step("cpu", cpu)
`, ulReadSize, ulVolume, ulCPURuns)

// ulWhole is the small script whose whole `run` is timed, and what it
// prints.
const (
	ulWhole = `import hashlib, json, sqlite3
db = sqlite3.connect(":memory:")
db.execute("create table t (k integer primary key, h text)")
db.executemany("insert into t values (?, ?)", ((i, hashlib.sha256(b"%d" % i).hexdigest()) for i in range(1000)))
print(json.dumps({"rows": db.execute("select count(*) from t").fetchone()[0]}))
`
	ulWholeOut = `{"rows": 1000}`
)

// UserlandInfo is what the userland figures ran on.
type UserlandInfo struct {
	Rootfs    string            `json:"rootfs"`
	Python    string            `json:"python,omitempty"`
	Entries   map[string]string `json:"walkEntries,omitempty"` // `find / -xdev | wc -l`, by contender
	ReadFiles string            `json:"readFiles,omitempty"`
	ReadBytes int64             `json:"readBytes,omitempty"`
	Layout    string            `json:"layout"`
}

// ulOutput is what one run of the step script printed.
type ulOutput struct {
	steps map[string][]float64
	facts map[string]string
}

// parseUserland reads the step script's output: "key seconds" for the
// keys of ulSteps, "key value" facts otherwise; an "error" line or a
// missing step is an error.
func parseUserland(out string) (*ulOutput, error) {
	o := &ulOutput{steps: map[string][]float64{}, facts: map[string]string{}}
	known := map[string]bool{}
	for _, s := range ulSteps {
		known[s.key] = true
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		key, val, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch {
		case key == "":
		case key == "error":
			return nil, errors.New("step " + val)
		case known[key]:
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("step %s: bad time %q", key, val)
			}
			o.steps[key] = append(o.steps[key], v)
		default:
			o.facts[key] = strings.TrimSpace(val)
		}
	}
	for _, s := range ulSteps {
		if len(o.steps[s.key]) == 0 {
			return nil, fmt.Errorf("no time for step %s in %q", s.key, oneLine(out))
		}
	}
	return o, nil
}

// cached runs a script that builds something once with debootstrap and
// caches it (scripts/mkdebian.sh, scripts/mkapp.sh), and returns the path
// it prints last.
func (b *bench) cached(script string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Minute) // debootstrap, once
	defer cancel()
	cmd := exec.CommandContext(ctx, script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %v", script, err)
	}
	return lastLine(out), nil
}

// debianRootfs returns the Debian rootfs: -userland-rootfs, or what
// scripts/mkdebian.sh prints (it builds and caches it once).
func (b *bench) debianRootfs() (string, error) {
	root := b.c.UserlandRootfs
	if root == "" {
		var err error
		if root, err = b.cached(b.c.Mkdebian); err != nil {
			return "", err
		}
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/python3")); err != nil {
		return "", fmt.Errorf("no python3 in the Debian rootfs: %w", err)
	}
	return root, nil
}

// ulContender is one contender's bundles: the steps and the whole script.
type ulContender struct {
	rt           *runtime
	steps, whole string
}

// ulPrepare gives contender r a writable rootfs as an engine would, an
// overlay whose lower layer is the cached Debian tree (left unchanged)
// and whose upper layer is the contender's own, plus a volume directory,
// and writes its two bundles.
func (b *bench) ulPrepare(r *runtime, lower string) (*ulContender, error) {
	if strings.ContainsAny(lower, ",:") {
		return nil, fmt.Errorf("rootfs path %q has a character overlayfs options cannot carry", lower)
	}
	dir := filepath.Join(b.dir, "userland-"+r.Name)
	upper, work, root, vol := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "rootfs"), filepath.Join(dir, "volume")
	for _, d := range []string{upper, work, root, vol} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", root, "overlay", 0, opts); err != nil {
		return nil, fmt.Errorf("overlay on %s: %w", root, err)
	}
	b.mounts = append(b.mounts, root)
	c := &ulContender{rt: r, steps: filepath.Join(dir, "bundle-steps"), whole: filepath.Join(dir, "bundle-whole")}
	spec := func(env ...string) func(*specs.Spec) {
		return func(s *specs.Spec) {
			s.Version = "1.0.2" // as the other bundles
			s.Root.Readonly = false
			s.Process.Env = append(s.Process.Env, env...)
			s.Mounts = append(s.Mounts, specs.Mount{Destination: ulVolume, Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
		}
	}
	if err := integration.NewBundle(c.steps, root, "", spec("RUNH_BENCH_PY="+ulPython), "/bin/bash", "-c", ulScript); err != nil {
		return nil, err
	}
	if err := integration.NewBundle(c.whole, root, "", spec(), "/usr/bin/python3", "-c", ulWhole); err != nil {
		return nil, err
	}
	return c, nil
}

func (b *bench) benchUserland() error {
	root, err := b.debianRootfs()
	if err != nil {
		b.rep.skip(userland, err.Error())
		return nil
	}
	info := &UserlandInfo{Rootfs: root, Entries: map[string]string{},
		Layout: "an overlay per contender (lower: the cached tree, unchanged; upper: the contender's own), writable, as an engine's; " +
			"a host directory bind-mounted at " + ulVolume}
	b.rep.Userland = info
	var runc *runtime
	for _, r := range b.rts {
		if r.Name == "runc" {
			runc = r
		}
	}
	// Steps in a VM take tens of seconds under TCG today.
	const slow = 5 * time.Minute
	rts := []*runtime{withTimeout(b.rts[0], slow), withTimeout(b.vm, slow)}
	if runc != nil {
		rts = append(rts, withTimeout(runc, slow))
	}
	vm, proc := b.vm.Name, b.rts[0].Name
	pairs := []string{vm + "/" + proc}
	if runc != nil {
		pairs = append(pairs, proc+"/"+runc.Name)
	}
	rows := map[string]*Result{}
	for _, s := range ulSteps {
		x := b.rep.result(userland, "steps", s.row, "s", false, names(rts)...)
		x.RatioPairs = pairs
		if s.row != rowULCPU {
			x.Relative = &Relative{Pair: vm + "/" + proc, Of: rowULCPU, Name: ulOverCPU}
		}
		rows[s.key] = x
	}
	rows["py-again"].Note = fmt.Sprintf("%d starts after the first, each a sample", ulPyAgain)
	rows["cpu"].Note = fmt.Sprintf("%d runs per container, each a sample; imports done and the database in memory, so neither files nor the share take part: "+
		"the VM/process ratio here is TCG's own cost, which the ÷ column divides out of the others", ulCPURuns)
	whole := b.rep.result(userland, "whole", rowULWhole, "s", false, names(rts)...)
	whole.RatioPairs = pairs
	whole.Note = "the wall time of `run` in the foreground, a new container (and VM) each: create, VM start or restore, Python's start, the script, exit, delete"

	var live []*ulContender
	for _, r := range rts {
		if r.Name == vm {
			if _, _, err := b.check(); err != nil {
				for _, x := range append([]*Result{whole}, rowsOf(rows)...) {
					x.fail(r.Name, err)
				}
				continue
			}
		}
		c, err := b.ulPrepare(r, root)
		if err != nil {
			b.rep.skip(userland, "cannot prepare the bundles: "+err.Error())
			return nil
		}
		live = append(live, c)
	}
	w := b.workers[0]
	wholeRun := func(c *ulContender, tag string, i int) (time.Duration, error) {
		id := b.id(c.rt, tag, i)
		d, out, err := w.output(c.rt, "run", "--bundle", c.whole, id)
		if err != nil {
			w.forceDelete(c.rt, id)
			return 0, err
		}
		if got := strings.TrimSpace(out); got != ulWholeOut {
			return 0, fmt.Errorf("%s: the script printed %q, want %q", c.rt.Name, oneLine(got), ulWholeOut)
		}
		return d, nil
	}
	// Warm-up: one whole run each (makes the VM template if the vm
	// sections did not run, and warms the host's page cache).
	failed := map[string]bool{}
	for _, c := range live {
		if _, err := wholeRun(c, "ulwarm", 0); err != nil {
			whole.fail(c.rt.Name, err)
			rows["py-first"].fail(c.rt.Name, err)
			failed[c.rt.Name] = true
		}
	}
	for i := 0; i < b.c.UserlandN && b.ctx.Err() == nil; i++ {
		for j := range live {
			c := live[(i+j)%len(live)]
			if failed[c.rt.Name] || b.ctx.Err() != nil {
				continue
			}
			d, err := wholeRun(c, "ulwhole", i)
			if err != nil {
				whole.fail(c.rt.Name, err)
			} else {
				whole.add(c.rt.Name, d.Seconds())
			}
			id := b.id(c.rt, "ulsteps", i)
			d, out, err := w.output(c.rt, "run", "--bundle", c.steps, id)
			var o *ulOutput
			if err == nil {
				o, err = parseUserland(out)
			} else if out != "" {
				err = fmt.Errorf("%w; the script's last word: %s", err, lastLine([]byte(out)))
			}
			if err != nil {
				w.forceDelete(c.rt, id)
				rows["py-first"].fail(c.rt.Name, err)
				continue
			}
			for _, s := range ulSteps {
				for _, v := range o.steps[s.key] {
					rows[s.key].add(c.rt.Name, v)
				}
			}
			info.Entries[c.rt.Name] = o.facts["walk-entries"]
			info.Python = o.facts["python"]
			info.ReadFiles = o.facts["read-files"]
			info.ReadBytes, _ = strconv.ParseInt(o.facts["read-bytes"], 10, 64)
			logf("userland round %d: %s: container %.1f s: %s", i, c.rt.Name, d.Seconds(), ulSummary(o))
		}
	}
	rows["read1"].Note = fmt.Sprintf("%s files, %.1f MiB: those under /usr/lib in path order but the reading process's own libraries "+
		"(a few others, e.g. modules of Python's start, were read by earlier steps), in 1 MiB reads; "+
		"the host's page cache is warm, the container's own (a VM's guest) is not", info.ReadFiles, float64(info.ReadBytes)/(1<<20))
	rows["walk"].Note = "entries: " + joinMap(info.Entries)
	return nil
}

func rowsOf(m map[string]*Result) []*Result {
	var out []*Result
	for _, s := range ulSteps {
		out = append(out, m[s.key])
	}
	return out
}

// ulSummary is one line of a container's step times for the log.
func ulSummary(o *ulOutput) string {
	var parts []string
	for _, s := range ulSteps {
		v := o.steps[s.key]
		parts = append(parts, fmt.Sprintf("%s %.2f", s.key, v[len(v)-1]))
	}
	return strings.Join(parts, ", ")
}

// joinMap prints a map as "k v, k v" in key order.
func joinMap(m map[string]string) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+m[k])
	}
	return strings.Join(parts, ", ")
}
