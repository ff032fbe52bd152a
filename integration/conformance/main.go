// Command conformance runs the OCI runtime-tools v0.9.0 validation programs
// against one runtime, records the counts as one column of
// docs/conformance.md and checks runh's ok count against a baseline.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	var (
		binDir   = flag.String("bin", "build/conformance/bin", "directory holding the validation programs and runtimetest")
		runtime  = flag.String("runtime", "", "runtime binary to test")
		column   = flag.String("column", "", "column name in the report (runc, runh, runh-vm); default: runtime's base name")
		out      = flag.String("out", "build/conformance", "directory for raw TAP output and work dirs")
		jobs     = flag.Int("jobs", 2, "programs run in parallel")
		timeout  = flag.Duration("timeout", 180*time.Second, "time limit per program")
		results  = flag.String("results", "integration/conformance/results", "directory of the stored runs (one JSON file per column)")
		doc      = flag.String("doc", "docs/conformance.md", "report to write")
		baseline = flag.String("baseline", "", "fail when the ok total is below the number in this file")
		update   = flag.Bool("update-baseline", false, "write this run's ok total to the -baseline file")
		notes    = flag.String("notes", "integration/conformance/notes", "explanations of known failures")
		mkrootfs = flag.String("mkrootfs", "scripts/mkrootfs.sh", "rootfs builder")
		only     = flag.String("run", "", "run only programs matching this regexp (results and report are not saved)")
		docOnly  = flag.Bool("doc-only", false, "only regenerate the report from the stored runs")
	)
	flag.Parse()
	if err := run(opts{*binDir, *runtime, *column, *out, *jobs, *timeout, *results, *doc, *baseline, *update, *notes, *mkrootfs, *only, *docOnly}); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		if _, ok := err.(belowBaseline); ok {
			os.Exit(1)
		}
		os.Exit(2)
	}
}

type opts struct {
	binDir, runtime, column, out string
	jobs                         int
	timeout                      time.Duration
	results, doc, baseline       string
	update                       bool
	notes, mkrootfs, only        string
	docOnly                      bool
}

type belowBaseline string

func (b belowBaseline) Error() string { return string(b) }

func run(o opts) error {
	notes, err := loadNotes(o.notes)
	if err != nil {
		return err
	}
	modes, err := loadModes(filepath.Join(filepath.Dir(o.notes), "modes"))
	if err != nil {
		return err
	}
	base := 0
	if o.baseline != "" && !o.update {
		if base, err = readBaseline(o.baseline); err != nil {
			return err
		}
	}
	if o.docOnly {
		runs, err := loadRuns(o.results)
		if err != nil {
			return err
		}
		return writeDoc(o.doc, runs, notes, modes, docBaseline(o.baseline))
	}
	if o.runtime == "" {
		return fmt.Errorf("-runtime is required")
	}
	rt, err := filepath.Abs(o.runtime)
	if err != nil {
		return err
	}
	if st, err := os.Stat(rt); err != nil || st.Mode()&0o111 == 0 {
		return fmt.Errorf("runtime %s is not an executable file", rt)
	}
	if o.column == "" {
		o.column = filepath.Base(rt)
	}
	r := &runner{runtime: rt, timeout: o.timeout}
	if r.binDir, err = filepath.Abs(o.binDir); err != nil {
		return err
	}
	if r.outDir, err = filepath.Abs(filepath.Join(o.out, o.column)); err != nil {
		return err
	}
	progs, err := programs(r.binDir, o.only)
	if err != nil {
		return err
	}
	// Keep raw output of an earlier run out of this one's way.
	if err := os.RemoveAll(r.outDir); err != nil {
		return err
	}
	if err := os.MkdirAll(r.outDir, 0o755); err != nil {
		return err
	}
	if r.tarball, err = buildRootfs(o.mkrootfs, r.outDir); err != nil {
		return err
	}
	// Short base for the private roots: runtimes put unix sockets there.
	if r.stateDir, err = os.MkdirTemp("/run", "conformance-"); err != nil {
		return err
	}
	defer os.RemoveAll(r.stateDir)

	prev, _ := loadRun(filepath.Join(o.results, o.column+".json"))
	sortByDuration(progs, prev)
	start := time.Now()
	// On SIGINT/SIGTERM stop the running programs and still clean up.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res := schedule(ctx, r, progs, o.jobs)
	interrupted := ctx.Err() != nil
	stop()
	wall := time.Since(start).Seconds()
	for _, c := range cleanupCgroups() {
		fmt.Fprintln(os.Stderr, "conformance: left behind:", c)
	}
	_ = os.RemoveAll(filepath.Join(r.outDir, "work"))
	if interrupted {
		return fmt.Errorf("interrupted; nothing saved")
	}

	cur := &Run{
		Column:  o.column,
		Runtime: rt,
		Version: runtimeVersion(rt),
		Date:    time.Now().UTC().Format("2006-01-02"),
		Host:    hostInfo(),
		Jobs:    o.jobs,
		Seconds: wall,
		Results: res,
	}
	t, broken := cur.Totals()
	fmt.Printf("%s: %d ok, %d not ok, %d skip, %d programs exited non-zero, %.0f s\n", o.column, t.OK, t.NotOK, t.Skip, broken, wall)
	if o.only != "" {
		return nil
	}
	if err := os.MkdirAll(o.results, 0o755); err != nil {
		return err
	}
	if err := saveRun(filepath.Join(o.results, o.column+".json"), cur); err != nil {
		return err
	}
	if o.update && o.baseline != "" {
		content := fmt.Sprintf("# ok count of the runtime-tools v0.9.0 conformance suite that runh must keep (make conformance)\n%d\n", t.OK)
		if err := os.WriteFile(o.baseline, []byte(content), 0o644); err != nil {
			return err
		}
	}
	runs, err := loadRuns(o.results)
	if err != nil {
		return err
	}
	if err := writeDoc(o.doc, runs, notes, modes, docBaseline(o.baseline)); err != nil {
		return err
	}
	if o.baseline != "" && !o.update && t.OK < base {
		return belowBaseline(fmt.Sprintf("%s: %d ok is below the baseline of %d (%s)", o.column, t.OK, base, o.baseline))
	}
	return nil
}

// The committed baselines of the runh and runh-vm columns, shown in the
// document whichever column a run is of.
const (
	baselineRunh = "integration/conformance/baseline"
	baselineVM   = "integration/conformance/baseline-vm"
)

// docBaseline reads runh's baseline for display: from the file given when
// it is runh's (another path to it, as make passes), else the committed one.
func docBaseline(file string) int {
	if file == "" || filepath.Base(file) != filepath.Base(baselineRunh) {
		file = baselineRunh
	}
	return docBaselineOf(file)
}

func docBaselineOf(file string) int {
	n, _ := readBaseline(file)
	return n
}

// programs lists the validation executables in dir.
func programs(dir, only string) ([]string, error) {
	var re *regexp.Regexp
	if only != "" {
		var err error
		if re, err = regexp.Compile(only); err != nil {
			return nil, err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w (run make conformance-build)", err)
	}
	var progs []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.Mode()&0o111 == 0 || e.Name() == "runtimetest" {
			continue
		}
		if re == nil || re.MatchString(e.Name()) {
			progs = append(progs, e.Name())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "runtimetest")); err != nil {
		return nil, err
	}
	if len(progs) == 0 {
		return nil, fmt.Errorf("no validation programs in %s", dir)
	}
	return progs, nil
}

// sortByDuration starts the slowest programs of the previous run first, so
// that the workers finish together.
func sortByDuration(progs []string, prev *Run) {
	sort.Strings(progs)
	if prev == nil {
		return
	}
	secs := map[string]float64{}
	for _, p := range prev.Results {
		secs[p.Program] = p.Seconds
	}
	sort.SliceStable(progs, func(i, j int) bool { return secs[progs[i]] > secs[progs[j]] })
}

// schedule runs the programs on n workers. Programs that use the suite's
// fixed cgroup path (/cgrouptest) run one at a time, and linux_ns_itype,
// which runs in the host's namespaces, runs alone.
func schedule(ctx context.Context, r *runner, progs []string, n int) []Result {
	if n < 1 {
		n = 1
	}
	var (
		alone  sync.RWMutex
		cgroup sync.Mutex
		wg     sync.WaitGroup
		mu     sync.Mutex
	)
	results := make([]Result, len(progs))
	next := 0
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(progs) || ctx.Err() != nil {
					return
				}
				p := progs[i]
				if p == "linux_ns_itype" {
					alone.Lock()
				} else {
					alone.RLock()
				}
				usesCgroup := strings.HasPrefix(p, "linux_cgroups_") || p == "delete_resources"
				if usesCgroup {
					cgroup.Lock()
				}
				results[i] = r.runProgram(ctx, i, p)
				if usesCgroup {
					cgroup.Unlock()
				}
				if p == "linux_ns_itype" {
					alone.Unlock()
				} else {
					alone.RUnlock()
				}
				res := results[i]
				status := ""
				if res.Exit != 0 || res.TimedOut {
					status = " (" + res.Error + ")"
				}
				fmt.Fprintf(os.Stderr, "%-36s %4d ok %3d not ok %3d skip %5.1fs%s\n", p, res.OK, res.NotOK, res.Skip, res.Seconds, status)
			}
		}()
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].Program < results[j].Program })
	return results
}

// buildRootfs writes rootfs-amd64.tar.gz, the busybox tree the programs
// unpack into each bundle.
func buildRootfs(script, dir string) (string, error) {
	tree, err := os.MkdirTemp(dir, "rootfs-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tree)
	// tar restores the mode of "." onto the bundle, which is the container's
	// root: MkdirTemp's 0700 would lock non-root container users out.
	if err := os.Chmod(tree, 0o755); err != nil {
		return "", err
	}
	if out, err := exec.Command("sh", script, tree).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", script, err, out)
	}
	tarball := filepath.Join(dir, "rootfs-amd64.tar.gz")
	if out, err := exec.Command("tar", "--numeric-owner", "-C", tree, "-czf", tarball, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("tar: %w: %s", err, out)
	}
	return tarball, nil
}

func runtimeVersion(rt string) string {
	out, err := exec.Command(rt, "--version").Output()
	if err != nil {
		return filepath.Base(rt) + " (--version failed)"
	}
	// First line, plus the commit line that runc and runh print.
	v := strings.Join(strings.Fields(firstLine(string(out))), " ")
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "commit:") {
			v += ", " + strings.TrimSpace(l)
		}
	}
	return v
}

func hostInfo() string {
	var u syscall.Utsname
	kernel := "?"
	if syscall.Uname(&u) == nil {
		var b strings.Builder
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b.WriteByte(byte(c))
		}
		kernel = b.String()
	}
	var st syscall.Statfs_t
	mode := "cgroup v1"
	if syscall.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == 0x63677270 {
		mode = "cgroup v2"
	} else if _, err := os.Stat("/sys/fs/cgroup/unified"); err == nil {
		mode = "cgroup v1 hybrid"
	}
	return fmt.Sprintf("Linux %s, %s", kernel, mode)
}

// cleanupCgroups removes the fixed cgroups of the suite that a runtime did
// not delete: /cgrouptest, and testdir/cgrouptest/container, which runtimes
// resolve relative to their own (our) cgroup in each hierarchy.
func cleanupCgroups() []string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil
	}
	var found []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		mnt := filepath.Join("/sys/fs/cgroup", strings.TrimPrefix(parts[1], "name="))
		if parts[1] == "" {
			if mnt = "/sys/fs/cgroup/unified"; !isDir(mnt) {
				mnt = "/sys/fs/cgroup"
			}
		}
		rel := filepath.Join(mnt, parts[2], "testdir")
		for _, d := range []string{filepath.Join(mnt, "cgrouptest"), filepath.Join(rel, "cgrouptest")} {
			if !isDir(d) {
				continue
			}
			if err := removeCgroupTree(d); err != nil {
				found = append(found, fmt.Sprintf("cgroup %s: %v", d, err))
				continue
			}
			found = append(found, "cgroup "+d)
		}
		_ = syscall.Rmdir(rel) // the relative path's own parent; fails while in use
	}
	return found
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// removeCgroupTree removes a cgroup and its children, deepest first.
func removeCgroupTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroupTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := syscall.Rmdir(dir); err != nil && err != syscall.ENOENT {
		return err
	}
	return nil
}
