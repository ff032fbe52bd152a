package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runh-project/runh/hvshim/initrd"
	"github.com/runh-project/runh/integration"
	"golang.org/x/sys/unix"
)

// bench holds one run: the contenders, the shared bundles and the report.
type bench struct {
	ctx    context.Context
	c      *config
	rep    *Report
	dir    string     // temporary: rootfs, bundles, state roots, pid files
	rts    []*runtime // process isolation: runh, runc, crun
	vm     *runtime   // runh with --isolation hypervisor: VMs restored from a template
	vmCold *runtime   // the same with --vm-template=false: every VM booted
	cache  string     // runh's private initrd and template cache (RUNH_CACHE_DIR)
	nonce  string     // keeps IDs (and so cgroup paths) unique across runs

	vmChecked bool  // vmUsable has run: b.rep.VM and vmErr hold its answer
	vmErr     error // why hypervisor isolation cannot be measured

	trueBundle, sleepBundle string
	workers                 []*worker
	mounts                  []string // unmounted at cleanup, before the directory goes
	start                   time.Time
}

// Section names in the report.
const (
	process    = "process"
	hypervisor = "hypervisor"
	network    = "network" // both modes side by side
)

func newBench(ctx context.Context, c *config) (*bench, error) {
	for _, p := range []string{c.Runh, c.Runc, c.Crun, c.RuncSrc} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err != nil {
			return nil, fmt.Errorf("runtime %s: %w", p, err)
		}
	}
	dir, err := os.MkdirTemp(c.Workdir, "runh-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{ctx: ctx, c: c, dir: dir, start: time.Now(),
		nonce: strconv.FormatInt(time.Now().UnixNano()%(36*36*36*36), 36)}
	b.rep = &Report{Date: time.Now().UTC().Format(time.RFC3339), Config: c, Env: environment(c)}
	mk := func(name, path string, global ...string) *runtime {
		return &runtime{Name: name, Path: path, Root: filepath.Join(dir, "root-"+name), Global: global, Timeout: time.Minute}
	}
	b.rts = []*runtime{mk("runh", c.Runh), mk("runc", c.Runc), mk("crun", c.Crun)}
	if c.RuncSrc != "" {
		b.rts = append(b.rts, mk(runcSrcName, c.RuncSrc))
	}
	b.vm = mk("runh-vm", c.Runh, "--isolation", "hypervisor")
	b.vmCold = mk("runh-vm-cold", c.Runh, "--isolation", "hypervisor", "--vm-template=false")
	// A cache of the run's own: its template is made by this run's probe,
	// no other VM on the host shares its pages (PSS), and no other runh's
	// templates push it out of the cache (which keeps the six newest).
	b.cache = filepath.Join(dir, "cache")
	for _, r := range []*runtime{b.vm, b.vmCold} {
		r.Env = []string{initrd.EnvCacheDir + "=" + b.cache}
		r.Timeout = 2 * time.Minute // TCG boots take seconds, more on a busy host
	}
	for _, r := range append(b.rts, b.vm, b.vmCold) {
		if err := os.MkdirAll(r.Root, 0o700); err != nil {
			return b, err
		}
	}
	if err := integration.BuildRootfs(c.Mkrootfs, filepath.Join(dir, "rootfs")); err != nil {
		return b, err
	}
	// One bundle per process, shared by every contender and both modes.
	if b.trueBundle, err = b.bundle("true", nil, "/bin/true"); err != nil {
		return b, err
	}
	if b.sleepBundle, err = b.bundle("sleep", nil, "/bin/sleep", "1000000"); err != nil {
		return b, err
	}
	n := 1
	for _, k := range c.TPConcurrency {
		n = max(n, k)
	}
	for i := 0; i < max(n, c.VMMany); i++ {
		w, err := newWorker(filepath.Join(dir, "w"+strconv.Itoa(i)))
		if err != nil {
			return b, err
		}
		b.workers = append(b.workers, w)
	}
	return b, nil
}

// bundle writes the bundle bundle-name into the run's directory: args on
// the shared busybox rootfs, its spec adjusted by mutate (may be nil). crun
// 1.8.1 refuses spec versions newer than it knows; 1.0.2 is what all three
// runtimes accept and nothing in the bundles needs more.
func (b *bench) bundle(name string, mutate func(*specs.Spec), args ...string) (string, error) {
	dir := filepath.Join(b.dir, "bundle-"+name)
	return dir, integration.NewBundle(dir, filepath.Join(b.dir, "rootfs"), "", func(s *specs.Spec) {
		s.Version = "1.0.2"
		if mutate != nil {
			mutate(s)
		}
	}, args...)
}

func environment(c *config) Env {
	var u unix.Utsname
	unix.Uname(&u)
	e := Env{
		Kernel:   unix.ByteSliceToString(u.Release[:]),
		CPU:      firstField("/proc/cpuinfo", "model name"),
		Cores:    goruntime.NumCPU(),
		MemTotal: memTotal(),
		Versions: map[string]string{
			"runh": version(c.Runh), "runc": version(c.Runc), "crun": version(c.Crun),
		},
		LoadStart:   loadavg(),
		GoVersion:   goruntime.Version(),
		Interleaved: "each iteration runs every contender once; the starting contender rotates per iteration",
	}
	if c.RuncSrc != "" {
		e.Versions[runcSrcName] = version(c.RuncSrc)
	}
	return e
}

// settle waits, up to a minute, for the CPUs to go quiet before a section:
// the last section's containers and VMs may still be winding down (16 at a
// time leave a 1-min load of 20, which lags far behind the CPUs). It
// returns how busy they were in the last second it saw: more than half
// means something else kept the machine busy.
func (b *bench) settle() float64 {
	var busy float64
	for i := 0; i < 60 && b.ctx.Err() == nil; i++ {
		if busy = cpuBusy(time.Second); busy < 0.2 {
			break
		}
	}
	return busy
}

// runcSrcName is the optional contender built from the runc module runh
// links: the same libcontainer, so runh/runc-src is what runh adds to it.
const runcSrcName = "runc-src"

func (b *bench) run() error {
	sections := []struct {
		name string
		fn   func() error
	}{
		{"run", b.benchRun}, {"verbs", b.benchVerbs}, {"exec", b.benchExec},
		{"throughput", b.benchThroughput}, {"memory", b.benchMemory},
		{"vm", b.benchVM}, // vm-run and vm-memory
		{"vm-size", b.benchVMSize}, {"vm-kernel", b.benchVMKernel},
		{"net", b.benchNet}, {"userland", b.benchUserland}, {"pod", b.benchPod},
		{"app", b.benchApp},
	}
	for _, s := range sections {
		wanted := b.c.has(s.name)
		if s.name == "vm" {
			wanted = b.c.has("vm-run") || b.c.has("vm-memory")
		}
		if !wanted || b.ctx.Err() != nil {
			continue
		}
		b.rep.Env.MaxBusy = max(b.rep.Env.MaxBusy, b.settle())
		b.rep.Env.MaxLoad1 = max(b.rep.Env.MaxLoad1, load1())
		if s.name != "vm" { // benchVM logs its own two
			logf("section %s (load %s)", s.name, loadavg())
		}
		t0 := time.Now()
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		b.rep.Env.addSection(s.name, time.Since(t0))
	}
	b.rep.Env.LoadEnd = loadavg()
	b.rep.Env.MaxLoad1 = max(b.rep.Env.MaxLoad1, load1())
	b.rep.Env.Duration = time.Since(b.start).Seconds()
	b.rep.finalize()
	return nil
}

// id names a container; the runtime's name keeps cgroup paths of the
// contenders apart, the nonce those of earlier runs.
func (b *bench) id(r *runtime, tag string, i int) string {
	return fmt.Sprintf("rb%s-%s-%s-%d", b.nonce, r.Name, tag, i)
}

// rotate returns the contenders in the order for iteration i.
func rotate(rts []*runtime, i int) []*runtime {
	k := i % len(rts)
	return append(append([]*runtime{}, rts[k:]...), rts[:k]...)
}

func (b *bench) cleanup() {
	for _, r := range append(b.rts, b.vm, b.vmCold) {
		if r != nil {
			removeAllContainers(r)
		}
	}
	for _, w := range b.workers {
		w.close()
	}
	for i := len(b.mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(b.mounts[i], 0); err != nil {
			logf("cleanup: unmount %s: %v; detaching it", b.mounts[i], err)
			unix.Unmount(b.mounts[i], unix.MNT_DETACH)
		}
	}
	if b.dir != "" {
		if err := os.RemoveAll(b.dir); err != nil {
			logf("cleanup: %v", err)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mib(kib int64) float64 { return float64(kib) / 1024 }

func names(rts []*runtime) []string {
	var out []string
	for _, r := range rts {
		out = append(out, r.Name)
	}
	return out
}

// memTotal is MemTotal of /proc/meminfo in GiB.
func memTotal() string {
	kib, _ := strconv.ParseFloat(strings.TrimSuffix(firstField("/proc/meminfo", "MemTotal"), " kB"), 64)
	return fmt.Sprintf("%.1f GiB", kib/(1<<20))
}
