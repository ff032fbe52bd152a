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
	targetVMVsFloor  = 1.25 // runh-vm/floor, `run`
	readingSubject   = "runh"
	readingVMSubject = "runh-vm"
)

func verdict(ok bool) string {
	if ok {
		return "met"
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
	out = append(out, r.netReading()...)
	if len(out) == 0 {
		out = append(out, "No figures were produced.")
	}
	return out
}

// sentence lists the medians of a row, subject first.
func (r *Report) sentence(x *Result, unit string) string {
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
	a, ok1 := x.median(readingVMSubject)
	f, ok2 := x.median(floorName)
	accel := ""
	if r.VM != nil {
		accel = " (accel " + r.VM.Accel + ")"
	}
	if ok1 && ok2 {
		q := a / f
		out = append(out, fmt.Sprintf("Hypervisor `run` of /bin/true%s: runh %s s against a bare boot of %s s, ratio %.2f (target ≤ %.2f: %s); "+
			"the boot itself is %.0f%% of runh's time, runh's own part %s s.",
			accel, num(a), num(f), q, targetVMVsFloor, verdict(q <= targetVMVsFloor), 100*f/a, num(a-f)))
	}
	med := func(name string) (float64, bool) { return r.find(hypervisor, name).median(readingVMSubject) }
	if c, ok := med(rowVMCreate); ok {
		st, _ := med(rowVMStart)
		wt, _ := med(rowVMWait)
		del, _ := med(rowVMDelete)
		line := fmt.Sprintf("Verb by verb: `create` %s s", num(c))
		costs := map[string]float64{"`start`": st, "the container's run to its exit": wt, "`delete`": del}
		if ag, ok := med(rowVMAgent); ok {
			line += fmt.Sprintf(" (QEMU start to agent answering %s s", num(ag))
			if gi, ok := med(rowVMGuestInit); ok {
				line += fmt.Sprintf("; the guest reached /init after %s s of guest time", num(gi))
			}
			line += ")"
			costs["the VM boot up to the agent answering"] = ag
			costs["`create` outside the boot (shim, initrd, QEMU launch, container creation in the guest)"] = c - ag
		} else {
			costs["`create`"] = c
		}
		line += fmt.Sprintf(", `start` %s s, then %s s until the container exited, `delete` %s s.", num(st), num(wt), num(del))
		out = append(out, line)
		worst, wv := "", 0.0
		for k, v := range costs {
			if v > wv || (v == wv && k < worst) {
				worst, wv = k, v
			}
		}
		out = append(out, fmt.Sprintf("Largest remaining cost with hypervisor isolation: %s, %s s.", worst, num(wv)))
	}
	if one := r.find(hypervisor, rowPSSOne); one != nil {
		if v, ok := one.median(readingVMSubject); ok {
			line := fmt.Sprintf("One idle VM container costs %s MiB of host PSS", num(v))
			sh, ok1 := r.find(hypervisor, rowPSSShim).median(readingVMSubject)
			qe, ok2 := r.find(hypervisor, rowPSSQEMU).median(readingVMSubject)
			if ok1 && ok2 {
				line += fmt.Sprintf(" (shim %s, QEMU %s)", num(sh), num(qe))
			}
			if r.Config != nil {
				if per, ok := r.find(hypervisor, fmt.Sprintf(rowPSSPerFmt, r.Config.VMMany)).median(readingVMSubject); ok {
					line += fmt.Sprintf("; with %d running, %s MiB each", r.Config.VMMany, num(per))
				}
			}
			out = append(out, line+".")
		}
	}
	return out
}

// netReading gives each network figure's medians and ratios.
func (r *Report) netReading() []string {
	var out []string
	for _, x := range r.rows(network, "") {
		s := r.sentence(x, x.Unit)
		if s == "" {
			continue
		}
		var qs []string
		for _, q := range x.Ratios {
			qs = append(qs, fmt.Sprintf("%s %.2f", q.Name, q.Value))
		}
		if len(qs) > 0 {
			s += "; " + strings.Join(qs, ", ")
		}
		out = append(out, "Network, "+strings.SplitN(x.Name, " (", 2)[0]+": "+s+".")
	}
	return out
}
