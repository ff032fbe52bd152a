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
	"network":    "Host → container over a bridge (higher is better)",
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
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) at start %s, at end %s; highest 1-min load between sections %.2f.\n",
		e.LoadStart, e.LoadEnd, e.MaxLoad1)
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
		fmt.Fprintf(&b, " Hypervisor `run`: %d iterations, interleaved with the floor.", c.VMN)
	}
	if _, skipped := r.Skipped["net"]; c.has("net") && !skipped {
		b.WriteString(" Network: one server container per contender, each in its own network namespace on a private bridge " +
			"(veth, address, default route: what the CNI bridge plugin sets up), the namespace's path in config.json; " +
			"both isolation modes in the same rounds.")
	}
	b.WriteString("\n\n")
	if e.MaxLoad1 > 0.5*float64(e.Cores) {
		fmt.Fprintf(&b, "> **The machine was busy during this run** (1-min load up to %.1f on %d cores): "+
			"read the ratios as indicative only.\n\n", e.MaxLoad1, e.Cores)
	}
	for _, sec := range []struct{ id, title string }{{process, "Process isolation"}, {hypervisor, "Hypervisor isolation"}, {network, "Network"}} {
		if sec.id == network && !c.has("net") {
			continue // absent from reports of runs without it
		}
		fmt.Fprintf(&b, "## %s\n\n", sec.title)
		if sec.id == hypervisor {
			r.vmPreamble(&b)
		}
		r.skippedFor(&b, sec.id)
		for _, t := range []string{"latency", "throughput", "memory", "boot", "phases", "pss", "network"} {
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
		"VM: %s, %d MiB, %d vCPU (from %s). Phase breakdown: %s.\n\n",
		v.Accel, v.AccelReason, v.Kernel, v.KernelVersion, v.QEMUVersion, v.Transport,
		machineName(v.Machine), v.MemoryMiB, v.CPUs, v.SizesFrom, v.Phases)
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
