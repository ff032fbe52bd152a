// Command bench compares runh with runc and crun (process isolation) and
// with a bare QEMU boot (hypervisor isolation, VMs restored from a
// template and booted), interleaving the contenders on one busybox
// bundle; measures what a VM's size gives and costs (a parallel CPU job,
// idle memory, memory the guest frees) and the guest kernel against an
// earlier one; measures the network in both modes, a real userland (Debian
// with Python) in both modes beside runc, and a real application
// (WordPress and MariaDB under podman) in every assignment of its two
// containers to the modes beside runc; and writes docs/benchmarks.md
// and the raw samples as JSON. `make bench` (mk/bench.mk) runs it; nothing
// here is an assertion.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sections, in the order they run.
var allSections = []string{"run", "verbs", "exec", "throughput", "memory", "vm-run", "vm-memory", "vm-size", "vm-kernel",
	"net", "userland", "pod", "app"}

type config struct {
	Runh, Runc, Crun string
	RuncSrc          string // optional: runc built from the libcontainer runh links
	Sections         []string
	N, Warmup, MemN  int
	TPTotal          int
	TPRounds         int
	TPConcurrency    []int
	VMN, VMMany      int
	VMMemory, VMCPUs int    // floor sizes when runh's own cannot be read
	VMSizeN          int    // rounds of the vm-size section
	VMCPUIterations  int    // iterations of each busy loop of vm-size's CPU job
	VMFreeWait       int    // seconds vm-size waits for freed guest memory to go back to the host
	GuestBefore      string // vm-kernel: the guest asset directory to compare the current kernel with ("": none)
	NetN             int    // rounds of the network section
	NetMiB, NetVMMiB int    // MiB per TCP sample, process and hypervisor isolation
	NetRequests      int    // HTTP GETs per sample
	UserlandN        int    // rounds of the userland section
	UserlandRootfs   string // Debian rootfs; "" runs Mkdebian for it
	Mkdebian         string
	AppN             int    // rounds of the app section
	AppSeconds       int    // seconds of load on the front page per sample
	AppClients       int    // concurrent keep-alive clients of the load
	Mkapp            string // builds (once, cached) and prints the app images' directory
	MD, JSON         string
	Workdir          string
	Mkrootfs         string
	Render           string `json:"-"`
}

func (c *config) has(section string) bool {
	for _, s := range c.Sections {
		if s == section {
			return true
		}
	}
	return false
}

func parseFlags() (*config, error) {
	c := &config{}
	var sections, conc string
	flag.StringVar(&c.Runh, "runh", "bin/runh", "runh binary")
	flag.StringVar(&c.Runc, "runc", "/usr/sbin/runc", "runc binary (Debian's)")
	flag.StringVar(&c.Crun, "crun", "/usr/bin/crun", "crun binary (Debian's)")
	flag.StringVar(&c.RuncSrc, "runc-src", "", "optional: runc built from the runc module runh links, to tell libcontainer's cost from runh's own")
	flag.StringVar(&sections, "sections", "all", "comma-separated sections: "+strings.Join(allSections, ","))
	flag.IntVar(&c.N, "n", 60, "timed iterations per runtime for latencies")
	flag.IntVar(&c.Warmup, "warmup", 3, "untimed iterations per runtime before each latency section")
	flag.IntVar(&c.MemN, "mem-n", 20, "iterations per runtime for the memory section")
	flag.IntVar(&c.TPTotal, "throughput-total", 100, "containers per throughput batch")
	flag.IntVar(&c.TPRounds, "throughput-rounds", 5, "batches per runtime and concurrency")
	flag.StringVar(&conc, "concurrency", "1,4,16", "throughput concurrency levels")
	flag.IntVar(&c.VMN, "vm-n", 8, "timed iterations of the hypervisor run of /bin/true, and of the floor")
	flag.IntVar(&c.VMMany, "vm-many", 10, "sleeping VM containers for the many-containers PSS figure")
	flag.IntVar(&c.VMMemory, "vm-memory", 256, "floor memory (MiB) if runh's VM size cannot be read")
	flag.IntVar(&c.VMCPUs, "vm-cpus", 1, "floor vCPUs if runh's VM size cannot be read")
	flag.IntVar(&c.VMSizeN, "vm-size-n", 3, "rounds of the vm-size section (each: the CPU job in every contender, then the small and the default VM's memory)")
	flag.IntVar(&c.VMCPUIterations, "vm-cpu-iterations", 200000, "iterations of each of the vm-size CPU job's busy loops (one loop per host CPU, in parallel)")
	flag.IntVar(&c.VMFreeWait, "vm-free-wait", 20, "seconds vm-size waits, after the guest frees 1 GiB, before reading QEMU's memory again")
	flag.StringVar(&c.GuestBefore, "guest-before", "", "vm-kernel: a guest asset directory (vmlinux, version) to compare runh's current guest kernel with (empty: the current one only)")
	flag.IntVar(&c.NetN, "net-n", 5, "rounds of the network section (each: one sample of every network figure per contender)")
	flag.IntVar(&c.NetMiB, "net-mib", 256, "MiB per TCP throughput sample, process isolation")
	flag.IntVar(&c.NetVMMiB, "net-vm-mib", 64, "MiB per TCP throughput sample, hypervisor isolation (less than -net-mib: TCG)")
	flag.IntVar(&c.NetRequests, "net-requests", 200, "sequential HTTP GETs per request-rate sample")
	flag.IntVar(&c.UserlandN, "userland-n", 5, "rounds of the userland section (each: one container of steps and one whole run per contender)")
	flag.StringVar(&c.UserlandRootfs, "userland-rootfs", "", "Debian rootfs with python3 for the userland section (default: what -mkdebian prints)")
	flag.StringVar(&c.Mkdebian, "mkdebian", "scripts/mkdebian.sh", "builds (once, cached) and prints the Debian rootfs")
	flag.IntVar(&c.AppN, "app-n", 2, "rounds of the app section (each: WordPress and MariaDB started, installed and loaded once per contender)")
	flag.IntVar(&c.AppSeconds, "app-seconds", 10, "seconds of load on the front page per app sample")
	flag.IntVar(&c.AppClients, "app-clients", 4, "concurrent keep-alive clients of the app section's load")
	flag.StringVar(&c.Mkapp, "mkapp", "scripts/mkapp.sh", "builds (once, cached) and prints the app section's images")
	flag.StringVar(&c.MD, "md", "docs/benchmarks.md", "markdown report (empty: none)")
	flag.StringVar(&c.JSON, "json", "docs/benchmarks.json", "raw JSON results (empty: none)")
	flag.StringVar(&c.Workdir, "workdir", "/run", "parent of the temporary bundles and state roots (tmpfs is best)")
	flag.StringVar(&c.Mkrootfs, "mkrootfs", "scripts/mkrootfs.sh", "rootfs writer")
	flag.StringVar(&c.Render, "render", "", "only rewrite -md from this raw JSON of an earlier run (runs nothing)")
	flag.Parse()
	if sections == "all" {
		c.Sections = allSections
	} else {
		for _, s := range strings.Split(sections, ",") {
			s = strings.TrimSpace(s)
			if !contains(allSections, s) {
				return nil, fmt.Errorf("unknown section %q (want %s)", s, strings.Join(allSections, ","))
			}
			c.Sections = append(c.Sections, s)
		}
	}
	for _, f := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad -concurrency %q", conc)
		}
		c.TPConcurrency = append(c.TPConcurrency, n)
	}
	sort.Ints(c.TPConcurrency)
	if c.N < 1 || c.MemN < 1 || c.TPTotal < 1 || c.TPRounds < 1 || c.VMN < 1 || c.VMMany < 1 ||
		c.VMSizeN < 1 || c.VMCPUIterations < 1 || c.VMFreeWait < 1 ||
		c.NetN < 1 || c.NetMiB < 1 || c.NetVMMiB < 1 || c.NetRequests < 1 || c.UserlandN < 1 ||
		c.AppN < 1 || c.AppSeconds < 1 || c.AppClients < 1 {
		return nil, errors.New("iteration counts must be at least 1")
	}
	// Paths are resolved now: the harness changes nothing about its cwd,
	// but runtimes get absolute paths only.
	for _, p := range []*string{&c.Runh, &c.Mkrootfs, &c.Mkdebian, &c.Mkapp, &c.UserlandRootfs, &c.GuestBefore, &c.MD, &c.JSON, &c.Workdir} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return nil, err
			}
			*p = abs
		}
	}
	return c, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func main() {
	c, err := parseFlags()
	if err != nil {
		fatalf("%v", err)
	}
	if c.Render != "" {
		if err := render(c.Render, c.MD); err != nil {
			fatalf("%v", err)
		}
		return
	}
	if os.Geteuid() != 0 {
		fatalf("must run as root (containers, mounts, cgroups)")
	}
	if os.Getenv(nsEnv) == "" {
		os.Exit(reexecInPrivateNS())
	}
	hidden, err := hideCgroup2()
	if err != nil {
		fatalf("%v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "bench: %v: stopping and cleaning up\n", s)
		cancel()
		signal.Ignore(syscall.SIGINT, syscall.SIGTERM) // let cleanup finish
	}()
	b, err := newBench(ctx, c)
	if err != nil {
		fatalf("%v", err)
	}
	b.rep.Env.Cgroup = hidden
	runErr := b.run()
	b.cleanup()
	if runErr != nil {
		fatalf("%v", runErr)
	}
	if ctx.Err() != nil {
		fatalf("interrupted; no report written")
	}
	if err := b.rep.write(c.MD, c.JSON); err != nil {
		fatalf("%v", err)
	}
	for _, p := range []string{c.MD, c.JSON} {
		if p != "" {
			fmt.Fprintf(os.Stderr, "bench: wrote %s\n", p)
		}
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
	os.Exit(1)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

// render rewrites the markdown report from the raw JSON of an earlier run,
// e.g. after a change to the reading or to the notes.
func render(jsonPath, md string) error {
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return err
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", jsonPath, err)
	}
	if r.Config == nil {
		return fmt.Errorf("%s: no config recorded", jsonPath)
	}
	r.finalize()
	return r.writeMarkdown(md, jsonPath)
}
