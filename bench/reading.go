package main

import (
	"fmt"
	"strings"
)

// Targets of issue 5, quoted by the reading; none of them fails the run.
const (
	targetRunVsRunc  = 1.0  // runh/runc, `run`
	targetRunVsCrun  = 1.5  // runh/crun, `run`
	targetTPVsRunc   = 1.0  // runh/runc, throughput at the highest concurrency
	targetVMVsFloor  = 1.25 // runh-vm/floor, `run` (issue 5, before templates: now the booted VM's)
	readingSubject   = "runh"
	readingVMSubject = "runh-vm"
	readingVMCold    = "runh-vm-cold"
)

// Targets of issue 12 (VM templates) and their aims.
const (
	targetTplVsFloor, aimTplVsFloor = 1.0, 0.7 // runh-vm/floor, `run`, restored
	targetTplPSS, aimTplPSS         = 60, 40   // MiB, one idle restored container
	targetTplPSSMany                = 45       // MiB each, with -vm-many of them
)

// Targets of issue 16 (real userland).
const (
	targetULOverCPU = 1.5 // VM/process of python's start and the walk, over the CPU job's
	targetULReread  = 5   // first read over second read, in the VM
	targetULWhole   = 5   // seconds, whole `run` of the script in a VM
)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// aimed says whether v meets a lower-is-better target, and the aim
// beyond it.
func aimed(v, target, aim float64) string {
	switch {
	case v <= aim:
		return fmt.Sprintf("met, and the aim of %g too", aim)
	case v <= target:
		return fmt.Sprintf("met; the aim of %g not yet", aim)
	}
	return "not met"
}

// reading turns the figures into sentences: how runh compares, against
// the targets, and where its largest remaining cost is.
func (r *Report) reading() []string {
	var out []string
	if run := r.find(process, rowRun); run != nil {
		if s := r.sentence(run, "ms"); s != "" {
			line := "`run` of /bin/true, the headline: " + s
			if q, ok := run.ratio("runh/runc"); ok {
				line += fmt.Sprintf("; runh/runc %.2f (target ≤ %.2f: %s)", q, targetRunVsRunc, verdict(q <= targetRunVsRunc))
			}
			if q, ok := run.ratio("runh/crun"); ok {
				line += fmt.Sprintf(", runh/crun %.2f (target ≤ %.2f: %s)", q, targetRunVsCrun, verdict(q <= targetRunVsCrun))
			}
			if q, ok := run.ratio("runh/" + runcSrcName); ok {
				line += fmt.Sprintf("; runh/%s %.2f (same libcontainer: what runh adds to it)", runcSrcName, q)
			}
			out = append(out, line+".")
		}
	}
	if s := r.runVersusVerbs(); s != "" {
		out = append(out, s)
	}
	for _, other := range []string{"runc", "crun", runcSrcName} {
		if _, ok := r.Env.Versions[other]; !ok {
			continue // the optional contender was not run
		}
		if s := r.largestExcess(other); s != "" {
			out = append(out, s)
		}
	}
	var top *Result
	for _, x := range r.rows(process, "throughput") {
		top = x // rows are in increasing concurrency
	}
	if top != nil {
		if s := r.sentence(top, "containers/s"); s != "" {
			line := strings.TrimSuffix(strings.SplitN(top.Name, " (", 2)[0], " ") + ": " + s
			if q, ok := top.ratio("runh/runc"); ok {
				line += fmt.Sprintf("; runh/runc %.2f (target ≥ %.2f: %s)", q, targetTPVsRunc, verdict(q >= targetTPVsRunc))
			}
			out = append(out, line+".")
		}
	}
	for _, name := range []string{rowMaxRSS, rowWaiting, rowBinary} {
		if x := r.find(process, name); x != nil {
			if s := r.sentence(x, "MiB"); s != "" {
				out = append(out, name+": "+s+".")
			}
		}
	}
	out = append(out, r.vmReading()...)
	out = append(out, r.vmSizeReading()...)
	out = append(out, r.rowReadings(hypervisor, "kernel", "Guest kernel, ", "; ", sameName)...)
	out = append(out, r.netReading()...)
	out = append(out, r.userlandReading()...)
	out = append(out, r.appReading()...)
	if len(out) == 0 {
		out = append(out, "No figures were produced.")
	}
	return out
}

// sentence lists the medians of a row, subject first.
func (r *Report) sentence(x *Result, unit string) string {
	if x == nil {
		return ""
	}
	var parts []string
	for _, s := range x.Series {
		if s.N > 0 {
			parts = append(parts, fmt.Sprintf("%s %s %s", s.Runtime, num(s.Median), unit))
		}
	}
	return strings.Join(parts, ", ")
}

// runVersusVerbs compares each runtime's `run` with its create, start and
// delete run one by one: what a one-process `run` saves, or does not.
func (r *Report) runVersusVerbs() string {
	run := r.find(process, rowRun)
	if run == nil || r.find(process, rowCreate) == nil {
		return ""
	}
	var parts []string
	for _, s := range run.Series {
		sum, ok := 0.0, s.N > 0
		for _, name := range []string{rowCreate, rowStart, rowDelete} {
			v, found := r.find(process, name).median(s.Runtime)
			sum, ok = sum+v, ok && found
		}
		if ok {
			parts = append(parts, fmt.Sprintf("%s %s against %s ms", s.Runtime, num(s.Median), num(sum)))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "`run` against the medians of `create` + `start` + `delete` run separately: " + strings.Join(parts, ", ") + "."
}

// largestExcess names the single verb where runh's median is furthest
// above other's: the first place to look for runh's own cost.
func (r *Report) largestExcess(other string) string {
	best, bestName := 0.0, ""
	for _, name := range []string{rowCreate, rowStart, rowDelete, rowExec} {
		x := r.find(process, name)
		a, ok1 := x.median(readingSubject)
		o, ok2 := x.median(other)
		if ok1 && ok2 && a-o > best {
			best, bestName = a-o, name
		}
	}
	if bestName == "" {
		if r.find(process, rowCreate) == nil {
			return ""
		}
		return fmt.Sprintf("runh is no slower than %s in any single verb.", other)
	}
	return fmt.Sprintf("Largest single-verb excess over %s: %s, +%s ms per call (median against median).", other, bestName, num(best))
}

func (r *Report) vmReading() []string {
	var out []string
	x := r.find(hypervisor, rowVMRun)
	if x == nil {
		return nil
	}
	a, okA := x.median(readingVMSubject)
	c, okC := x.median(readingVMCold)
	f, okF := x.median(floorName)
	accel := ""
	if r.VM != nil {
		accel = " (accel " + r.VM.Accel + ")"
	}
	if okA && okF {
		q := a / f
		out = append(out, fmt.Sprintf("Hypervisor `run` of /bin/true%s, restored from a template (runh's default): %s s against a bare boot of %s s, "+
			"ratio %.2f (issue 12's target ≤ %.2f: %s); runh's part beyond the floor's time %s s.",
			accel, num(a), num(f), q, targetTplVsFloor, aimed(q, targetTplVsFloor, aimTplVsFloor), num(a-f)))
	}
	if okC && okF {
		q := c / f
		line := fmt.Sprintf("Booted instead (`--vm-template=false`): %s s, ratio %.2f to the floor (issue 5's target ≤ %.2f: %s)",
			num(c), q, targetVMVsFloor, verdict(q <= targetVMVsFloor))
		if okA {
			line += fmt.Sprintf("; the template saves %s s per container (restored/booted %.2f)", num(c-a), a/c)
		}
		out = append(out, line+".")
	}
	med := func(name, rt string) (float64, bool) { return r.find(hypervisor, name).median(rt) }
	for _, rt := range []string{readingVMSubject, readingVMCold} {
		cr, ok := med(rowVMCreate, rt)
		if !ok {
			continue
		}
		st, _ := med(rowVMStart, rt)
		wt, _ := med(rowVMWait, rt)
		del, _ := med(rowVMDelete, rt)
		how := "restored"
		if rt == readingVMCold {
			how = "booted"
		}
		line := fmt.Sprintf("Verb by verb, %s: `create` %s s", how, num(cr))
		costs := map[string]float64{"`start`": st, "the container's run to its exit": wt, "`delete`": del}
		if ag, ok := med(rowVMAgent, rt); ok {
			line += fmt.Sprintf(" (QEMU start to agent answering %s s", num(ag))
			if gi, ok := med(rowVMGuestInit, rt); ok {
				line += fmt.Sprintf("; the guest reached /init after %s s of guest time", num(gi))
			}
			line += ")"
			costs["the VM's start up to the agent answering"] = ag
			costs["`create` outside the VM's start (shim, QEMU launch, container creation in the guest)"] = cr - ag
		} else {
			costs["`create`"] = cr
		}
		line += fmt.Sprintf(", `start` %s s, then %s s until the container exited, `delete` %s s.", num(st), num(wt), num(del))
		out = append(out, line)
		if rt == readingVMSubject {
			worst, wv := "", 0.0
			for k, v := range costs {
				if v > wv || (v == wv && k < worst) {
					worst, wv = k, v
				}
			}
			out = append(out, fmt.Sprintf("Largest remaining cost with hypervisor isolation (restored): %s, %s s.", worst, num(wv)))
		}
	}
	one := r.find(hypervisor, rowPSSOne)
	pss := func(rt string) string {
		v, ok := one.median(rt)
		if !ok {
			return ""
		}
		s := num(v) + " MiB"
		sh, ok1 := r.find(hypervisor, rowPSSShim).median(rt)
		qe, ok2 := r.find(hypervisor, rowPSSQEMU).median(rt)
		if ok1 && ok2 {
			s += fmt.Sprintf(" (shim %s, QEMU %s)", num(sh), num(qe))
		}
		return s
	}
	if s := pss(readingVMSubject); s != "" {
		v, _ := one.median(readingVMSubject)
		line := fmt.Sprintf("One idle VM container costs %s of host PSS restored (issue 12's target ≤ %d MiB: %s)",
			s, targetTplPSS, aimed(v, targetTplPSS, aimTplPSS))
		if c := pss(readingVMCold); c != "" {
			line += ", " + c + " booted"
		}
		if r.Config != nil {
			if per, ok := r.find(hypervisor, fmt.Sprintf(rowPSSPerFmt, r.Config.VMMany)).median(readingVMSubject); ok {
				line += fmt.Sprintf("; with %d restored running, %s MiB each (target ≤ %d: %s)",
					r.Config.VMMany, num(per), targetTplPSSMany, verdict(per <= targetTplPSSMany))
			}
		}
		out = append(out, line+".")
	}
	return out
}

// vmSizeReading says what a VM sized like the host gives (the parallel
// CPU job) and costs (idle memory), and how much of the memory its guest
// frees goes back to the host.
func (r *Report) vmSizeReading() []string {
	var out []string
	vm := readingVMSubject
	if x := r.find(hypervisor, rowSizeCPU); x != nil {
		if s := r.sentence(x, "s"); s != "" {
			line := "Parallel CPU job, one busy loop per host CPU: " + s
			var ns []string
			if np := r.find(hypervisor, rowSizeNproc); np != nil {
				for _, se := range np.Series {
					if se.N > 0 {
						ns = append(ns, fmt.Sprintf("%s %.0f", se.Runtime, se.Median))
					}
				}
			}
			if len(ns) > 0 {
				line += " (`nproc`: " + strings.Join(ns, ", ") + ")"
			}
			if q, ok := x.ratio(sizeVM1 + "/" + vm); ok {
				line += fmt.Sprintf("; with 1 vCPU the job takes %.2f times as long as sized like the host", q)
			}
			if q, ok := x.ratio(vm + "/" + readingSubject); ok {
				line += fmt.Sprintf("; sized like the host, %.2f times process isolation's time", q)
			}
			out = append(out, line+".")
		}
	}
	idle := r.find(hypervisor, rowSizeOne)
	if s := r.sentence(idle, "MiB"); s != "" {
		line := "An idle VM's host PSS (shim + QEMU) by size: " + s
		if q, ok := idle.ratio(vm + "/" + sizeVMSmall); ok {
			line += fmt.Sprintf("; the default size costs %.2f times the small one's", q)
		}
		out = append(out, line+".")
	}
	for _, who := range []string{vm, sizeVMBooted} {
		med := func(row string) (float64, bool) { return r.find(hypervisor, row).median(who) }
		base, ok0 := med(rowSizeQEMU)
		held, ok1 := med(rowSizeHeldPSS)
		freed, ok2 := med(rowSizeFreedPSS)
		later, ok3 := med(rowSizeLaterPSS)
		if !ok0 || !ok1 || !ok2 || !ok3 {
			continue
		}
		wait := "the wait"
		if r.Config != nil {
			wait = fmt.Sprintf("%d s later", r.Config.VMFreeWait)
		}
		line := fmt.Sprintf("1 GiB written to tmpfs in %s, then removed: QEMU PSS idle %s MiB, holding it %s MiB, "+
			"just after removing it %s MiB, %s %s MiB", who, num(base), num(held), num(freed), wait, num(later))
		if grown := held - base; grown > 0 {
			if back := (held - later) / grown; back >= 0.005 {
				line += fmt.Sprintf("; %.0f%% of what the guest took went back to the host", 100*back)
			} else {
				line += "; none of what the guest took went back to the host"
			}
		}
		out = append(out, line+".")
	}
	return out
}

// userlandReading sets the userland steps against TCG's own cost and the
// targets of issue 16.
func (r *Report) userlandReading() []string {
	cpu := r.find(userland, rowULCPU)
	if cpu == nil {
		return nil
	}
	var out []string
	vmProc := readingVMSubject + "/" + readingSubject
	q0, haveQ0 := cpu.ratio(vmProc)
	if s := r.sentence(cpu, "s"); s != "" {
		line := "Real userland, the TCG floor: the CPU-bound job (no file access) takes " + s
		if haveQ0 {
			line += fmt.Sprintf("; VM/process %.1f×, what TCG costs by itself", q0)
		}
		out = append(out, line+".")
	}
	for _, row := range []string{rowULPyFirst, rowULPyAgain, rowULWalk} {
		x := r.find(userland, row)
		s := r.sentence(x, "s")
		if s == "" {
			continue
		}
		line := row + ": " + s
		if q, ok := x.ratio(vmProc); ok {
			line += fmt.Sprintf("; VM/process %.1f×", q)
			if haveQ0 {
				rel := q / q0
				line += fmt.Sprintf(", %.2f times the CPU job's (issue 16's target ≤ %.1f: %s)", rel, targetULOverCPU, verdict(rel <= targetULOverCPU))
			}
		}
		out = append(out, line+".")
	}
	r1, r2 := r.find(userland, rowULRead1), r.find(userland, rowULRead2)
	if a, ok := r1.median(readingVMSubject); ok {
		if b, ok := r2.median(readingVMSubject); ok && b > 0 {
			line := fmt.Sprintf("Reading the same files twice in a VM: %s s, then %s s, %.1f× faster (issue 16's target ≥ %d×: %s)",
				num(a), num(b), a/b, targetULReread, verdict(a/b >= targetULReread))
			pa, ok1 := r1.median(readingSubject)
			pb, ok2 := r2.median(readingSubject)
			if ok1 && ok2 {
				line += fmt.Sprintf("; in process isolation %s s then %s s", num(pa), num(pb))
			}
			if q, ok := r1.ratio(vmProc + " " + ulOverCPU); ok {
				line += fmt.Sprintf("; VM/process over the CPU job's: first read %.2f", q)
				if q2, ok := r2.ratio(vmProc + " " + ulOverCPU); ok {
					line += fmt.Sprintf(", second %.2f", q2)
				}
			}
			out = append(out, line+".")
		}
	}
	var ws []string
	for _, row := range []string{rowULWriteRoot, rowULWriteVol} {
		x := r.find(userland, row)
		p, ok1 := x.median(readingSubject)
		v, ok2 := x.median(readingVMSubject)
		if ok1 && ok2 {
			w := fmt.Sprintf("%s: process %s s, VM %s s", strings.TrimPrefix(row, "write 64 MiB + fsync, "), num(p), num(v))
			if q, ok := x.ratio(vmProc + " " + ulOverCPU); ok {
				w += fmt.Sprintf(" (%.2f times the CPU job's ratio)", q)
			}
			ws = append(ws, w)
		}
	}
	if len(ws) > 0 {
		out = append(out, "Writing 64 MiB and fsync, "+strings.Join(ws, "; ")+".")
	}
	if x := r.find(userland, rowULWhole); x != nil {
		if v, ok := x.median(readingVMSubject); ok {
			out = append(out, fmt.Sprintf("Whole `run` of the small Python script in a VM: %s s (issue 16's target ≤ %d s: %s); %s.",
				num(v), targetULWhole, verdict(v <= targetULWhole), r.sentence(x, "s")))
		}
	}
	return out
}

// netReading gives each network figure's medians and ratios.
func (r *Report) netReading() []string {
	return r.rowReadings(network, "", "Network, ", "; ", sameName)
}

func sameName(name string) string { return name }

// rowReadings gives a line per row of section sec and table (""; all):
// prefix, the row's short name, its medians, then its ratios after sep,
// each named by ratioName.
func (r *Report) rowReadings(sec, table, prefix, sep string, ratioName func(string) string) []string {
	var out []string
	for _, x := range r.rows(sec, table) {
		s := r.sentence(x, x.Unit)
		if s == "" {
			continue
		}
		var qs []string
		for _, q := range x.Ratios {
			qs = append(qs, fmt.Sprintf("%s %.2f", ratioName(q.Name), q.Value))
		}
		if len(qs) > 0 {
			s += sep + strings.Join(qs, ", ")
		}
		out = append(out, prefix+strings.SplitN(x.Name, " (", 2)[0]+": "+s+".")
	}
	return out
}
