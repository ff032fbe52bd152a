package main

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Row names of the process-isolation figures, also used by the reading.
const (
	rowRun       = "`run` /bin/true (create+start+wait+delete)"
	rowCreate    = "`create`"
	rowStart     = "`start`"
	rowDelete    = "`delete` (stopped container)"
	rowExec      = "`exec` /bin/true into a running container"
	rowMaxRSS    = "`create`: peak RSS of the largest runtime process (VmHWM)"
	rowSumRSS    = "`create`: peak RSS summed over the runtime's processes (/proc every 1 ms)"
	rowWaiting   = "created container: RSS of what waits for `start`"
	rowBinary    = "binary size"
	tpRowPattern = "throughput, %d at a time (%d containers)"
)

// benchRun times the headline: `run` of /bin/true in the foreground.
func (b *bench) benchRun() error {
	x := b.rep.result(process, "latency", rowRun, "ms", false, names(b.rts)...)
	w := b.workers[0]
	for i := 0; i < b.c.Warmup+b.c.N && b.ctx.Err() == nil; i++ {
		for _, r := range rotate(b.rts, i) {
			id := b.id(r, "run", i)
			d, _, err := w.call(r, "run", "--bundle", b.trueBundle, id)
			switch {
			case err != nil:
				w.forceDelete(r, id)
				x.fail(r.Name, err)
			case i >= b.c.Warmup:
				x.add(r.Name, ms(d))
			}
		}
	}
	return nil
}

// benchVerbs times create, start and delete one by one.
func (b *bench) benchVerbs() error {
	rows := []*Result{
		b.rep.result(process, "latency", rowCreate, "ms", false, names(b.rts)...),
		b.rep.result(process, "latency", rowStart, "ms", false, names(b.rts)...),
		b.rep.result(process, "latency", rowDelete, "ms", false, names(b.rts)...),
	}
	w := b.workers[0]
	for i := 0; i < b.c.Warmup+b.c.N && b.ctx.Err() == nil; i++ {
		for _, r := range rotate(b.rts, i) {
			t, err := w.cycle(r, b.id(r, "verbs", i), b.trueBundle, nil)
			switch {
			case err != nil:
				rows[0].fail(r.Name, err)
			case i >= b.c.Warmup:
				rows[0].add(r.Name, ms(t.create))
				rows[1].add(r.Name, ms(t.start))
				rows[2].add(r.Name, ms(t.delete))
			}
		}
	}
	return nil
}

// benchExec times `exec` of /bin/true into one sleeping container per
// runtime.
func (b *bench) benchExec() error {
	x := b.rep.result(process, "latency", rowExec, "ms", false, names(b.rts)...)
	w := b.workers[0]
	var live []*runtime
	for _, r := range b.rts {
		id := b.id(r, "exec", 0)
		if _, err := w.startDetached(r, id, b.sleepBundle); err != nil {
			x.fail(r.Name, err)
			continue
		}
		live = append(live, r)
		defer w.forceDelete(r, id)
	}
	for i := 0; i < b.c.Warmup+b.c.N && b.ctx.Err() == nil && len(live) > 0; i++ {
		for _, r := range rotate(live, i) {
			d, _, err := w.call(r, "exec", b.id(r, "exec", 0), "/bin/true")
			switch {
			case err != nil:
				x.fail(r.Name, err)
			case i >= b.c.Warmup:
				x.add(r.Name, ms(d))
			}
		}
	}
	return nil
}

// benchThroughput runs batches of containers (create, start, wait, delete)
// with k at a time; each batch is one sample in containers per second.
func (b *bench) benchThroughput() error {
	for _, k := range b.c.TPConcurrency {
		x := b.rep.result(process, "throughput", fmt.Sprintf(tpRowPattern, k, b.c.TPTotal), "containers/s", true, names(b.rts)...)
		for round := 0; round < b.c.TPRounds && b.ctx.Err() == nil; round++ {
			for _, r := range rotate(b.rts, round) {
				if b.ctx.Err() != nil {
					return nil
				}
				rate, err := b.batch(r, k, round)
				if err != nil {
					x.fail(r.Name, err)
					continue
				}
				x.add(r.Name, rate)
				logf("throughput %d at a time: %s %.1f containers/s", k, r.Name, rate)
			}
		}
	}
	return nil
}

func (b *bench) batch(r *runtime, k, round int) (float64, error) {
	ids := make(chan int)
	errc := make(chan error, b.c.TPTotal)
	var wg sync.WaitGroup
	tag := fmt.Sprintf("tp%d.%d", k, round)
	t0 := time.Now()
	for j := 0; j < k; j++ {
		wg.Add(1)
		go func(w *worker) {
			defer wg.Done()
			for i := range ids {
				if _, err := w.cycle(r, b.id(r, tag, i), b.trueBundle, nil); err != nil {
					errc <- err
				}
			}
		}(b.workers[j])
	}
	sent := 0
	for ; sent < b.c.TPTotal && b.ctx.Err() == nil; sent++ {
		ids <- sent
	}
	close(ids)
	wg.Wait()
	elapsed := time.Since(t0)
	close(errc)
	if n := len(errc); n > 0 {
		return 0, fmt.Errorf("%d of %d containers failed, first: %w", n, b.c.TPTotal, <-errc)
	}
	if sent < b.c.TPTotal {
		return 0, b.ctx.Err()
	}
	return float64(sent) / elapsed.Seconds(), nil
}

// benchMemory measures what `create` costs in memory, and the binaries.
func (b *bench) benchMemory() error {
	rows := []*Result{
		b.rep.result(process, "memory", rowMaxRSS, "MiB", false, names(b.rts)...),
		b.rep.result(process, "memory", rowSumRSS, "MiB", false, names(b.rts)...),
		b.rep.result(process, "memory", rowWaiting, "MiB", false, names(b.rts)...),
	}
	w := b.workers[0]
	for i := 0; i < b.c.MemN && b.ctx.Err() == nil; i++ {
		for _, r := range rotate(b.rts, i) {
			maxRSS, sum, waiting, err := b.memCreate(w, r, b.id(r, "mem", i))
			if err != nil {
				rows[0].fail(r.Name, err)
				continue
			}
			rows[0].add(r.Name, mib(maxRSS))
			rows[1].add(r.Name, mib(sum))
			rows[2].add(r.Name, mib(waiting))
		}
	}
	x := b.rep.result(process, "memory", rowBinary, "MiB", false, names(b.rts)...)
	var notes []string
	for _, r := range b.rts {
		size, link, err := binaryInfo(r.Path)
		if err != nil {
			x.fail(r.Name, err)
			continue
		}
		x.add(r.Name, float64(size)/(1<<20))
		notes = append(notes, r.Name+": "+link)
	}
	x.Note = strings.Join(notes, "; ")
	return nil
}

// memCreate runs one `create` while reading the memory of its process tree
// every millisecond, then the RSS of the process left waiting for `start`;
// the container is then deleted. The peak of one process is its VmHWM,
// which only grows, so sampling misses at most its last millisecond.
// (getrusage would not do: a child's ru_maxrss keeps the RSS of the
// harness it was forked from, before its exec.)
func (b *bench) memCreate(w *worker, r *runtime, id string) (maxHWM, peakSum, waiting int64, err error) {
	pf := w.pidFile(id)
	defer os.Remove(pf)
	defer w.forceDelete(r, id)
	ctx, cancel := context.WithTimeout(context.Background(), r.Timeout)
	defer cancel()
	w.stderr.Truncate(0)
	cmd := r.command(ctx, "create", "--bundle", b.trueBundle, "--pid-file", pf, id)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = w.null, w.null, w.stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	done := make(chan struct{})
	peaks := make(chan [2]int64)
	go func() {
		var hwm, sum int64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			var s int64
			for _, pid := range tree(cmd.Process.Pid) {
				rss, h := memKiB(pid)
				s += rss
				hwm = max(hwm, h)
			}
			sum = max(sum, s)
			select {
			case <-done:
				peaks <- [2]int64{hwm, sum}
				return
			case <-tick.C:
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	p := <-peaks
	maxHWM, peakSum = p[0], p[1]
	if err != nil {
		msg, _ := os.ReadFile(w.stderr.Name())
		return 0, 0, 0, fmt.Errorf("%s create: %v: %s", r.Name, err, lastLine(msg))
	}
	pid, err := readPid(pf)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, p := range tree(pid) {
		rss, _ := memKiB(p)
		waiting += rss
	}
	return maxHWM, peakSum, waiting, nil
}

// binaryInfo returns the size of the file behind path and how it is linked.
func binaryInfo(path string) (int64, string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return 0, "", err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return 0, "", err
	}
	f, err := elf.Open(real)
	if err != nil {
		return fi.Size(), "not ELF", nil
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			libs, _ := f.ImportedLibraries()
			return fi.Size(), "dynamic (" + strings.Join(libs, " ") + ")", nil
		}
	}
	return fi.Size(), "static", nil
}
