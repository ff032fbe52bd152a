package engines

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Paths of the Debian package (`make deb`, mk/install.mk).
const (
	pkgRunh   = "/usr/bin/runh"
	pkgRunhVM = "/usr/bin/runh-vm"
	pkgShare  = "/usr/share/runh"
)

// TestPackage installs the Debian package named by RUNH_DEB with apt, as an
// operator would, and runs a container in each mode through podman (and ctr)
// with the installed binary, configured as docs/engines.md says, with the
// package's paths. It installs a package on this machine, so it runs only
// when asked: `make package-test` (scripts/package-test.sh, part of `make
// test`) builds the package, sets RUNH_DEB and purges the package again
// whatever happens here. It refuses to install over a runh it did not put
// there.
func TestPackage(t *testing.T) {
	deb := os.Getenv("RUNH_DEB")
	if deb == "" {
		t.Skip("RUNH_DEB is not set: `make package-test` builds the package and runs this test")
	}
	if isRef {
		t.Skip("the package test is about runh, not " + runtimeBin)
	}
	if !fileExists(deb) {
		t.Fatalf("RUNH_DEB=%s: no such file (make deb)", deb)
	}
	if r := runCmd(runOpts{}, "dpkg-query", "-W", "-f=${Status}", "runh"); strings.Contains(r.stdout, "ok installed") {
		t.Fatalf("a runh package is installed already: this test installs its own and removes it; apt-get purge runh first")
	}
	for _, p := range []string{pkgRunh, pkgRunhVM, pkgShare} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists and does not come from a runh package: installing would overwrite it, removing it would lose it", p)
		}
	}

	// The control fields: the binary is static, QEMU is what hypervisor
	// isolation runs.
	fields := expectOK(t, runCmd(runOpts{}, "dpkg-deb", "--field", deb, "Package", "Architecture", "Depends"))
	for _, want := range []string{"Package: runh", "Depends: qemu-system-x86"} {
		if !strings.Contains(fields, want) {
			t.Fatalf("control fields of %s: no %q in\n%s", deb, want, fields)
		}
	}

	apt := runOpts{env: []string{"DEBIAN_FRONTEND=noninteractive"}, timeout: 10 * time.Minute}
	t.Cleanup(func() {
		r := runCmd(apt, "apt-get", "purge", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "runh")
		if r.code != 0 {
			t.Errorf("apt-get purge runh: %s", r)
		}
		for _, p := range []string{pkgRunh, pkgRunhVM, pkgShare} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s is left after apt-get purge runh", p)
			}
		}
	})
	start := time.Now()
	expectOK(t, runCmd(apt, "apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", deb))
	t.Logf("apt-get install %s: %s", filepath.Base(deb), time.Since(start).Round(time.Millisecond))

	files := "\n" + expectOK(t, runCmd(runOpts{}, "dpkg", "-L", "runh")) + "\n"
	for _, want := range []string{pkgRunh, pkgRunhVM} {
		if !strings.Contains(files, "\n"+want+"\n") {
			t.Errorf("dpkg -L runh: no %s", want)
		}
	}
	if link, err := os.Readlink(pkgRunhVM); err != nil || link != "runh" {
		t.Errorf("%s: want a link to runh, got %q (%v)", pkgRunhVM, link, err)
	}
	t.Logf("%s", firstLine(expectOK(t, runCmd(runOpts{}, pkgRunh, "--version"))))

	// The installed runh finds the installed kernel: no RUNH_GUEST_DIR, no
	// build tree next to /usr/bin.
	t.Setenv("RUNH_GUEST_DIR", "")
	var check struct {
		Process struct {
			Usable bool `json:"usable"`
		} `json:"process"`
		Hypervisor struct {
			Usable        bool   `json:"usable"`
			Reason        string `json:"reason"`
			Kernel        string `json:"kernel"`
			KernelVersion string `json:"kernelVersion"`
			KernelFlavor  string `json:"kernelFlavor"`
		} `json:"hypervisor"`
	}
	out := expectOK(t, runCmd(runOpts{}, pkgRunh, "check", "--format", "json"))
	if err := json.Unmarshal([]byte(out), &check); err != nil {
		t.Fatalf("runh check --format json: %v\n%s", err, out)
	}
	if !check.Process.Usable || !check.Hypervisor.Usable {
		t.Fatalf("runh check: process usable %v, hypervisor usable %v (%s)\n%s", check.Process.Usable,
			check.Hypervisor.Usable, check.Hypervisor.Reason, runCmd(runOpts{}, pkgRunh, "check").stdout)
	}
	switch {
	case strings.HasPrefix(check.Hypervisor.Kernel, pkgShare+"/"):
		if !strings.Contains(files, "\n"+check.Hypervisor.Kernel+"\n") {
			t.Fatalf("runh check: kernel %s, which the package does not hold", check.Hypervisor.Kernel)
		}
	case strings.HasPrefix(check.Hypervisor.Kernel, "/usr/local/share/runh/"):
		// runh looks in /usr/local/share/runh first: a `make install` there wins.
		t.Logf("runh check: the kernel of an earlier make install, %s, comes before the package's", check.Hypervisor.Kernel)
	default:
		t.Fatalf("runh check: kernel %s, want one under %s", check.Hypervisor.Kernel, pkgShare)
	}
	t.Logf("guest kernel: %s %s (%s)", check.Hypervisor.Kernel, check.Hypervisor.KernelVersion, check.Hypervisor.KernelFlavor)
	hostKernel := strings.TrimSpace(runCmd(runOpts{}, "uname", "-r").stdout)
	checkGuest := func(t *testing.T, mode, got string) {
		t.Helper()
		checkKernel(t, mode, hostKernel, got)
		if mode == modeHypervisor && got != check.Hypervisor.KernelVersion {
			t.Fatalf("the VM ran kernel %q, runh check names %q", got, check.Hypervisor.KernelVersion)
		}
	}

	// podman, configured as docs/engines.md says, with the package's paths.
	t.Run("podman", func(t *testing.T) {
		if err := podmanSetup(); err != nil {
			t.Skip(err)
		}
		env := append([]string{}, podmanEnv...)
		for i, e := range env {
			conf, ok := strings.CutPrefix(e, "CONTAINERS_CONF=")
			if !ok {
				continue
			}
			b, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, "[engine.runtimes]\nrunh = [\""+pkgRunh+"\"]\nrunh-vm = [\""+pkgRunhVM+"\"]\n"...)
			conf = filepath.Join(t.TempDir(), "containers.conf")
			if err := os.WriteFile(conf, b, 0o644); err != nil {
				t.Fatal(err)
			}
			env[i] = "CONTAINERS_CONF=" + conf
		}
		for _, c := range []struct {
			name, mode string
			args       []string
		}{
			{"process", modeProcess, []string{"--runtime", "runh", "run", "--rm"}},
			{"runh-vm", modeHypervisor, []string{"--runtime", "runh-vm", "run", "--rm"}},
			{"annotation", modeHypervisor, []string{"--runtime", "runh", "run", "--rm", "--annotation", "io.runh.isolation=hypervisor"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				start := time.Now()
				argv := append(append([]string{"podman"}, c.args...), imageName, "sh", "-c", "echo hello; uname -r")
				lines := strings.Split(expectOK(t, runCmd(runOpts{env: env, timeout: cmdTimeout(c.mode)}, argv...)), "\n")
				if len(lines) != 2 || lines[0] != "hello" {
					t.Fatalf("want hello and a kernel release, got %q", lines)
				}
				checkGuest(t, c.mode, lines[1])
				t.Logf("podman %s: kernel %s, %s", strings.Join(c.args, " "), lines[1], time.Since(start).Round(time.Millisecond))
			})
		}
	})

	// ctr names the binary per container (docs/engines.md), here the package's.
	t.Run("ctr", func(t *testing.T) {
		if err := containerdSetup(); err != nil {
			t.Skip(err)
		}
		for _, c := range []struct{ mode, bin string }{{modeProcess, pkgRunh}, {modeHypervisor, pkgRunhVM}} {
			t.Run(c.mode, func(t *testing.T) {
				id := "pkg-" + c.mode
				t.Cleanup(func() {
					o := runOpts{timeout: time.Minute}
					ctr("default", o, "task", "delete", "-f", id)
					ctr("default", o, "containers", "rm", id)
				})
				r := ctr("default", runOpts{timeout: cmdTimeout(c.mode)}, "run", "--rm", "--runc-binary", c.bin,
					"--runc-root", filepath.Join(ctrdDir, "runc-root"), imageName, id, "sh", "-c", "uname -r; "+ctrFlush)
				got := expectOK(t, r)
				checkGuest(t, c.mode, got)
				t.Logf("ctr run --runc-binary %s: kernel %s", c.bin, got)
			})
		}
	})
}
