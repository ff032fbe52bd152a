package main

import (
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// Series is one contender's samples of one figure.
type Series struct {
	Runtime    string    `json:"runtime"`
	Samples    []float64 `json:"samples"`
	N          int       `json:"n"`
	Median     float64   `json:"median"`
	P10        float64   `json:"p10"`
	P90        float64   `json:"p90"`
	Errors     int       `json:"errors,omitempty"`
	FirstError string    `json:"firstError,omitempty"`
}

// Ratio is the ratio of medians of the first series to another one.
type Ratio struct {
	Name  string  `json:"name"` // e.g. "runh/runc"
	Value float64 `json:"value"`
}

// Result is one figure (a table row): the first series is the subject,
// the others what it is compared with.
type Result struct {
	Section        string    `json:"section"` // "process" or "hypervisor"
	Table          string    `json:"table"`
	Name           string    `json:"name"`
	Unit           string    `json:"unit"`
	HigherIsBetter bool      `json:"higherIsBetter,omitempty"`
	Note           string    `json:"note,omitempty"`
	Series         []*Series `json:"series"`
	// RatioPairs, "a/b" each, replace the default ratios (the first
	// series to each other one), e.g. to compare two modes of runh.
	RatioPairs []string `json:"ratioPairs,omitempty"`
	// Relative, if set, adds one more ratio: this row's ratio Pair divided
	// by the same ratio of another row, e.g. a VM's cost beyond TCG's.
	Relative *Relative `json:"relative,omitempty"`
	Ratios   []Ratio   `json:"ratios,omitempty"`
}

// Relative is the ratio Pair of a row over Pair of row Of (same section),
// named "Pair Name".
type Relative struct {
	Pair string `json:"pair"`
	Of   string `json:"of"`
	Name string `json:"name"`
}

// Report is everything a run produced; it is written as JSON as is.
type Report struct {
	Date     string            `json:"date"`
	Env      Env               `json:"environment"`
	Config   *config           `json:"config"`
	VM       *VMInfo           `json:"vm,omitempty"`
	Userland *UserlandInfo     `json:"userland,omitempty"`
	App      *AppInfo          `json:"app,omitempty"`
	Skipped  map[string]string `json:"skipped,omitempty"` // section -> reason
	Results  []*Result         `json:"results"`

	mu sync.Mutex
}

// Env describes the machine and the contenders.
type Env struct {
	Kernel    string            `json:"kernel"`
	CPU       string            `json:"cpu"`
	Cores     int               `json:"cores"`
	MemTotal  string            `json:"memTotal"`
	Cgroup    string            `json:"cgroup"`
	Versions  map[string]string `json:"versions"`
	LoadStart string            `json:"loadavgStart"`
	LoadEnd   string            `json:"loadavgEnd"`
	MaxLoad1  float64           `json:"maxLoad1"` // highest 1-min load seen before a section
	// MaxBusy is the highest share of CPU time busy in the second before a
	// section started, after up to a minute's wait for quiet.
	MaxBusy     float64       `json:"maxBusyBeforeSection"`
	Duration    float64       `json:"durationSeconds"`
	Sections    []SectionTime `json:"sections,omitempty"` // wall time of each section, in run order
	GoVersion   string        `json:"goVersion"`
	Interleaved string        `json:"interleaving"`
}

// SectionTime is how long one section of the run took.
type SectionTime struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

func (e *Env) addSection(name string, d time.Duration) {
	e.Sections = append(e.Sections, SectionTime{name, d.Seconds()})
	logf("section %s took %.0f s", name, d.Seconds())
}

// result returns the row section/name, creating it with one empty series
// per runtime (in that order) the first time.
func (r *Report) result(section, table, name, unit string, higher bool, runtimes ...string) *Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.Results {
		if x.Section == section && x.Name == name {
			return x
		}
	}
	x := &Result{Section: section, Table: table, Name: name, Unit: unit, HigherIsBetter: higher}
	for _, rt := range runtimes {
		x.Series = append(x.Series, &Series{Runtime: rt, Samples: []float64{}})
	}
	r.Results = append(r.Results, x)
	return x
}

func (r *Report) skip(section, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Skipped == nil {
		r.Skipped = map[string]string{}
	}
	r.Skipped[section] = reason
	logf("%s: skipped: %s", section, reason)
}

func (x *Result) series(rt string) *Series {
	for _, s := range x.Series {
		if s.Runtime == rt {
			return s
		}
	}
	s := &Series{Runtime: rt, Samples: []float64{}}
	x.Series = append(x.Series, s)
	return s
}

func (x *Result) add(rt string, v float64) {
	s := x.series(rt)
	s.Samples = append(s.Samples, v)
}

func (x *Result) fail(rt string, err error) {
	s := x.series(rt)
	s.Errors++
	if s.FirstError == "" {
		s.FirstError = err.Error()
		logf("%s: %s: %v", x.Name, rt, err)
	}
}

// finalize computes the statistics and the ratios of medians.
func (r *Report) finalize() {
	for _, x := range r.Results {
		for _, s := range x.Series {
			s.N = len(s.Samples)
			if s.N == 0 {
				continue
			}
			sorted := append([]float64(nil), s.Samples...)
			sort.Float64s(sorted)
			s.Median = percentile(sorted, 0.5)
			s.P10 = percentile(sorted, 0.1)
			s.P90 = percentile(sorted, 0.9)
		}
		x.Ratios = nil
		pairs := x.RatioPairs
		if pairs == nil {
			for _, s := range x.Series[min(1, len(x.Series)):] {
				pairs = append(pairs, x.Series[0].Runtime+"/"+s.Runtime)
			}
		}
		for _, p := range pairs {
			a, b, _ := strings.Cut(p, "/")
			num, ok1 := x.median(a)
			den, ok2 := x.median(b)
			if ok1 && ok2 && den != 0 {
				x.Ratios = append(x.Ratios, Ratio{p, num / den})
			}
		}
	}
	// Relative ratios, once every row has its own.
	for _, x := range r.Results {
		rel := x.Relative
		if rel == nil {
			continue
		}
		q, ok1 := x.ratio(rel.Pair)
		of, ok2 := r.find(x.Section, rel.Of).ratio(rel.Pair)
		if ok1 && ok2 && of != 0 {
			x.Ratios = append(x.Ratios, Ratio{rel.Pair + " " + rel.Name, q / of})
		}
	}
}

// percentile interpolates linearly between the closest ranks of sorted.
func percentile(sorted []float64, p float64) float64 {
	rank := p * float64(len(sorted)-1)
	lo, hi := int(math.Floor(rank)), int(math.Ceil(rank))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(rank-float64(lo))
}

// find returns a finished row, or nil.
func (r *Report) find(section, name string) *Result {
	for _, x := range r.Results {
		if x.Section == section && x.Name == name {
			return x
		}
	}
	return nil
}

func (x *Result) ratio(name string) (float64, bool) {
	if x == nil {
		return 0, false
	}
	for _, q := range x.Ratios {
		if q.Name == name {
			return q.Value, true
		}
	}
	return 0, false
}

func (x *Result) median(rt string) (float64, bool) {
	if x == nil {
		return 0, false
	}
	for _, s := range x.Series {
		if s.Runtime == rt && s.N > 0 {
			return s.Median, true
		}
	}
	return 0, false
}
