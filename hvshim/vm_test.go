package hvshim

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/runh-project/runh/hvshim/assets"
	"github.com/runh-project/runh/hvshim/initrd"
	"github.com/runh-project/runh/hvshim/qemu"
)

// needVM skips a test on hosts that cannot boot the utility VM.
func needVM(t *testing.T) *assets.Guest {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := qemu.FindBinary(); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	if os.Getenv(assets.EnvDir) == "" {
		// go test runs from the package directory, the binary elsewhere:
		// the repository's kernels, runh's own first, as Find orders them.
		for _, d := range []string{"../build/guest", "../build/guest-debian"} {
			if _, err := assets.Load(d); err == nil {
				d, _ = filepath.Abs(d)
				t.Setenv(assets.EnvDir, d)
				break
			}
		}
	}
	g, err := assets.Find()
	if err != nil {
		t.Skipf("no guest kernel: %v", err)
	}
	return g
}

// agentBinary returns a static binary that runs the agent as /init:
// $RUNH_TEST_BINARY (a real bin/runh) or a small one built here.
func agentBinary(t *testing.T) string {
	if b := os.Getenv("RUNH_TEST_BINARY"); b != "" {
		return b
	}
	bin := filepath.Join(t.TempDir(), "testagent")
	// libcontainer needs cgo; the guest has no libc, so link statically.
	cmd := exec.Command("go", "build", "-tags", "netgo,osusergo", "-ldflags", "-extldflags -static", "-o", bin, "./internal/testagent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build testagent: %v\n%s", err, out)
	}
	return bin
}

func TestBootPing(t *testing.T) {
	needVM(t)
	bin := agentBinary(t)
	// runh's own kernel is the default, Debian's the fallback: the agent
	// must come up on both, so each present in the repository is booted.
	booted := 0
	for _, d := range []string{"../build/guest", "../build/guest-debian"} {
		g, err := assets.Load(d)
		if err != nil {
			continue
		}
		booted++
		t.Run(g.Flavor, func(t *testing.T) {
			d, _ := filepath.Abs(d)
			t.Setenv(assets.EnvDir, d)
			bootPing(t, bin)
		})
	}
	if booted == 0 { // assets elsewhere: whatever Find picks
		bootPing(t, bin)
	}
}

func bootPing(t *testing.T, bin string) {
	t.Setenv(initrd.EnvCacheDir, t.TempDir())
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := StartVM(ctx, VMConfig{Dir: dir, Init: bin, Debug: os.Getenv("RUNH_VM_DEBUG") != ""})
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, qemu.ConsoleLog))
		t.Fatalf("boot: %v\nconsole:\n%s", err, log)
	}
	defer vm.Close()
	var p struct{ Version int }
	if err := vm.Agent.Call(ctx, "ping", nil, &p); err != nil {
		t.Fatal(err)
	}
	if err := vm.Agent.Call(ctx, "no-such-op", nil, nil); err == nil {
		t.Fatal("unknown operation accepted")
	}
	t.Logf("accel %s (%s); QMP %.3fs, agent ready %.3fs after QEMU start; guest uptime at /init %.3fs, at agent ready %.3fs",
		vm.Accel.Name, vm.Accel.Reason, vm.Times.QMP, vm.Times.AgentReady, vm.Times.GuestInit, vm.Times.GuestReady)
	start := time.Now()
	vm.Close()
	t.Logf("shutdown %.3fs", time.Since(start).Seconds())
}

// TestFloorBoot measures the floor: the same kernel and machine with an
// initrd whose /init powers off at once.
func TestFloorBoot(t *testing.T) {
	g := needVM(t)
	dir := t.TempDir()
	rd := filepath.Join(dir, "floor.cpio")
	if err := initrd.WriteFloor(rd); err != nil {
		t.Fatal(err)
	}
	c := &qemu.Config{Dir: dir, Kernel: g.Kernel, Initrd: rd, MemoryMiB: DefaultMemoryMiB, CPUs: DefaultCPUs, Accel: qemu.ProbeAccel().Name}
	args, _ := c.Args()
	bin, _ := qemu.FindBinary()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("floor boot: %v\n%s", err, out)
	}
	t.Logf("floor boot (QEMU start to exit): %.3fs", time.Since(start).Seconds())
}

func TestCheck(t *testing.T) {
	r := Check()
	if r.Usable && (r.QEMU == "" || r.Kernel == "") {
		t.Fatalf("usable without QEMU or kernel: %+v", r)
	}
	if !r.Usable && r.Reason == "" {
		t.Fatalf("unusable without a reason: %+v", r)
	}
	t.Logf("%+v", r)
}
