package main

import (
	"fmt"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/runh-project/runh/libruntime"
)

// The vm-size section: what sizing a VM like its container gives and
// costs. Without limits a VM now gets the host's CPUs (the shim's
// affinity) and memory (up to 2048 MiB), and a virtio-balloon device with
// free page reporting hands back what the guest frees (hvshim/shim's
// vmSize, hvshim/qemu). Three figures:
//   - a parallel CPU job, one busy loop per host CPU, in a VM of 1 vCPU
//     (io.runh.vm.cpus), in one of the default size, and in process
//     isolation, with what each container sees (nproc, MemTotal);
//   - the host memory of an idle small VM (256 MiB, 1 vCPU, by the
//     annotations) and of an idle default one;
//   - in the default one, QEMU's memory while the guest holds 1 GiB in
//     tmpfs, just after it removes it, and -vm-free-wait seconds later.

const (
	rowSizeCPU   = "parallel CPU job, one busy loop per host CPU (s)"
	rowSizeNproc = "`nproc` in the container"
	rowSizeMem   = "MemTotal in the container (MiB)"

	rowSizeShim     = "idle: shim PSS"
	rowSizeQEMU     = "idle: QEMU PSS"
	rowSizeOne      = "idle: shim + QEMU PSS"
	rowSizeRSS      = "idle: QEMU RSS"
	rowSizeHeldPSS  = "QEMU PSS, the guest holding 1 GiB in /dev/shm"
	rowSizeFreedPSS = "QEMU PSS, just after the guest removed it"
	rowSizeLaterPSS = "QEMU PSS, after the wait for free page reporting"
	rowSizeHeldRSS  = "QEMU RSS, the guest holding 1 GiB in /dev/shm"
	rowSizeFreedRSS = "QEMU RSS, just after the guest removed it"
	rowSizeLaterRSS = "QEMU RSS, after the wait for free page reporting"

	// Series of the section besides runh and runh-vm (the default size).
	sizeVM1     = "runh-vm-1cpu"  // io.runh.vm.cpus: 1
	sizeVMSmall = "runh-vm-small" // io.runh.vm.memory: 256, io.runh.vm.cpus: 1
	// The default size booted (io.runh.vm.template: false): only a booted
	// VM hands freed pages back (a restored one's RAM is its template's
	// file, docs/hypervisor.md).
	sizeVMBooted = "runh-vm-booted"

	sizeSmallMiB = 256
	sizeHoldMiB  = 1024                  // what the guest writes to tmpfs, then removes
	sizeHoldFile = "/dev/shm/runh-bench" // in the default VM's container
)

// sizeCPUScript runs jobs busy loops of n iterations each in parallel
// (busybox ash, a subshell each: a fixed amount of work whatever the CPU
// count) and prints the uptime before and after (the guest's own clock in
// a VM, so the VM's start is not timed), then what the container sees.
func sizeCPUScript(jobs, n int) string {
	return fmt.Sprintf(`read t0 rest </proc/uptime
j=0
while [ $j -lt %d ]; do
	(i=0; while [ $i -lt %d ]; do i=$((i + 1)); done) &
	j=$((j + 1))
done
wait
read t1 rest </proc/uptime
echo "start $t0"
echo "end $t1"
echo "nproc $(nproc)"
grep '^MemTotal:' /proc/meminfo
`, jobs, n)
}

// cpuJob is what one run of sizeCPUScript printed.
type cpuJob struct {
	Seconds float64 // wall time of the loops
	NProc   int
	MemMiB  float64 // MemTotal
}

// parseCPUJob reads sizeCPUScript's output: "start U", "end U" (uptimes,
// s), "nproc N" and /proc/meminfo's "MemTotal: K kB"; all four must be
// there.
func parseCPUJob(out string) (cpuJob, error) {
	var j cpuJob
	var t0, t1 float64
	seen := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		key := strings.TrimSuffix(f[0], ":")
		var err error
		switch key {
		case "start":
			t0, err = strconv.ParseFloat(f[1], 64)
		case "end":
			t1, err = strconv.ParseFloat(f[1], 64)
		case "nproc":
			j.NProc, err = strconv.Atoi(f[1])
		case "MemTotal":
			var kib int64
			kib, err = strconv.ParseInt(f[1], 10, 64)
			j.MemMiB = mib(kib)
		default:
			continue
		}
		if err != nil {
			return j, fmt.Errorf("CPU job: bad line %q", line)
		}
		seen[key] = true
	}
	for _, k := range []string{"start", "end", "nproc", "MemTotal"} {
		if !seen[k] {
			return j, fmt.Errorf("CPU job: no %s in %q", k, oneLine(out))
		}
	}
	if t1 < t0 {
		return j, fmt.Errorf("CPU job: uptime went back from %v to %v", t0, t1)
	}
	j.Seconds = t1 - t0
	return j, nil
}

// annotate returns a spec change setting annotations: key, value, ...
func annotate(kv ...string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		for i := 0; i+1 < len(kv); i += 2 {
			s.Annotations[kv[i]] = kv[i+1]
		}
	}
}

// roomyShm gives the container a /dev/shm that holds sizeHoldMiB (the
// default spec's is 64 MiB).
func roomyShm(s *specs.Spec) {
	for i, m := range s.Mounts {
		if m.Destination != "/dev/shm" {
			continue
		}
		var opts []string
		for _, o := range m.Options {
			if !strings.HasPrefix(o, "size=") {
				opts = append(opts, o)
			}
		}
		s.Mounts[i].Options = append(opts, fmt.Sprintf("size=%dm", sizeHoldMiB+64))
	}
}

// sizeContender is one column of the CPU job: a runtime and its bundle.
type sizeContender struct {
	name   string
	rt     *runtime
	bundle string
}

func (b *bench) benchVMSize() error {
	if _, err := b.vmUsable(); err != nil {
		b.rep.skip("vm-size", err.Error())
		return nil
	}
	jobs := goruntime.NumCPU()
	script := sizeCPUScript(jobs, b.c.VMCPUIterations)
	cpuBundle, err := b.bundle("cpujob", nil, "/bin/sh", "-c", script)
	if err != nil {
		return err
	}
	cpu1Bundle, err := b.bundle("cpujob-1cpu", annotate(libruntime.AnnotationVMCPUs, "1"), "/bin/sh", "-c", script)
	if err != nil {
		return err
	}
	smallBundle, err := b.bundle("sleep-small", annotate(libruntime.AnnotationVMMemory, strconv.Itoa(sizeSmallMiB),
		libruntime.AnnotationVMCPUs, "1"), "/bin/sleep", "1000000")
	if err != nil {
		return err
	}
	bigBundle, err := b.bundle("sleep-shm", roomyShm, "/bin/sleep", "1000000")
	if err != nil {
		return err
	}
	bootedBundle, err := b.bundle("sleep-shm-booted", func(s *specs.Spec) {
		roomyShm(s)
		annotate(libruntime.AnnotationVMTemplate, "false")(s)
	}, "/bin/sleep", "1000000")
	if err != nil {
		return err
	}
	// The loops take seconds inside a VM under TCG, tens with 1 vCPU on a
	// busy host.
	const slow = 10 * time.Minute
	warmup := min(b.c.Warmup, 1) // each VM contender's first run may make its size's template
	vm, proc := b.vm.Name, b.rts[0].Name
	cs := []sizeContender{
		{sizeVM1, withTimeout(b.vm, slow), cpu1Bundle},
		{vm, withTimeout(b.vm, slow), cpuBundle},
		{proc, withTimeout(b.rts[0], slow), cpuBundle},
	}
	var cpuRows []*Result
	for _, name := range []string{rowSizeCPU, rowSizeNproc, rowSizeMem} {
		x := b.rep.result(hypervisor, "size-cpu", name, "", false, sizeVM1, vm, proc)
		x.RatioPairs = []string{sizeVM1 + "/" + vm, vm + "/" + proc}
		cpuRows = append(cpuRows, x)
	}
	cpuRows[0].Unit = "s"
	cpuRows[1].Unit = "CPUs"
	cpuRows[2].Unit = "MiB"
	cpuRows[0].Note = fmt.Sprintf("%d busy loops (the host's CPU count) of %d iterations of busybox sh, in parallel, timed by the container's "+
		"/proc/uptime (a VM's own clock: its start is not in it); %s: `%s: 1`, %s: no annotation (sized like the host), %s: process isolation; "+
		"%d rounds after %d warm-up, contenders rotated",
		jobs, b.c.VMCPUIterations, sizeVM1, libruntime.AnnotationVMCPUs, vm, proc, b.c.VMSizeN, warmup)

	w := b.workers[0]
	mem := b.sizeMemRows()
	var starts startCounts
	sizes := map[string]string{}
	for i := 0; i < warmup+b.c.VMSizeN && b.ctx.Err() == nil; i++ {
		for k := range cs {
			c := cs[(i+k)%len(cs)]
			id := b.id(c.rt, "cpujob", i)
			d, out, err := w.output(c.rt, "run", "--bundle", c.bundle, id)
			var j cpuJob
			if err == nil {
				j, err = parseCPUJob(out)
			}
			if err != nil {
				w.forceDelete(c.rt, id)
				cpuRows[0].fail(c.name, err)
				continue
			}
			logf("vm-size CPU job: %s: %.2f s inside, %.2f s the whole `run`; nproc %d, MemTotal %.0f MiB",
				c.name, j.Seconds, d.Seconds(), j.NProc, j.MemMiB)
			if i < warmup {
				continue
			}
			cpuRows[0].add(c.name, j.Seconds)
			cpuRows[1].add(c.name, float64(j.NProc))
			cpuRows[2].add(c.name, j.MemMiB)
		}
		if i == 0 {
			// The small VM's template, made before its memory is read.
			if _, err := w.startDetached(b.vm, b.id(b.vm, "szwarm", 0), smallBundle); err == nil {
				w.forceDelete(b.vm, b.id(b.vm, "szwarm", 0))
			}
		}
		if i >= warmup && b.ctx.Err() == nil {
			b.sizeMemory(i, []sizeContender{{sizeVMSmall, b.vm, smallBundle}, {b.vm.Name, b.vm, bigBundle}, {sizeVMBooted, b.vm, bootedBundle}},
				mem, &starts, sizes)
		}
	}
	mem[rowSizeOne].Note += fmt.Sprintf("; sizes from QEMU's command line: %s; how they started, by their boot.json: %s",
		joinMap(sizes), startsText(starts))
	return nil
}

// sizeMemRows makes the rows of the size-mem table, keyed by name.
func (b *bench) sizeMemRows() map[string]*Result {
	vm := b.vm.Name
	rows := map[string]*Result{}
	for _, name := range []string{rowSizeShim, rowSizeQEMU, rowSizeOne, rowSizeRSS,
		rowSizeHeldPSS, rowSizeFreedPSS, rowSizeLaterPSS, rowSizeHeldRSS, rowSizeFreedRSS, rowSizeLaterRSS} {
		x := b.rep.result(hypervisor, "size-mem", name, "MiB", false, sizeVMSmall, vm, sizeVMBooted)
		x.RatioPairs = []string{vm + "/" + sizeVMSmall}
		rows[name] = x
	}
	rows[rowSizeOne].Note = fmt.Sprintf("one sleeping container at a time, each started as runh's default does, from its size's template: %s by `%s: %d` and `%s: 1`, "+
		"%s without annotations (sized like the host); PSS of the shim's process tree, QEMU apart, sampled 5 times 1 s apart after 3 s of settling",
		sizeVMSmall, libruntime.AnnotationVMMemory, sizeSmallMiB, libruntime.AnnotationVMCPUs, vm)
	rows[rowSizeHeldPSS].Note = fmt.Sprintf("in the %s container, after its idle figures: `exec` of dd writing %d MiB of zeros to %s (a tmpfs, %d MiB), "+
		"read when it returns; then `exec` of rm, read when it returns; then read every second for %d s (-vm-free-wait), the last reading kept; "+
		"a booted guest hands freed pages back by free page reporting (virtio-balloon), about 2 s after they are freed, in 2–4 MiB chunks; "+
		"%s is the default size booted (`%s: false`): a VM restored from a template reports nothing (its RAM is the template's file)",
		vm, sizeHoldMiB, sizeHoldFile, sizeHoldMiB+64, b.c.VMFreeWait, sizeVMBooted, libruntime.AnnotationVMTemplate)
	return rows
}

// sizeMemory reads, in round i, the host memory of each idle VM of cs,
// and of the default-size ones as their guest takes 1 GiB and gives it
// back.
func (b *bench) sizeMemory(i int, cs []sizeContender, rows map[string]*Result, starts *startCounts, sizes map[string]string) {
	w := b.workers[0]
	for _, c := range cs {
		id := b.id(c.rt, "size-"+c.name, i)
		shim, err := w.startDetached(c.rt, id, c.bundle)
		if err != nil {
			rows[rowSizeOne].fail(c.name, err)
			continue
		}
		how := startedHow(c.rt, id)
		starts.add(c.name, how)
		sizes[c.name] = vmSize(shim)
		for _, s := range b.samplePSS([]int{shim}) {
			rows[rowSizeShim].add(c.name, mib(s.shim))
			rows[rowSizeQEMU].add(c.name, mib(s.qemu))
			rows[rowSizeOne].add(c.name, mib(s.shim+s.qemu))
			rows[rowSizeRSS].add(c.name, mib(s.qemuRSS))
		}
		logf("vm-size: idle %s (%s, started %s): %s", c.name, sizes[c.name], how, memText(sampleMem([]int{shim})))
		if c.name != sizeVMSmall {
			if err := b.sizeFree(w, c.name, id, shim, rows); err != nil {
				rows[rowSizeHeldPSS].fail(c.name, err)
			}
		}
		w.forceDelete(c.rt, id)
	}
}

// sizeFree has the guest of container id hold sizeHoldMiB in tmpfs, then
// remove it, and reads QEMU's memory after each step and after the wait.
func (b *bench) sizeFree(w *worker, vm, id string, shim int, rows map[string]*Result) error {
	rt := withTimeout(b.vm, 5*time.Minute) // dd under TCG
	hold := fmt.Sprintf("dd if=/dev/zero of=%[1]s bs=1M count=%[2]d 2>/dev/null; stat -c %%s %[1]s", sizeHoldFile, sizeHoldMiB)
	_, out, err := w.output(rt, "exec", id, "/bin/sh", "-c", hold)
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(out); got != strconv.Itoa(sizeHoldMiB<<20) {
		return fmt.Errorf("%s holds %q bytes, want %d", sizeHoldFile, got, sizeHoldMiB<<20)
	}
	held := sampleMem([]int{shim})
	rows[rowSizeHeldPSS].add(vm, mib(held.qemu))
	rows[rowSizeHeldRSS].add(vm, mib(held.qemuRSS))
	if _, _, err := w.call(rt, "exec", id, "/bin/rm", sizeHoldFile); err != nil {
		return err
	}
	freed := sampleMem([]int{shim})
	rows[rowSizeFreedPSS].add(vm, mib(freed.qemu))
	rows[rowSizeFreedRSS].add(vm, mib(freed.qemuRSS))
	// The timeline goes to the log: how fast the pages come back.
	timeline := []string{"0 s " + num(mib(freed.qemu))}
	later := freed
	for t := 1; t <= b.c.VMFreeWait; t++ {
		select {
		case <-time.After(time.Second):
		case <-b.ctx.Done():
			return b.ctx.Err()
		}
		later = sampleMem([]int{shim})
		timeline = append(timeline, fmt.Sprintf("%d s %s", t, num(mib(later.qemu))))
	}
	rows[rowSizeLaterPSS].add(vm, mib(later.qemu))
	rows[rowSizeLaterRSS].add(vm, mib(later.qemuRSS))
	logf("vm-size: %s: %d MiB held: %s; removed, QEMU PSS (MiB) after: %s", vm, sizeHoldMiB, memText(held), strings.Join(timeline, ", "))
	return nil
}

// memText is a memory sample for the log.
func memText(s pssSample) string {
	return fmt.Sprintf("shim PSS %s MiB, QEMU PSS %s MiB, QEMU RSS %s MiB", num(mib(s.shim)), num(mib(s.qemu)), num(mib(s.qemuRSS)))
}
