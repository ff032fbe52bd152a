package main

import (
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	for p, want := range map[float64]float64{0.1: 2, 0.5: 6, 0.9: 10} {
		if got := percentile(s, p); got != want {
			t.Errorf("p%.0f = %v, want %v", p*100, got, want)
		}
	}
	if got := percentile([]float64{1, 2}, 0.5); got != 1.5 {
		t.Errorf("median of 1,2 = %v", got)
	}
}

func TestFinalizeRatios(t *testing.T) {
	r := &Report{}
	x := r.result(process, "latency", "x", "ms", false, "runh", "runc", "crun")
	for _, v := range []float64{10, 20, 30} {
		x.add("runh", v)
		x.add("runc", v*2)
	}
	r.finalize()
	if q, ok := x.ratio("runh/runc"); !ok || q != 0.5 {
		t.Errorf("runh/runc = %v %v", q, ok)
	}
	if _, ok := x.ratio("runh/crun"); ok {
		t.Error("ratio against an empty series")
	}
}

func TestNotesKept(t *testing.T) {
	dir := t.TempDir()
	md := filepath.Join(dir, "b.md")
	r := &Report{Config: &config{}, Env: Env{Cores: 2}}
	if err := r.write(md, ""); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(md)
	os.WriteFile(md, append(b, "my note\n"...), 0o644)
	if err := r.write(md, ""); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(md)
	if !strings.Contains(string(b), "my note") || strings.Count(string(b), notesMarker) != 1 {
		t.Errorf("notes not kept:\n%s", b)
	}
}

// TestReadingOptionalContender: runc-src is read about when it ran, and
// not claimed beaten when it did not.
func TestReadingOptionalContender(t *testing.T) {
	for _, withSrc := range []bool{false, true} {
		rts := []string{"runh", "runc", "crun"}
		versions := map[string]string{"runh": "1", "runc": "1", "crun": "1"}
		if withSrc {
			rts = append(rts, runcSrcName)
			versions[runcSrcName] = "1"
		}
		r := &Report{Env: Env{Versions: versions}}
		for _, row := range []string{rowRun, rowCreate} {
			x := r.result(process, "latency", row, "ms", false, rts...)
			for _, rt := range rts {
				x.add(rt, 10)
			}
			x.add("runh", 12) // median above the others
		}
		r.finalize()
		text := strings.Join(r.reading(), "\n")
		if got := strings.Contains(text, runcSrcName); got != withSrc {
			t.Errorf("runc-src ran: %v, reading mentions it: %v\n%s", withSrc, got, text)
		}
	}
}

func TestParseUserland(t *testing.T) {
	good := "py-first 0.951\npy-again 0.2\npy-again 0.18\nwalk 6.2\nwalk-entries 8237\npython 3.11.2\n" +
		"read-files 1310\nread1 4.7\nread2 4.2\nwrite-root 6.4\nwrite-vol 0.24\ncpu 1.1\ncpu 1.0\n"
	o, err := parseUserland(good)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.steps["py-again"]; len(got) != 2 || got[1] != 0.18 {
		t.Errorf("py-again = %v", got)
	}
	if o.facts["walk-entries"] != "8237" || o.facts["python"] != "3.11.2" {
		t.Errorf("facts = %v", o.facts)
	}
	for name, out := range map[string]string{
		"script error": "py-first 0.9\nerror walk: find: oops\n",
		"missing step": strings.Replace(good, "write-vol 0.24\n", "", 1),
		"bad time":     strings.Replace(good, "walk 6.2", "walk 6,2", 1),
	} {
		if _, err := parseUserland(out); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestUserlandScripts: the scripts' Sprintf verbs all took a value.
func TestUserlandScripts(t *testing.T) {
	for name, s := range map[string]string{"bash": ulScript, "python": ulPython} {
		if strings.Contains(s, "%!") {
			t.Errorf("%s script has a bad verb:\n%s", name, s)
		}
	}
	if !strings.Contains(ulPython, `"/data/runh-bench.dat"`) || !strings.Contains(ulScript, "i < 5;") {
		t.Error("values not substituted")
	}
}

func TestRelativeRatio(t *testing.T) {
	r := &Report{}
	cpu := r.result(userland, "steps", rowULCPU, "s", false, "runh", "runh-vm")
	walk := r.result(userland, "steps", rowULWalk, "s", false, "runh", "runh-vm")
	walk.RatioPairs = []string{"runh-vm/runh"}
	walk.Relative = &Relative{Pair: "runh-vm/runh", Of: rowULCPU, Name: "÷ CPU"}
	cpu.RatioPairs = walk.RatioPairs
	cpu.add("runh", 1)
	cpu.add("runh-vm", 10)
	walk.add("runh", 2)
	walk.add("runh-vm", 60)
	for i := 0; i < 2; i++ { // as a run, then as -render of its JSON
		r.finalize()
		if q, ok := walk.ratio("runh-vm/runh ÷ CPU"); !ok || q != 3 || len(walk.Ratios) != 2 {
			t.Errorf("pass %d: ratios %v, want 30× and 3 over the CPU's 10×", i, walk.Ratios)
		}
	}
}

func TestReadingTargets(t *testing.T) {
	r := &Report{Config: &config{VMMany: 10}, VM: &VMInfo{Accel: "tcg"}}
	add := func(sec, name string, v map[string]float64) *Result {
		var rts []string
		for rt := range v {
			rts = append(rts, rt)
		}
		x := r.result(sec, "t", name, "s", false, rts...)
		for rt, val := range v {
			x.add(rt, val)
		}
		return x
	}
	add(hypervisor, rowVMRun, map[string]float64{"runh-vm": 0.6, "runh-vm-cold": 1.5, floorName: 1})
	add(hypervisor, rowPSSOne, map[string]float64{"runh-vm": 50, "runh-vm-cold": 170})
	add(hypervisor, fmt.Sprintf(rowPSSPerFmt, 10), map[string]float64{"runh-vm": 46})
	add(userland, rowULCPU, map[string]float64{"runh": 0.1, "runh-vm": 1})
	add(userland, rowULRead1, map[string]float64{"runh": 0.1, "runh-vm": 1})
	add(userland, rowULRead2, map[string]float64{"runh": 0.1, "runh-vm": 0.25})
	add(userland, rowULWhole, map[string]float64{"runh": 0.3, "runh-vm": 4.5})
	w := add(userland, rowULWalk, map[string]float64{"runh": 0.1, "runh-vm": 2})
	w.RatioPairs = []string{"runh-vm/runh"}
	r.find(userland, rowULCPU).RatioPairs = w.RatioPairs
	r.finalize()
	text := strings.Join(r.reading(), "\n")
	for _, want := range []string{
		"ratio 0.60 (issue 12's target ≤ 1.00: met, and the aim of 0.7 too)",
		"ratio 1.50 to the floor (issue 5's target ≤ 1.25: not met)",
		"target ≤ 60 MiB: met; the aim of 40 not yet",
		"46.0 MiB each (target ≤ 45: not met)",
		"VM/process 20.0×, 2.00 times the CPU job's (issue 16's target ≤ 1.5: not met)",
		"4.0× faster (issue 16's target ≥ 5×: not met)",
		"4.50 s (issue 16's target ≤ 5 s: met)",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("reading lacks %q:\n%s", want, text)
		}
	}
}

// cpuBusy tells a spinning CPU from an idle one: the settle before each
// section relies on it.
func TestCPUBusy(t *testing.T) {
	idle := cpuBusy(300 * time.Millisecond)
	if idle < 0 || idle > 1 {
		t.Fatalf("cpuBusy = %v, want a share between 0 and 1", idle)
	}
	stop := make(chan struct{})
	for i := 0; i < goruntime.NumCPU(); i++ {
		go func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	busy := cpuBusy(300 * time.Millisecond)
	close(stop)
	if busy < 0.8 {
		t.Errorf("cpuBusy with every CPU spinning = %.2f, want at least 0.8", busy)
	}
}
