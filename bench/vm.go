package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/initrd"
	"github.com/runh-project/runh/hvshim/qemu"
)

// VMInfo is what the hypervisor figures ran on.
type VMInfo struct {
	Accel         string `json:"accel"`
	AccelReason   string `json:"accelReason,omitempty"`
	Kernel        string `json:"kernel"`
	KernelVersion string `json:"kernelVersion,omitempty"`
	QEMUVersion   string `json:"qemuVersion,omitempty"`
	Transport     string `json:"transport,omitempty"`
	Machine       string `json:"machine,omitempty"` // -M of runh's QEMU
	MemoryMiB     int    `json:"memoryMiB"`
	CPUs          int    `json:"cpus"`
	SizesFrom     string `json:"sizesFrom"`
	Phases        string `json:"phases"` // where the create breakdown came from, or why there is none
	// Template is how the probe's VM started by default ("built": the
	// template was made then), from its boot.json; TemplateReason why
	// not from a template, if it was not.
	Template       string `json:"template,omitempty"`
	TemplateReason string `json:"templateReason,omitempty"`
	// Starts counts how the timed VMs started, by contender and boot.json
	// outcome (restored, built, cold), over the verb-by-verb runs.
	Starts startCounts `json:"starts,omitempty"`
	// Kernels are the guest kernels the vm-kernel section compared.
	Kernels []GuestKernel   `json:"kernels,omitempty"`
	Check   json.RawMessage `json:"check"`
}

// countStart records how one VM of contender rt started.
func (v *VMInfo) countStart(rt, how string) { v.Starts.add(rt, how) }

// startCounts counts how VMs started, by contender and boot.json outcome.
type startCounts map[string]map[string]int

// add records how one VM of contender rt started ("": not recorded).
func (m *startCounts) add(rt, how string) {
	if how == "" {
		how = "unrecorded"
	}
	if *m == nil {
		*m = startCounts{}
	}
	if (*m)[rt] == nil {
		(*m)[rt] = map[string]int{}
	}
	(*m)[rt][how]++
}

const (
	rowVMRun        = "`run` /bin/true"
	rowVMCreate     = "`create`"
	rowVMQMP        = "… QEMU started → QMP answered"
	rowVMAgent      = "… QEMU started → agent answered the host"
	rowVMGuestInit  = "… guest uptime when /init started"
	rowVMGuestReady = "… guest uptime when the agent accepted the host"
	rowVMStart      = "`start`"
	rowVMWait       = "`start` returned → container exited"
	rowVMDelete     = "`delete` (VM gone)"
	rowPSSShim      = "1 sleeping container: shim PSS"
	rowPSSQEMU      = "1 sleeping container: QEMU PSS"
	rowPSSOne       = "1 sleeping container: shim + QEMU PSS"
	rowPSSManyFmt   = "%d sleeping containers: shim + QEMU PSS, total"
	rowPSSPerFmt    = "%d sleeping containers: shim + QEMU PSS, per container"
	floorName       = "floor"
)

// checkReport holds the fields of `runh check --format json` the harness
// uses; the whole answer is kept in the JSON output.
type checkReport struct {
	Usable        bool   `json:"usable"`
	Reason        string `json:"reason"`
	Accel         string `json:"accel"`
	AccelReason   string `json:"accelReason"`
	Kernel        string `json:"kernel"`
	KernelVersion string `json:"kernelVersion"`
	QEMUVersion   string `json:"qemuVersion"`
	Transport     string `json:"transport"`
}

// check asks runh whether hypervisor isolation is usable here. The report
// may be the whole answer or its "hypervisor" member.
func (b *bench) check() (*checkReport, json.RawMessage, error) {
	return b.checkEnv(b.vm.Env) // the run's own cache
}

// checkEnv is check with env added to runh's environment (e.g. another
// guest kernel's RUNH_GUEST_DIR).
func (b *bench) checkEnv(env []string) (*checkReport, json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, b.c.Runh, "check", "--format", "json")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	raw := json.RawMessage(bytes.TrimSpace(out))
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		if runErr != nil {
			return nil, nil, fmt.Errorf("`runh check --format json`: %v: %s", runErr, lastLine(stderr.Bytes()))
		}
		return nil, nil, fmt.Errorf("`runh check --format json` printed no JSON object: %v", err)
	}
	sub := raw
	if h, ok := top["hypervisor"]; ok {
		sub = h
	}
	var r checkReport
	if err := json.Unmarshal(sub, &r); err != nil {
		return nil, raw, fmt.Errorf("`runh check --format json`: %w", err)
	}
	if !r.Usable {
		reason := r.Reason
		if reason == "" {
			reason = "no reason given"
		}
		return &r, raw, fmt.Errorf("runh check: hypervisor isolation not usable: %s", reason)
	}
	return &r, raw, nil
}

// vmUsable checks, once per run, that hypervisor isolation works here and
// returns what it runs on; the error is why every hypervisor section is
// skipped.
func (b *bench) vmUsable() (*VMInfo, error) {
	if b.vmChecked {
		return b.rep.VM, b.vmErr
	}
	b.vmChecked = true
	chk, raw, err := b.check()
	if err != nil {
		b.vmErr = err
		return nil, err
	}
	info := &VMInfo{Accel: chk.Accel, AccelReason: chk.AccelReason, Kernel: chk.Kernel,
		KernelVersion: chk.KernelVersion, QEMUVersion: chk.QEMUVersion, Transport: chk.Transport, Check: raw}
	b.rep.VM = info
	logf("hypervisor isolation: accel %s (%s), kernel %s", info.Accel, info.AccelReason, info.Kernel)
	// One sleeping container first: it proves the mode works, writes the
	// initrd and the VM template into the run's cache before anything is
	// timed, and its QEMU command line gives the floor its sizes.
	if err := b.probeVM(info); err != nil {
		b.vmErr = fmt.Errorf("a hypervisor-isolated container does not run: %w", err)
		return info, b.vmErr
	}
	return info, nil
}

func (b *bench) benchVM() error {
	info, err := b.vmUsable()
	if err != nil {
		for _, s := range []string{"vm-run", "vm-memory"} {
			if b.c.has(s) {
				b.rep.skip(s, err.Error())
			}
		}
		return nil
	}
	if b.c.has("vm-run") && b.ctx.Err() == nil {
		logf("section vm-run (load %s)", loadavg())
		if err := b.benchVMRun(info); err != nil {
			return fmt.Errorf("vm-run: %w", err)
		}
	}
	if b.c.has("vm-memory") && b.ctx.Err() == nil {
		logf("section vm-memory (load %s)", loadavg())
		b.benchVMMemory()
	}
	return nil
}

// probeVM starts one sleeping container and reads the kernel, machine
// type, sizes and accelerator off its QEMU's command line: the floor uses
// exactly what runh used.
func (b *bench) probeVM(info *VMInfo) error {
	w := b.workers[0]
	id := b.id(b.vm, "probe", 0)
	_, shim, fd, err := w.create(b.vm, id, b.sleepBundle)
	if err != nil {
		return err
	}
	unix.Close(fd)
	defer w.forceDelete(b.vm, id)
	if bt := readBootTimes(b.vm, id); bt != nil {
		info.Template, info.TemplateReason = bt.Template, bt.TemplateReason
		logf("probe VM: template %s %s", bt.Template, bt.TemplateReason)
	}
	if _, _, err := w.call(b.vm, "start", id); err != nil {
		return err
	}
	info.MemoryMiB, info.CPUs, info.SizesFrom = b.c.VMMemory, b.c.VMCPUs, "bench flags -vm-memory/-vm-cpus (runh's QEMU not found)"
	q := findQEMU(shim)
	if q == 0 {
		return nil
	}
	a := parseQEMUArgs(cmdline(q))
	if a.MemoryMiB > 0 {
		info.MemoryMiB = a.MemoryMiB
	}
	if a.CPUs > 0 {
		info.CPUs = a.CPUs
	}
	set := func(to *string, v string) {
		if v != "" {
			*to = v
		}
	}
	set(&info.Machine, a.Machine)
	set(&info.Accel, a.Accel)
	set(&info.Kernel, a.Kernel)
	info.SizesFrom = "the command line of runh's QEMU"
	return nil
}

// qemuArgs is what the harness reads off a QEMU command line.
type qemuArgs struct {
	MemoryMiB, CPUs        int
	Machine, Accel, Kernel string
}

// parseQEMUArgs reads the guest's memory (MiB) and vCPUs, the machine
// type, the accelerator and the kernel off QEMU's arguments; what it does
// not find stays zero.
func parseQEMUArgs(args []string) qemuArgs {
	var a qemuArgs
	for i := 0; i+1 < len(args); i++ {
		switch v := args[i+1]; args[i] {
		case "-m":
			v = strings.TrimPrefix(v, "size=")
			if n := leadingInt(v); n > 0 {
				if strings.HasPrefix(v[len(strconv.Itoa(n)):], "G") {
					n <<= 10
				}
				a.MemoryMiB = n
			}
		case "-smp":
			if n := leadingInt(strings.TrimPrefix(v, "cpus=")); n > 0 {
				a.CPUs = n
			}
		case "-M", "-machine":
			a.Machine = v
		case "-accel":
			a.Accel, _, _ = strings.Cut(v, ",")
		case "-kernel":
			a.Kernel = v
		}
	}
	return a
}

// vmSize is "M MiB, N vCPU" of the VM under shim, from its QEMU's command
// line, or "" when there is no QEMU.
func vmSize(shim int) string {
	q := findQEMU(shim)
	if q == 0 {
		return ""
	}
	a := parseQEMUArgs(cmdline(q))
	return fmt.Sprintf("%d MiB, %d vCPU", a.MemoryMiB, a.CPUs)
}

// findQEMU returns the QEMU among pid's descendants, or 0.
func findQEMU(pid int) int {
	for _, p := range tree(pid) {
		if strings.HasPrefix(comm(p), "qemu") {
			return p
		}
	}
	return 0
}

func leadingInt(s string) int {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, _ := strconv.Atoi(s[:i])
	return n
}

// benchVMRun interleaves five things: runh's `run` of /bin/true in a VM
// restored from the template, the same booted cold (--vm-template=false),
// the floor (QEMU booting the same kernel, machine and sizes with an
// initrd whose /init powers off at once), and the same container driven
// verb by verb in both ways, for the breakdown (with the shim's boot
// times, which runh keeps in the state directory as boot.json while the
// container exists).
func (b *bench) benchVMRun(info *VMInfo) error {
	floorRd := filepath.Join(b.dir, "floor.cpio")
	if err := initrd.WriteFloor(floorRd); err != nil {
		return err
	}
	vm, cold := b.vm.Name, b.vmCold.Name
	x := b.rep.result(hypervisor, "boot", rowVMRun, "s", false, vm, cold, floorName)
	x.RatioPairs = []string{vm + "/" + floorName, cold + "/" + floorName, vm + "/" + cold}
	x.Note = fmt.Sprintf("accel %s; %s: restored from a template (runh's default), %s: booted (`--vm-template=false`); "+
		"floor: same kernel, %s, %d MiB, %d vCPU (sizes from %s)",
		info.Accel, vm, cold, machineName(info.Machine), info.MemoryMiB, info.CPUs, info.SizesFrom)
	row := func(name string) *Result { return b.rep.result(hypervisor, "phases", name, "s", false, vm, cold) }
	verbs := []*Result{row(rowVMCreate), row(rowVMQMP), row(rowVMAgent), row(rowVMGuestInit), row(rowVMGuestReady),
		row(rowVMStart), row(rowVMWait), row(rowVMDelete)}
	verbs[3].Note = "guest uptimes are shown for booted VMs only: a restored VM's are those of the template's own boot"
	w := b.workers[0]
	warmup := min(b.c.Warmup, 1) // the probe has already made the template
	var bootJSON int
	runOne := func(r *runtime, i int) {
		id := b.id(r, "run", i)
		d, _, err := w.call(r, "run", "--bundle", b.trueBundle, id)
		switch {
		case err != nil:
			w.forceDelete(r, id)
			x.fail(r.Name, err)
		case i >= warmup:
			x.add(r.Name, d.Seconds())
		}
	}
	cycleOne := func(r *runtime, i int) {
		id := b.id(r, "verbs", i)
		var bt *bootTimes
		t, err := w.cycle(r, id, b.trueBundle, func() { bt = readBootTimes(r, id) })
		if err != nil {
			verbs[0].fail(r.Name, err)
			return
		}
		if i < warmup {
			return
		}
		verbs[0].add(r.Name, t.create.Seconds())
		if bt != nil {
			bootJSON++
			info.countStart(r.Name, bt.Template)
			verbs[1].add(r.Name, bt.QMP)
			verbs[2].add(r.Name, bt.AgentReady)
			if bt.Template == "cold" {
				verbs[3].add(r.Name, bt.GuestInit)
				verbs[4].add(r.Name, bt.GuestReady)
			}
		}
		verbs[5].add(r.Name, t.start.Seconds())
		verbs[6].add(r.Name, t.wait.Seconds())
		verbs[7].add(r.Name, t.delete.Seconds())
	}
	for i := 0; i < warmup+b.c.VMN && b.ctx.Err() == nil; i++ {
		for _, who := range rotateNames([]string{vm, cold, floorName, "verbs " + vm, "verbs " + cold}, i) {
			switch who {
			case floorName:
				d, err := b.floor(info, floorRd)
				switch {
				case err != nil:
					x.fail(floorName, err)
				case i >= warmup:
					x.add(floorName, d.Seconds())
				}
			case vm:
				runOne(b.vm, i)
			case cold:
				runOne(b.vmCold, i)
			case "verbs " + vm:
				cycleOne(b.vm, i)
			default:
				cycleOne(b.vmCold, i)
			}
		}
	}
	if bootJSON > 0 {
		info.Phases = fmt.Sprintf("boot.json in the container's state directory (%d of %d runs)", bootJSON, 2*b.c.VMN)
	} else {
		info.Phases = "runh wrote no boot.json, so `create` is not broken down"
	}
	return nil
}

// bootTimes is the shim's hvshim.BootTimes as runh stores it.
type bootTimes struct {
	QMP, AgentReady, GuestInit, GuestReady float64
	Template, TemplateReason               string
}

func readBootTimes(r *runtime, id string) *bootTimes {
	data, err := os.ReadFile(filepath.Join(r.Root, id, "boot.json"))
	if err != nil {
		return nil
	}
	var t bootTimes
	if json.Unmarshal(data, &t) != nil {
		return nil
	}
	return &t
}

// startedHow is how container id's VM started by its boot.json
// (restored, built, cold), or "" without one.
func startedHow(r *runtime, id string) string {
	if bt := readBootTimes(r, id); bt != nil {
		return bt.Template
	}
	return ""
}

func machineName(m string) string {
	if m == "" {
		return "machine type of hvshim/qemu"
	}
	return "-M " + m
}

func rotateNames(ns []string, i int) []string {
	k := i % len(ns)
	return append(append([]string{}, ns[k:]...), ns[:k]...)
}

// floor boots the floor VM with hvshim/qemu, as runh's shim starts QEMU,
// and returns the time from starting QEMU to its exit.
func (b *bench) floor(info *VMInfo, rd string) (time.Duration, error) {
	dir, err := os.MkdirTemp(b.dir, "floor-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(b.ctx, b.vm.Timeout)
	defer cancel()
	c := &qemu.Config{Dir: dir, Kernel: info.Kernel, Initrd: rd,
		MemoryMiB: info.MemoryMiB, CPUs: info.CPUs, Accel: info.Accel}
	t0 := time.Now()
	v, err := qemu.Start(ctx, c)
	if err != nil {
		return 0, err
	}
	v.QMP.Close()
	select {
	case <-v.Done():
	case <-ctx.Done():
		v.Kill()
		return 0, fmt.Errorf("floor VM: %w", ctx.Err())
	}
	d := time.Since(t0)
	if ps := v.Cmd.ProcessState; ps != nil && !ps.Success() {
		return 0, fmt.Errorf("floor VM: qemu %v: %s", ps, v.StderrTail(dir))
	}
	return d, nil
}

// benchVMMemory measures the host PSS of shim + QEMU for one sleeping
// container booted cold, then for one restored from the template, each
// alone, then for many restored at once.
func (b *bench) benchVMMemory() {
	var shims []int
	var ids []string
	rts := map[string]*runtime{}
	deleteAll := func() {
		for _, id := range ids {
			b.workers[0].forceDelete(rts[id], id)
		}
		shims, ids = nil, nil
	}
	defer deleteAll()
	start := func(rt *runtime, i int) error {
		w := b.workers[i%len(b.workers)]
		id := b.id(rt, "pss", i)
		shim, err := w.startDetached(rt, id, b.sleepBundle)
		if err != nil {
			return err
		}
		ids, rts[id] = append(ids, id), rt
		shims = append(shims, shim)
		return nil
	}
	one := []*Result{
		b.rep.result(hypervisor, "pss", rowPSSShim, "MiB", false, b.vm.Name, b.vmCold.Name),
		b.rep.result(hypervisor, "pss", rowPSSQEMU, "MiB", false, b.vm.Name, b.vmCold.Name),
		b.rep.result(hypervisor, "pss", rowPSSOne, "MiB", false, b.vm.Name, b.vmCold.Name),
	}
	one[2].Note = "PSS from /proc/PID/smaps_rollup of each shim and its descendants (QEMU counted apart), sampled 5 times 1 s apart after 3 s of settling; " +
		"one container at a time; pages shared with other processes of the host (QEMU's libraries) count in part"
	for _, rt := range []*runtime{b.vmCold, b.vm} {
		if err := start(rt, 0); err != nil {
			one[2].fail(rt.Name, err)
			deleteAll()
			continue
		}
		for _, s := range b.samplePSS(shims) {
			one[0].add(rt.Name, mib(s.shim))
			one[1].add(rt.Name, mib(s.qemu))
			one[2].add(rt.Name, mib(s.shim+s.qemu))
		}
		if rt != b.vm {
			deleteAll()
		}
	}
	if len(shims) == 0 {
		return
	}
	// The restored one is still running: n-1 more join it.
	rt, n := b.vm, b.c.VMMany
	total := b.rep.result(hypervisor, "pss", fmt.Sprintf(rowPSSManyFmt, n), "MiB", false, rt.Name)
	per := b.rep.result(hypervisor, "pss", fmt.Sprintf(rowPSSPerFmt, n), "MiB", false, rt.Name)
	for i := 1; i < n && b.ctx.Err() == nil; i++ {
		if err := start(rt, i); err != nil {
			total.fail(rt.Name, err)
			return
		}
	}
	for _, s := range b.samplePSS(shims) {
		total.add(rt.Name, mib(s.shim+s.qemu))
		per.add(rt.Name, mib(s.shim+s.qemu)/float64(len(shims)))
	}
}

// pssSample is the PSS (KiB) of shims' process trees, QEMU counted apart,
// and QEMU's RSS.
type pssSample struct{ shim, qemu, qemuRSS int64 }

// samplePSS lets the guests settle, then samples the PSS of every shim's
// process tree a few times, QEMU counted apart from the rest.
func (b *bench) samplePSS(shims []int) []pssSample {
	const settle, samples, every = 3 * time.Second, 5, time.Second
	var out []pssSample
	select {
	case <-time.After(settle):
	case <-b.ctx.Done():
		return nil
	}
	for i := 0; i < samples && b.ctx.Err() == nil; i++ {
		out = append(out, sampleMem(shims))
		time.Sleep(every)
	}
	return out
}

// sampleMem reads the memory of every shim's process tree once.
func sampleMem(shims []int) pssSample {
	var s pssSample
	for _, shim := range shims {
		for _, p := range tree(shim) {
			if strings.HasPrefix(comm(p), "qemu") {
				s.qemu += pssKiB(p)
				rss, _ := memKiB(p)
				s.qemuRSS += rss
			} else {
				s.shim += pssKiB(p)
			}
		}
	}
	return s
}
