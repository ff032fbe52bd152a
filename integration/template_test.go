package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// VM templates (hvshim/template) exist only with hypervisor isolation: these
// tests skip in process mode, saying so.

type bootRecord struct {
	Template       string
	TemplateReason string
}

// templateHarness gives a test its own template cache, so that it sees the
// cache start empty whatever else runs.
func templateHarness(t *testing.T, x *h) (cache string, env opts) {
	t.Helper()
	if x.mode != ModeHypervisor {
		t.Skip("VM templates apply to hypervisor isolation only")
	}
	cache = filepath.Join(x.dir, "cache")
	if err := os.MkdirAll(cache, 0o700); err != nil {
		t.Fatal(err)
	}
	return cache, opts{env: []string{"RUNH_CACHE_DIR=" + cache}}
}

func (x *h) bootRecord(id string) bootRecord {
	x.t.Helper()
	var b bootRecord
	data, err := os.ReadFile(filepath.Join(x.root, id, "boot.json"))
	if err != nil || json.Unmarshal(data, &b) != nil {
		x.t.Fatalf("boot record of %s: %v", id, err)
	}
	return b
}

func templates(t *testing.T, cache string) []string {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(cache, "templates"))
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// runOut runs a container to completion with env and returns its stdout.
func (x *h) runOut(o opts, name string, args ...string) string {
	x.t.Helper()
	id := x.id(name)
	out := createFile(x.t, x.dir, name+".out")
	o.stdout = out
	r := x.runO(o, "run", "--bundle", x.bundle(name, nil, args...), id)
	if r.code != 0 {
		x.t.Fatalf("run %s: %v: %s", name, r, readFile(fileName(out)))
	}
	return readFile(fileName(out))
}

// TestTemplateReuse: the first create makes the template, the next restore
// it; two restored guests draw different random bytes, lay out processes
// differently, and keep the host's time.
func TestTemplateReuse(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		cache, env := templateHarness(t, x)
		// A restore that fails falls back to a boot (and the template is
		// made again): the containers still work, so the test needs two
		// restored ones among four, not every one.
		var ids, restored []string
		for i := 0; i < 4; i++ {
			id := x.id(fmt.Sprintf("tpl%d", i))
			o := env
			o.stdout = createFile(t, x.dir, fmt.Sprintf("tpl%d.out", i))
			if r := x.runO(o, "create", "--bundle", x.bundle(fmt.Sprintf("tpl%d", i), nil, "sleep", "1000"), id); r.code != 0 {
				t.Fatalf("create: %v", r)
			}
			defer x.cleanupContainer(id)
			ids = append(ids, id)
			b := x.bootRecord(id)
			switch {
			case i == 0 && b.Template != "built":
				t.Errorf("first container started %q (%s), want built", b.Template, b.TemplateReason)
			case b.Template == "restored":
				restored = append(restored, id)
			default:
				t.Logf("container %d started %q: %s", i, b.Template, b.TemplateReason)
			}
		}
		if len(restored) < 2 {
			t.Fatalf("%d of 3 containers restored from the template, want at least 2", len(restored))
		}
		if n := len(templates(t, cache)); n != 1 {
			t.Errorf("%d templates, want 1", n)
		}
		var seen []string
		for _, id := range restored[:2] {
			x.must("start", id)
			out := x.must("exec", id, "sh", "-c", "head -c 32 /dev/urandom | od -An -tx1; grep stack /proc/self/maps; date +%s").stdout
			f := strings.Fields(out)
			host := time.Now().Unix()
			if guest, err := strconv.ParseInt(f[len(f)-1], 10, 64); err != nil || guest < host-1 || guest > host+1 {
				t.Errorf("guest clock %q, host %d", f[len(f)-1], host)
			}
			seen = append(seen, strings.Join(f[:len(f)-1], " "))
		}
		if seen[0] == seen[1] {
			t.Errorf("two restored guests drew the same random bytes and layout: %s", seen[0])
		}
		for _, id := range ids {
			x.must("delete", "--force", id)
		}
	})
}

// TestTemplateCorrupt: a damaged template means a cold boot and a new
// template, never a failed container.
func TestTemplateCorrupt(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		cache, env := templateHarness(t, x)
		var tpls []string
		for i := 0; i < 3 && len(tpls) == 0; i++ {
			name := fmt.Sprintf("tplc0%d", i)
			if got := x.runOut(env, name, "echo", "one"); got != "one\n" {
				t.Fatalf("first container: %q", got)
			}
			tpls = templates(t, cache) // gone again if its restore failed
		}
		if len(tpls) != 1 {
			t.Fatalf("templates after the first runs: %v", tpls)
		}
		state := filepath.Join(cache, "templates", tpls[0], "state")
		if err := os.WriteFile(state, []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		id := x.id("tplc1")
		o := env
		o.stdout = createFile(t, x.dir, "tplc1.out")
		if r := x.runO(o, "create", "--bundle", x.bundle("tplc1", nil, "echo", "two"), id); r.code != 0 {
			t.Fatalf("create with a corrupt template: %v", r)
		}
		defer x.cleanupContainer(id)
		if b := x.bootRecord(id); b.Template != "built" && b.Template != "cold" {
			t.Errorf("after corruption the VM started %q (%s)", b.Template, b.TemplateReason)
		}
		x.must("start", id)
		waitFileCount(t, fileName(o.stdout), "two", 1, x.timeout())
		x.must("delete", "--force", id)
		if got := x.runOut(env, "tplc2", "echo", "three"); got != "three\n" {
			t.Fatalf("container after the rebuild: %q", got)
		}
	})
}

// TestTemplateConcurrent: ten creates at once with no template all succeed,
// and leave one template.
func TestTemplateConcurrent(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		cache, env := templateHarness(t, x)
		var wg sync.WaitGroup
		errs := make(chan error, 10)
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				name := fmt.Sprintf("tplk%d", i)
				id := x.id(name)
				o := env
				o.stdout = createFile(t, x.dir, name+".out")
				r := x.runO(o, "run", "--bundle", x.bundle(name, nil, "true"), id)
				if r.code != 0 {
					errs <- fmt.Errorf("%s: %v", name, r)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		// One, or none when a restore failed and took it away.
		if tpls := templates(t, cache); len(tpls) > 1 {
			t.Errorf("templates after ten concurrent creates: %v", tpls)
		}
	})
}

// TestTemplateKilledWhileMade: QEMU killed while the template is being
// made leaves no half-written template, and the create still succeeds.
func TestTemplateKilledWhileMade(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		cache, env := templateHarness(t, x)
		id := x.id("tplkill")
		o := env
		cmd, wait := x.start(o, "create", "--bundle", x.bundle("tplkill", nil, "true"), id)
		defer x.cleanupContainer(id)
		// The template VM runs in a temporary directory of the cache.
		killed := false
		deadline := time.Now().Add(x.timeout())
		for !killed && time.Now().Before(deadline) {
			for _, pid := range processesMentioning(filepath.Join(cache, "templates")) {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(b), "qemu") {
					syscall.Kill(pid, syscall.SIGKILL)
					killed = true
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		r := wait()
		_ = cmd
		if !killed {
			t.Skip("the template was made before the test could kill it")
		}
		if r.code != 0 {
			t.Errorf("create whose template VM was killed: %v", r)
		}
		for _, n := range templates(t, cache) {
			if strings.Contains(n, ".") {
				t.Errorf("half-written template left: %s", n)
			} else if _, err := os.Stat(filepath.Join(cache, "templates", n, "meta.json")); err != nil {
				t.Errorf("template %s without its metadata", n)
			}
		}
	})
}

// TestTemplateMade: `runh template` makes the template ahead of the first
// create, which then restores from it; another runh binary (a new
// version) has a template of its own.
func TestTemplateMade(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		cache, env := templateHarness(t, x)
		for _, want := range []string{": made in ", ": present"} {
			r := x.runO(env, "template")
			if r.code != 0 || !strings.Contains(r.stdout, want) {
				t.Fatalf("runh template: %v, want %q", r, want)
			}
		}
		if n := len(templates(t, cache)); n != 1 {
			t.Fatalf("%d templates after runh template, want 1", n)
		}
		start := func(name string, o opts) bootRecord {
			id := x.id(name)
			o.stdout = createFile(t, x.dir, name+".out")
			if r := x.runO(o, "create", "--bundle", x.bundle(name, nil, "true"), id); r.code != 0 {
				t.Fatalf("create: %v", r)
			}
			defer x.cleanupContainer(id)
			b := x.bootRecord(id)
			x.must("delete", "--force", id)
			return b
		}
		if b := start("tplm0", env); b.Template != "restored" {
			t.Errorf("the first create after runh template started %q (%s), want restored", b.Template, b.TemplateReason)
		}
		// The same binary with a byte more: its initrd, hence its key, differ.
		other := filepath.Join(x.dir, "runh-other")
		b, err := os.ReadFile(runtimeBin)
		if err == nil {
			err = os.WriteFile(other, append(b, 0), 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		// Its guest kernel is found next to the binary: say where.
		var chk struct{ Hypervisor struct{ Kernel string } }
		if err := json.Unmarshal([]byte(x.must("check", "--format", "json").stdout), &chk); err != nil || chk.Hypervisor.Kernel == "" {
			t.Fatalf("runh check: no guest kernel: %v", err)
		}
		o := env
		o.bin = other
		o.env = append(append([]string{}, env.env...), "RUNH_GUEST_DIR="+filepath.Dir(chk.Hypervisor.Kernel))
		if b := start("tplm1", o); b.Template != "built" {
			t.Errorf("a new runh binary's first create started %q (%s), want built", b.Template, b.TemplateReason)
		}
		if n := len(templates(t, cache)); n != 2 {
			t.Errorf("%d templates after a new binary's create, want 2", n)
		}
	})
}

// TestTemplateMadeInterrupted: `runh template` stopped by SIGTERM while its
// VM boots leaves no VM, no temporary directory and no half-made template.
func TestTemplateMadeInterrupted(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		cache, env := templateHarness(t, x)
		tmp := filepath.Join(x.dir, "tmp")
		if err := os.MkdirAll(tmp, 0o700); err != nil {
			t.Fatal(err)
		}
		env.env = append(env.env, "TMPDIR="+tmp)
		cmd, wait := x.start(env, "template")
		booting := false
		for deadline := time.Now().Add(x.timeout()); !booting && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			booting = len(processesMentioning(filepath.Join(cache, "templates"))) > 0
		}
		cmd.Process.Signal(syscall.SIGTERM)
		r := wait()
		if !booting || r.code == 0 {
			t.Skipf("the template was made before the test could stop it: %v", r)
		}
		time.Sleep(500 * time.Millisecond) // QEMU dies with its parent
		if pids := processesMentioning(cache); len(pids) > 0 {
			t.Errorf("processes left: %v", pids)
		}
		if n := templates(t, cache); len(n) > 0 {
			t.Errorf("left in the template cache: %v", n)
		}
		if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
			t.Errorf("left in TMPDIR: %s", ents[0].Name())
		}
	})
}

// TestTemplateFreedMemory: memory a guest frees goes back to the host (the
// balloon's free page reporting) in a VM that booted; in one restored from
// a template, whose RAM is the template's file mapped privately, nothing
// is reported, since QEMU would discard the pages by punching holes in
// that file under every other VM of the template: the template stays as
// made and the next create still restores it.
func TestTemplateFreedMemory(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		cache, env := templateHarness(t, x)
		const fill = "dd if=/dev/zero of=/big/f bs=1M count=384 2>/dev/null && echo full"
		bundle := func(name string, template bool, args ...string) string {
			return x.bundle(name, func(s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/big", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=400m"}})
				if !template {
					s.Annotations["io.runh.vm.template"] = "false"
				}
			}, args...)
		}
		rssKiB := func(pid int) int {
			for _, l := range strings.Split(readFile(fmt.Sprintf("/proc/%d/status", pid)), "\n") {
				if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
					n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
					return n
				}
			}
			return 0
		}

		t.Run("booted", func(t *testing.T) {
			x := x.at(t)
			id := x.id("freed-booted")
			o := env
			o.stdout = createFile(t, x.dir, "booted.out")
			if r := x.runO(o, "create", "--bundle", bundle("freed-booted", false, "sh", "-c", fill+"; rm /big/f; echo freed; sleep 1000"), id); r.code != 0 {
				t.Fatalf("create: %v", r)
			}
			defer x.cleanupContainer(id)
			qemu := qemuChild(t, x.state(id).Pid)
			x.must("start", id)
			waitFileCount(t, fileName(o.stdout), "freed", 1, x.timeout())
			// The peak is at least the file; reports come 2 s after the
			// free, in 4 MiB blocks.
			deadline := time.Now().Add(30 * time.Second)
			for rssKiB(qemu) > 256<<10 {
				if time.Now().After(deadline) {
					t.Fatalf("QEMU's RSS still %d KiB 30 s after the guest freed 384 MiB", rssKiB(qemu))
				}
				time.Sleep(500 * time.Millisecond)
			}
		})

		t.Run("restored", func(t *testing.T) {
			x := x.at(t)
			x.runOut(env, "freed-first", "true") // makes the template
			tpl := templates(t, cache)
			if len(tpl) != 1 {
				t.Fatalf("templates: %v", tpl)
			}
			mem := filepath.Join(cache, "templates", tpl[0], "mem")
			var before syscall.Stat_t
			if err := syscall.Stat(mem, &before); err != nil {
				t.Fatal(err)
			}
			id := x.id("freed-restored")
			o := env
			o.stdout = createFile(t, x.dir, "restored.out")
			if r := x.runO(o, "run", "--keep", "--bundle", bundle("freed-restored", true, "sh", "-c", fill+"; rm /big/f; sleep 6; echo done"), id); r.code != 0 {
				t.Fatalf("run: %v", r)
			}
			defer x.cleanupContainer(id)
			if b := x.bootRecord(id); b.Template != "restored" {
				t.Fatalf("container started %q (%s), want restored", b.Template, b.TemplateReason)
			}
			var after syscall.Stat_t
			if err := syscall.Stat(mem, &after); err != nil || after.Ctim != before.Ctim || after.Blocks != before.Blocks {
				t.Errorf("template memory file changed under a restored VM: ctime %v -> %v, blocks %d -> %d (%v)", before.Ctim, after.Ctim, before.Blocks, after.Blocks, err)
			}
			id2 := x.id("freed-next")
			if r := x.runO(env, "run", "--keep", "--bundle", bundle("freed-next", true, "true"), id2); r.code != 0 {
				t.Fatalf("run: %v", r)
			}
			defer x.cleanupContainer(id2)
			if b := x.bootRecord(id2); b.Template != "restored" {
				t.Errorf("next container started %q (%s), want restored", b.Template, b.TemplateReason)
			}
		})
	})
}
