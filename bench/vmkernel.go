package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/runh-project/runh/hvshim/assets"
)

// The vm-kernel section: runh's guest kernel against an earlier one
// (-guest-before DIR, e.g. an entry of build-kernel.sh's cache): the
// vmlinux's size, a booted VM's start, a restored VM's and an idle VM's
// host memory. runh boots the earlier kernel when RUNH_GUEST_DIR names its
// directory (hvshim/assets); the current one is what runh finds itself.
//
// Both kernels share the run's cache (RUNH_CACHE_DIR). What that relies
// on: a template's key (hvshim/template.Key) holds the kernel file's path,
// size and modification time, and an initrd is named by its content's hash,
// so a VM of one kernel is never restored from the other's template.

const (
	kernelBefore  = "before"
	kernelCurrent = "current"

	rowKernelSize      = "vmlinux size (MiB)"
	rowKernelCold      = "booted VM: /bin/true, `create` to `delete` (s)"
	rowKernelColdAgent = "booted VM: QEMU started → agent answered the host (s)"
	rowKernelColdReady = "booted VM: guest uptime when the agent accepted the host (s)"
	rowKernelWarm      = "restored VM: /bin/true, `create` to `delete` (s)"
	rowKernelWarmAgent = "restored VM: QEMU started → agent answered the host (s)"
	rowKernelPSS       = "1 sleeping container, restored: shim + QEMU PSS (MiB)"
)

// GuestKernel is one kernel the vm-kernel section ran.
type GuestKernel struct {
	Name    string `json:"name"`          // kernelBefore, kernelCurrent
	Dir     string `json:"dir,omitempty"` // RUNH_GUEST_DIR given; "" for what runh finds
	Kernel  string `json:"kernel"`
	Version string `json:"version,omitempty"`
	Bytes   int64  `json:"bytes"`
}

// kernelContender is one kernel with runh's two ways to start its VMs.
type kernelContender struct {
	GuestKernel
	warm, cold *runtime
}

// variant is a copy of r named r's name-suffix (the name keeps container
// IDs apart; the root stays r's) with env added to its environment.
func variant(r *runtime, suffix string, env ...string) *runtime {
	c := *r
	c.Name = r.Name + "-" + suffix
	c.Env = append(append([]string{}, r.Env...), env...)
	return &c
}

func (b *bench) benchVMKernel() error {
	info, err := b.vmUsable()
	if err != nil {
		b.rep.skip("vm-kernel", err.Error())
		return nil
	}
	series := []string{kernelCurrent}
	if b.c.GuestBefore != "" {
		series = []string{kernelBefore, kernelCurrent}
	}
	row := func(name, unit string) *Result {
		x := b.rep.result(hypervisor, "kernel", name, unit, false, series...)
		if len(series) == 2 {
			x.RatioPairs = []string{kernelCurrent + "/" + kernelBefore}
		}
		return x
	}
	size := row(rowKernelSize, "MiB")
	cold, coldAgent, coldReady := row(rowKernelCold, "s"), row(rowKernelColdAgent, "s"), row(rowKernelColdReady, "s")
	warm, warmAgent := row(rowKernelWarm, "s"), row(rowKernelWarmAgent, "s")
	pss := row(rowKernelPSS, "MiB")

	var ks []*kernelContender
	for _, name := range series {
		dir := ""
		if name == kernelBefore {
			dir = b.c.GuestBefore
		}
		k, err := b.kernelContender(name, dir)
		if err != nil {
			size.fail(name, err)
			continue
		}
		ks = append(ks, k)
		info.Kernels = append(info.Kernels, k.GuestKernel)
		size.add(name, float64(k.Bytes)/(1<<20))
		logf("vm-kernel: %s: %s (%s, %.1f MiB)", name, k.Kernel, k.Version, float64(k.Bytes)/(1<<20))
	}
	var kernels []string
	for _, k := range ks {
		kernels = append(kernels, fmt.Sprintf("%s `%s` (%s)", k.Name, k.Kernel, k.Version))
	}
	size.Note = "kernels: " + strings.Join(kernels, "; ")
	if len(series) == 1 {
		size.Note += "; no earlier kernel to compare with (-guest-before, `make bench BENCH_GUEST_BEFORE=DIR`)"
	}

	w := b.workers[0]
	warmup := min(b.c.Warmup, 1) // the first restored VM of each kernel makes its template
	var starts startCounts
	type one struct {
		k    *kernelContender
		cold bool
	}
	var order []one
	for _, k := range ks {
		order = append(order, one{k, true}, one{k, false})
	}
	for i := 0; i < warmup+b.c.VMN && b.ctx.Err() == nil && len(order) > 0; i++ {
		for j := range order {
			o := order[(i+j)%len(order)]
			rt, total, agent := o.k.warm, warm, warmAgent
			if o.cold {
				rt, total, agent = o.k.cold, cold, coldAgent
			}
			var bt *bootTimes
			id := b.id(rt, "kernel", i)
			t, err := w.cycle(rt, id, b.trueBundle, func() { bt = readBootTimes(rt, id) })
			if err != nil {
				total.fail(o.k.Name, err)
				continue
			}
			if i < warmup {
				continue
			}
			total.add(o.k.Name, (t.create + t.start + t.wait + t.delete).Seconds())
			if bt == nil {
				starts.add(rt.Name, "")
				continue
			}
			starts.add(rt.Name, bt.Template)
			agent.add(o.k.Name, bt.AgentReady)
			if o.cold {
				coldReady.add(o.k.Name, bt.GuestReady)
			}
		}
	}
	cold.Note = fmt.Sprintf("booted: `--vm-template=false`; the same /bin/true container verb by verb (`create`, `start`, its exit, `delete`), booted and restored interleaved, "+
		"%d rounds after %d warm-up; the … agent rows from the shim's boot.json; how they started: %s", b.c.VMN, warmup, startsText(starts))
	var pssStarts startCounts
	for _, k := range ks {
		if b.ctx.Err() != nil {
			break
		}
		id := b.id(k.warm, "kpss", 0)
		shim, err := w.startDetached(k.warm, id, b.sleepBundle)
		if err != nil {
			pss.fail(k.Name, err)
			continue
		}
		pssStarts.add(k.Name, startedHow(k.warm, id))
		for _, s := range b.samplePSS([]int{shim}) {
			pss.add(k.Name, mib(s.shim+s.qemu))
		}
		w.forceDelete(k.warm, id)
	}
	pss.Note = "one at a time, the VM's default size; 5 samples 1 s apart after 3 s of settling; how they started: " + startsText(pssStarts)
	return nil
}

// kernelContender asks runh, with RUNH_GUEST_DIR=dir (dir "": runh's own
// search), which kernel it boots, and returns it with its runtimes.
func (b *bench) kernelContender(name, dir string) (*kernelContender, error) {
	var env []string
	if dir != "" {
		env = []string{assets.EnvDir + "=" + dir}
	}
	chk, _, err := b.checkEnv(append(append([]string{}, b.vm.Env...), env...))
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(chk.Kernel)
	if err != nil {
		return nil, err
	}
	return &kernelContender{
		GuestKernel: GuestKernel{Name: name, Dir: dir, Kernel: chk.Kernel, Version: chk.KernelVersion, Bytes: st.Size()},
		warm:        variant(b.vm, name, env...),
		cold:        variant(b.vmCold, name, env...),
	}, nil
}
