package engines

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// crictlBin is set once the CRI setup found crictl (build/engines/bin, built
// by `make engines` from sigs.k8s.io/cri-tools, or $CRICTL, or $PATH).
var crictlBin string

var criSetup = sync.OnceValue(func() error {
	if err := containerdSetup(); err != nil {
		return err
	}
	bin := os.Getenv("CRICTL")
	if bin == "" {
		bin = filepath.Join(repoRoot, "build/engines/bin/crictl")
	}
	if !fileExists(bin) {
		p, err := exec.LookPath("crictl")
		if err != nil {
			return fmt.Errorf("crictl not found at %s or in PATH (make engines-deps builds it)", bin)
		}
		bin = p
	}
	crictlBin = bin
	// The CRI plugin learns about images imported behind its back on a
	// periodic sync: wait until it lists the sandbox image.
	if !waitFor(30*time.Second, func() bool {
		return strings.Contains(runCmd(runOpts{}, crictlArgs("images", "-q", pauseName)...).stdout, "sha256:")
	}) {
		return fmt.Errorf("CRI does not list %s: %s", pauseName, runCmd(runOpts{}, crictlArgs("images")...))
	}
	return nil
})

func crictlArgs(args ...string) []string {
	ep := "unix://" + ctrdSock
	return append([]string{crictlBin, "--config", os.DevNull, "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "3m"}, args...)
}

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCRI(t *testing.T) {
	runScenarios(t, "crictl", criSetup, []scenario{
		{name: "pod", fn: func(t *testing.T, mode string) {
			dir := t.TempDir()
			crictl := func(args ...string) result {
				return runCmd(runOpts{timeout: cmdTimeout(mode)}, crictlArgs(args...)...)
			}
			ok := func(args ...string) string {
				t.Helper()
				r := crictl(args...)
				if r.code != 0 {
					t.Fatalf("crictl %s: %s\ncontainerd log:\n%s", strings.Join(args, " "), r,
						grepLines(readFile(filepath.Join(ctrdDir, "containerd.log")), "level=error", 5))
				}
				return strings.TrimSpace(r.stdout)
			}
			// Host networking: no CNI plugin is configured.
			pod := func(name string, ann map[string]string) string {
				return writeJSON(t, filepath.Join(dir, name+".json"), map[string]any{
					"metadata":      map[string]any{"name": name, "namespace": "runh-engines", "uid": name + "-" + mode, "attempt": 0},
					"log_directory": dir,
					"annotations":   ann,
					"linux":         map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}}},
				})
			}

			if mode == modeHypervisor {
				// One VM per container cannot give a pod its shared network
				// namespace yet: runh must refuse, saying so.
				for _, c := range []struct {
					handler string
					ann     map[string]string
				}{
					{"runh-vm", nil},
					{"runh", map[string]string{"io.runh.isolation": "hypervisor"}},
				} {
					r := crictl("runp", "--runtime", c.handler, pod("vmpod-"+c.handler, c.ann))
					if r.code == 0 {
						id := strings.TrimSpace(r.stdout)
						crictl("stopp", id)
						crictl("rmp", id)
						t.Fatalf("handler %s, annotations %v: pod started in hypervisor isolation; want a refusal", c.handler, c.ann)
					}
					msg := strings.ToLower(r.stderr)
					if !strings.Contains(msg, "pod") || !strings.Contains(msg, "hypervisor") {
						t.Fatalf("handler %s: refusal does not say pods are unsupported in hypervisor isolation: %s", c.handler, r)
					}
				}
				return
			}

			podID := ok("runp", "--runtime", "runh", pod("pod1", nil))
			t.Cleanup(func() { crictl("stopp", podID); crictl("rmp", podID) })
			ctrCfg := writeJSON(t, filepath.Join(dir, "c1.json"), map[string]any{
				"metadata": map[string]any{"name": "c1"},
				"image":    map[string]any{"image": imageName},
				"command":  []string{"/bin/sh", "-c", "echo hello-from-cri; exec sleep 100000"},
				"log_path": "c1.log",
				"linux":    map[string]any{},
			})
			cid := ok("create", "--no-pull", podID, ctrCfg, filepath.Join(dir, "pod1.json"))
			ok("start", cid)
			expectOut(t, crictl("exec", "-s", cid, "sh", "-c", "echo in-exec; id -u"), 0, "in-exec\n0")
			if !waitFor(20*time.Second, func() bool { return strings.Contains(crictl("logs", cid).stdout, "hello-from-cri") }) {
				t.Fatalf("logs: %s", crictl("logs", cid))
			}
			ok("stop", "--timeout", "1", cid)
			if st := ok("inspect", "-o", "go-template", "--template", "{{.status.state}}", cid); st != "CONTAINER_EXITED" {
				t.Fatalf("after stop: state %q", st)
			}
			ok("rm", cid)
			ok("stopp", podID)
			ok("rmp", podID)
			if out := ok("pods", "-q", "--id", podID); out != "" {
				t.Fatalf("pod still listed after rmp: %q", out)
			}
		}},
	})
}
