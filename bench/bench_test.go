package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
