package main

import (
	"encoding/json"
	"os/exec"
	"sort"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/runh-project/runh/integration"
)

func TestParseCPUJob(t *testing.T) {
	good := "start 1234.56\nend 1240.06\nnproc 2\nMemTotal:        2014232 kB\n"
	j, err := parseCPUJob(good)
	if err != nil {
		t.Fatal(err)
	}
	if j.NProc != 2 || j.Seconds < 5.499 || j.Seconds > 5.501 || j.MemMiB < 1967 || j.MemMiB > 1968 {
		t.Errorf("parsed %+v", j)
	}
	for name, out := range map[string]string{
		"no nproc":     strings.Replace(good, "nproc 2\n", "", 1),
		"no MemTotal":  strings.Replace(good, "MemTotal:        2014232 kB\n", "", 1),
		"bad uptime":   strings.Replace(good, "end 1240.06", "end 1240,06", 1),
		"time reverse": strings.Replace(good, "end 1240.06", "end 1000", 1),
		"empty":        "",
	} {
		if _, err := parseCPUJob(out); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestCPUJobScript runs the CPU job's script with the host's busybox and
// reads its output as the section does.
func TestCPUJobScript(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox")
	}
	s := sizeCPUScript(2, 1000)
	if strings.Contains(s, "%!") {
		t.Fatalf("bad verb:\n%s", s)
	}
	out, err := exec.Command(bb, "sh", "-c", s).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	j, err := parseCPUJob(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if j.NProc < 1 || j.MemMiB <= 0 || j.Seconds < 0 {
		t.Errorf("parsed %+v from %q", j, out)
	}
}

func TestParseQEMUArgs(t *testing.T) {
	args := []string{"qemu-system-x86_64", "-M", "microvm,acpi=on", "-nodefaults", "-accel", "tcg,tb-size=64",
		"-m", "2048", "-smp", "2", "-kernel", "/k/vmlinux", "-initrd", "/i"}
	want := qemuArgs{MemoryMiB: 2048, CPUs: 2, Machine: "microvm,acpi=on", Accel: "tcg", Kernel: "/k/vmlinux"}
	if got := parseQEMUArgs(args); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got := parseQEMUArgs([]string{"qemu", "-m", "size=2G", "-smp", "cpus=4"}); got.MemoryMiB != 2048 || got.CPUs != 4 {
		t.Errorf("size=2G, cpus=4: got %+v", got)
	}
	if got := parseQEMUArgs([]string{"qemu", "-m"}); got != (qemuArgs{}) {
		t.Errorf("dangling -m: got %+v", got)
	}
}

func TestSizeBundles(t *testing.T) {
	s := integration.DefaultSpec("/rootfs", "/bin/true")
	annotate("io.runh.vm.cpus", "1", "io.runh.vm.memory", "256")(s)
	roomyShm(s)
	if s.Annotations["io.runh.vm.cpus"] != "1" || s.Annotations["io.runh.vm.memory"] != "256" {
		t.Errorf("annotations %v", s.Annotations)
	}
	var shm *specs.Mount
	for i := range s.Mounts {
		if s.Mounts[i].Destination == "/dev/shm" {
			shm = &s.Mounts[i]
		}
	}
	if shm == nil {
		t.Fatal("no /dev/shm")
	}
	var sizes []string
	for _, o := range shm.Options {
		if strings.HasPrefix(o, "size=") {
			sizes = append(sizes, o)
		}
	}
	if len(sizes) != 1 || sizes[0] != "size=1088m" {
		t.Errorf("/dev/shm size options %v", sizes)
	}
}

func TestStartCounts(t *testing.T) {
	var m startCounts
	m.add("a", "restored")
	m.add("a", "restored")
	m.add("a", "")
	m.add("b", "cold")
	if got := startsText(m); got != "a restored 2, unrecorded 1; b cold 1" {
		t.Errorf("startsText = %q", got)
	}
	v := &VMInfo{}
	v.countStart("x", "built")
	b, _ := json.Marshal(v)
	var back VMInfo
	if err := json.Unmarshal(b, &back); err != nil || back.Starts["x"]["built"] != 1 {
		t.Errorf("round trip of %s: %v %v", b, back.Starts, err)
	}
}

func TestVMSizeReading(t *testing.T) {
	r := &Report{Config: &config{VMFreeWait: 20}}
	add := func(table, name string, pairs []string, v map[string]float64) {
		var rts []string
		for rt := range v {
			rts = append(rts, rt)
		}
		sort.Strings(rts)
		x := r.result(hypervisor, table, name, "", false, rts...)
		x.RatioPairs = pairs
		for rt, val := range v {
			x.add(rt, val)
		}
	}
	cpuPairs := []string{sizeVM1 + "/runh-vm", "runh-vm/runh"}
	add("size-cpu", rowSizeCPU, cpuPairs, map[string]float64{sizeVM1: 12, "runh-vm": 6, "runh": 1})
	add("size-cpu", rowSizeNproc, cpuPairs, map[string]float64{sizeVM1: 1, "runh-vm": 2, "runh": 2})
	memPairs := []string{"runh-vm/" + sizeVMSmall}
	add("size-mem", rowSizeOne, memPairs, map[string]float64{sizeVMSmall: 60, "runh-vm": 90})
	add("size-mem", rowSizeQEMU, memPairs, map[string]float64{sizeVMSmall: 50, "runh-vm": 80})
	add("size-mem", rowSizeHeldPSS, memPairs, map[string]float64{"runh-vm": 1104})
	add("size-mem", rowSizeFreedPSS, memPairs, map[string]float64{"runh-vm": 1100})
	add("size-mem", rowSizeLaterPSS, memPairs, map[string]float64{"runh-vm": 336})
	add("kernel", rowKernelSize, []string{"current/before"}, map[string]float64{"before": 8, "current": 10})
	r.find(hypervisor, rowKernelSize).Unit = "MiB"
	r.finalize()
	text := strings.Join(r.reading(), "\n")
	for _, want := range []string{
		"(`nproc`: ",
		"runh-vm-1cpu 1",
		"with 1 vCPU the job takes 2.00 times as long as sized like the host",
		"sized like the host, 6.00 times process isolation's time",
		"the default size costs 1.50 times the small one's",
		"20 s later 336 MiB; 75% of what the guest took went back to the host",
		"Guest kernel, vmlinux size: before 8.00 MiB, current 10.0 MiB; current/before 1.25.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("reading lacks %q:\n%s", want, text)
		}
	}
}
