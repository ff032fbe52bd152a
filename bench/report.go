package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// notesMarker separates the generated report from hand-written notes (the
// speed-work log), which every run keeps.
const notesMarker = "<!-- Notes below this line are kept when `make bench` rewrites this file. -->"

var tableTitles = map[string]string{
	"latency":    "Latency (ms, lower is better)",
	"throughput": "Throughput (containers/s, higher is better)",
	"memory":     "Memory (MiB, lower is better)",
	"boot":       "`run` of /bin/true against the floor (s, lower is better)",
	"phases":     "Where runh's time goes: the same container verb by verb (s; … rows are parts of `create`)",
	"pss":        "Host memory of shim + QEMU (PSS, MiB, lower is better)",
	"size-cpu":   "A VM sized like the host against 1 vCPU: a parallel CPU job, and what the container sees (lower time is better)",
	"size-mem":   "Host memory of a small and a default-size VM, and of memory the guest frees (MiB, lower is better)",
	"kernel":     "The guest kernel against an earlier one (lower is better)",
	"network":    "Host → container over a bridge (higher is better)",
	"steps":      "Steps timed inside one container per contender and round (s, lower is better)",
	"whole":      "Whole `run` (s, lower is better)",
	"pod":        "A pod: a sandbox and two containers in its namespaces (lower is better)",
	app:          "WordPress and MariaDB under podman, by `database+web` runtime",
}

func (r *Report) write(mdPath, jsonPath string) error {
	if jsonPath != "" {
		b, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFile(jsonPath, append(b, '\n')); err != nil {
			return err
		}
	}
	return r.writeMarkdown(mdPath, jsonPath)
}

// writeMarkdown writes the report to mdPath, keeping the notes of the file
// it replaces; jsonPath is only named in it.
func (r *Report) writeMarkdown(mdPath, jsonPath string) error {
	if mdPath == "" {
		return nil
	}
	notes := "\n_Speed-work log: each change's before/after ratios from this harness go here._\n"
	if old, err := os.ReadFile(mdPath); err == nil {
		if _, after, ok := bytes.Cut(old, []byte(notesMarker)); ok {
			notes = string(after)
		}
	}
	return writeFile(mdPath, []byte(r.markdown(jsonPath)+notesMarker+notes))
}

func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (r *Report) markdown(jsonPath string) string {
	var b strings.Builder
	e := r.Env
	c := r.Config
	fmt.Fprintf(&b, "# Benchmarks\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (the harness in `bench/`)")
	if jsonPath != "" {
		fmt.Fprintf(&b, "; raw samples in `%s`", filepath.Base(jsonPath))
	}
	fmt.Fprintf(&b, ". Run of %s on %s (%d cores, %s RAM), Linux %s, in %.0f s.\n\n",
		r.Date, e.CPU, e.Cores, e.MemTotal, e.Kernel, e.Duration)
	fmt.Fprintf(&b, "- Contenders: runh `%s`; runc `%s`; crun `%s`", e.Versions["runh"], e.Versions["runc"], e.Versions["crun"])
	if v, ok := e.Versions[runcSrcName]; ok {
		fmt.Fprintf(&b, "; %s `%s`, runc built from the module runh links (the same libcontainer), so runh/%s is what runh adds to libcontainer", runcSrcName, v, runcSrcName)
	}
	b.WriteString(".\n")
	fmt.Fprintf(&b, "- cgroups: %s.\n", e.Cgroup)
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) at start %s, at end %s; highest 1-min load before a section %.2f "+
		"(it lags: the throughput section's 16 containers at a time leave one of about 20). Before each section the harness "+
		"waits up to a minute for the CPUs to go quiet; the busiest they were in the second before one started: %.0f%%.\n",
		e.LoadStart, e.LoadEnd, e.MaxLoad1, 100*e.MaxBusy)
	if len(e.Sections) > 0 {
		var parts []string
		for _, s := range e.Sections {
			parts = append(parts, fmt.Sprintf("%s %.0f s", s.Name, s.Seconds))
		}
		fmt.Fprintf(&b, "- Time per section: %s.\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, "- Method: one busybox bundle shared by all contenders (and by both isolation modes), "+
		"each runtime with its own private `--root`; %s. Cells read median (p10–p90); ratios are of medians.", e.Interleaved)
	if c.has("run") || c.has("verbs") || c.has("exec") {
		fmt.Fprintf(&b, " Latencies are the wall time of one invocation of the runtime binary (its fork and exec included), "+
			"%d timed iterations after %d warm-up iterations.", c.N, c.Warmup)
	}
	if c.has("throughput") {
		fmt.Fprintf(&b, " Throughput: batches of %d containers, each created, started, waited for (pidfd) and deleted; "+
			"%d batches per contender and concurrency.", c.TPTotal, c.TPRounds)
	}
	if _, skipped := r.Skipped["memory"]; c.has("memory") && !skipped {
		fmt.Fprintf(&b, " Memory: %d `create`s per contender, their process trees read from /proc every millisecond.", c.MemN)
	}
	if _, skipped := r.Skipped["vm-run"]; c.has("vm-run") && !skipped {
		fmt.Fprintf(&b, " Hypervisor `run`: %d iterations, restored, booted and the floor interleaved.", c.VMN)
	}
	if _, skipped := r.Skipped["vm-size"]; c.has("vm-size") && !skipped {
		fmt.Fprintf(&b, " VM size: %d rounds, each the CPU job in every contender (rotated), then an idle small VM, an idle default one "+
			"and the default one's guest taking and freeing 1 GiB.", c.VMSizeN)
	}
	if _, skipped := r.Skipped["vm-kernel"]; c.has("vm-kernel") && !skipped {
		fmt.Fprintf(&b, " Guest kernel: %d iterations per kernel, booted and restored interleaved.", c.VMN)
	}
	if _, skipped := r.Skipped["net"]; c.has("net") && !skipped {
		b.WriteString(" Network: one server container per contender, each in its own network namespace on a private bridge " +
			"(veth, address, default route: what the CNI bridge plugin sets up), the namespace's path in config.json; " +
			"both isolation modes in the same rounds.")
	}
	b.WriteString("\n\n")
	if e.MaxBusy > 0.5 {
		fmt.Fprintf(&b, "> **The machine was busy during this run** (its CPUs %.0f%% busy before a section started, "+
			"after a minute's wait for quiet): read the ratios as indicative only.\n\n", 100*e.MaxBusy)
	}
	for _, sec := range []struct{ id, title string }{{process, "Process isolation"}, {hypervisor, "Hypervisor isolation"},
		{network, "Network"}, {userland, "Real userland"}, {pods, "Pods"}, {app, "A real application"}} {
		if (sec.id == network && !c.has("net")) || (sec.id == userland && !c.has("userland")) || (sec.id == pods && !c.has("pod")) ||
			(sec.id == app && !c.has(app)) {
			continue // absent from reports of runs without it
		}
		fmt.Fprintf(&b, "## %s\n\n", sec.title)
		switch sec.id {
		case hypervisor:
			r.vmPreamble(&b)
		case userland:
			r.userlandPreamble(&b)
		case app:
			r.appPreamble(&b)
		}
		r.skippedFor(&b, sec.id)
		for _, t := range []string{"latency", "throughput", "memory", "boot", "phases", "pss", "size-cpu", "size-mem", "kernel",
			"network", "steps", "whole", "pod", app} {
			rows := r.rows(sec.id, t)
			if len(rows) > 0 {
				fmt.Fprintf(&b, "### %s\n\n%s\n", tableTitles[t], table(rows))
			}
		}
	}
	fmt.Fprintf(&b, "## Reading\n\n")
	for _, line := range r.reading() {
		fmt.Fprintf(&b, "- %s\n", line)
	}
	b.WriteString("\n")
	return b.String()
}

func (r *Report) vmPreamble(b *strings.Builder) {
	v := r.VM
	if v == nil {
		return
	}
	fmt.Fprintf(b, "Accelerator **%s** (%s). Guest kernel `%s` (%s); %s; transport %s. "+
		"VM: %s, %d MiB, %d vCPU (from %s).",
		v.Accel, v.AccelReason, v.Kernel, v.KernelVersion, v.QEMUVersion, v.Transport,
		machineName(v.Machine), v.MemoryMiB, v.CPUs, v.SizesFrom)
	if v.Phases != "" { // vm-run ran
		fmt.Fprintf(b, " Phase breakdown: %s.", v.Phases)
	}
	b.WriteString("\n\n")
	if v.Template == "" {
		return
	}
	fmt.Fprintf(b, "Method: `runh-vm` is runh's default, each VM restored from a template; `runh-vm-cold` boots each "+
		"(`--vm-template=false`). runh keeps its initrd and templates in a cache of this run's own (`RUNH_CACHE_DIR`), "+
		"so the template is made by this run's first VM (whose boot.json said **%s**%s) before anything is timed, "+
		"and no other VM on the host shares its pages.",
		v.Template, parenthesized(v.TemplateReason))
	if len(v.Starts) > 0 {
		fmt.Fprintf(b, " How the timed VMs started, by their boot.json: %s.", startsText(v.Starts))
	}
	b.WriteString("\n\n")
}

func parenthesized(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// startsText prints the start outcomes of each contender, e.g.
// "runh-vm restored 8; runh-vm-cold cold 8".
func startsText(m map[string]map[string]int) string {
	if len(m) == 0 {
		return "not recorded"
	}
	var rts []string
	for rt := range m {
		rts = append(rts, rt)
	}
	sort.Strings(rts)
	var parts []string
	for _, rt := range rts {
		var hows []string
		for how := range m[rt] {
			hows = append(hows, how)
		}
		sort.Strings(hows)
		var cs []string
		for _, how := range hows {
			cs = append(cs, fmt.Sprintf("%s %d", how, m[rt][how]))
		}
		parts = append(parts, rt+" "+strings.Join(cs, ", "))
	}
	return strings.Join(parts, "; ")
}

func (r *Report) userlandPreamble(b *strings.Builder) {
	u := r.Userland
	if u == nil {
		return
	}
	py := ""
	if u.Python != "" {
		py = ", Python " + u.Python
	}
	n := 0
	if r.Config != nil {
		n = r.Config.UserlandN
	}
	fmt.Fprintf(b, "Method: Debian 12 minbase with python3 and sqlite3 (`scripts/mkdebian.sh`: `%s`%s); %s. "+
		"Each of %d rounds runs, per contender in rotated order, one container whose bash script times each step "+
		"(bash's `time` for commands, Python's `time.perf_counter` inside one Python process for reading, writing and the CPU job), "+
		"so a VM's start is in none of them, and one whole `run` of a small script. One untimed whole run per contender first. "+
		"`runh-vm/runh` is the VM's cost over process isolation; `÷ CPU-bound's` divides it by the same ratio of the CPU-bound job, "+
		"which touches no file: 1.00 means the step costs in a VM only what TCG costs.\n\n",
		u.Rootfs, py, u.Layout, n)
}

// skippedFor lists the skipped sections belonging to a report section.
func (r *Report) skippedFor(b *strings.Builder, sec string) {
	var ks []string
	for k := range r.Skipped {
		if reportSection(k) == sec {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	for _, k := range ks {
		fmt.Fprintf(b, "- `%s`: skipped: %s\n", k, r.Skipped[k])
	}
	if len(ks) > 0 {
		b.WriteString("\n")
	}
	if sec == hypervisor && len(r.rows(hypervisor, "")) == 0 && len(ks) == 0 {
		b.WriteString("Not run (see `-sections`).\n\n")
	}
}

// reportSection is the report section a -sections name belongs to.
func reportSection(name string) string {
	switch {
	case name == "net":
		return network
	case name == userland:
		return userland
	case name == "pod":
		return pods
	case name == app:
		return app
	case strings.HasPrefix(name, "vm-"):
		return hypervisor
	}
	return process
}

// rows returns the results of a section and table ("" for all tables).
func (r *Report) rows(sec, table string) []*Result {
	var out []*Result
	for _, x := range r.Results {
		if x.Section == sec && (table == "" || x.Table == table) {
			out = append(out, x)
		}
	}
	return out
}

func table(rows []*Result) string {
	var cols, ratios []string
	for _, x := range rows {
		for _, s := range x.Series {
			if !contains(cols, s.Runtime) {
				cols = append(cols, s.Runtime)
			}
		}
		for _, q := range x.Ratios {
			if !contains(ratios, q.Name) {
				ratios = append(ratios, q.Name)
			}
		}
	}
	var b, foot strings.Builder
	b.WriteString("| |")
	for _, c := range append(append([]string{}, cols...), ratios...) {
		b.WriteString(" " + c + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("--:|", len(cols)+len(ratios)) + "\n")
	for _, x := range rows {
		b.WriteString("| " + x.Name + " |")
		for _, c := range cols {
			b.WriteString(" " + cell(x, c) + " |")
			for _, s := range x.Series {
				if s.Runtime == c && s.Errors > 0 {
					fmt.Fprintf(&foot, "- %s, %s: %d failed; first: `%s`\n", c, x.Name, s.Errors, oneLine(s.FirstError))
				}
			}
		}
		for _, q := range ratios {
			if v, ok := x.ratio(q); ok {
				fmt.Fprintf(&b, " %.2f× |", v)
			} else {
				b.WriteString(" – |")
			}
		}
		b.WriteString("\n")
		if x.Note != "" {
			fmt.Fprintf(&foot, "- %s: %s\n", x.Name, x.Note)
		}
	}
	if foot.Len() > 0 {
		b.WriteString("\n" + foot.String())
	}
	return b.String()
}

func cell(x *Result, rt string) string {
	for _, s := range x.Series {
		if s.Runtime != rt {
			continue
		}
		var v string
		switch {
		case s.N == 0 && s.Errors > 0:
			return "failed"
		case s.N == 0:
			return "–"
		case s.N == 1 || s.P10 == s.P90:
			v = num(s.Median)
		default:
			v = fmt.Sprintf("%s (%s–%s)", num(s.Median), num(s.P10), num(s.P90))
		}
		if s.Errors > 0 {
			v += fmt.Sprintf(" [%d failed]", s.Errors)
		}
		return v
	}
	return "–"
}

// num prints about three significant digits.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ReplaceAll(s, "`", "'")
}
