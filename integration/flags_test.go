package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGlobalFlags covers --version, --log with both formats and --debug.
func TestGlobalFlags(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		t.Run("version", func(t *testing.T) {
			r := x.at(t).runO(opts{noRoot: true}, "--version")
			if r.code != 0 || !strings.Contains(r.stdout, "version") || !strings.Contains(r.stdout, "spec: 1.") {
				t.Errorf("--version: want the version and a spec line: %v", r)
			}
		})
		t.Run("log-json", func(t *testing.T) {
			log := filepath.Join(x.dir, "log.json")
			r := x.at(t).rt("--log", log, "--log-format", "json", "kill", "rh-no-such-container")
			if r.code == 0 {
				t.Fatalf("kill of an unknown container succeeded: %v", r)
			}
			// runc writes the error only to --log, runh to both: allow either.
			if n := len(strings.Split(strings.TrimSpace(r.stderr), "\n")); strings.TrimSpace(r.stderr) != "" && n != 1 {
				t.Errorf("stderr has %d lines, want at most one: %v", n, r)
			}
			var found bool
			for _, l := range strings.Split(strings.TrimSpace(readFile(log)), "\n") {
				var e struct{ Level, Msg, Time string }
				if err := json.Unmarshal([]byte(l), &e); err != nil {
					t.Errorf("--log-format json: line %q is not JSON: %v", l, err)
					continue
				}
				if e.Level == "error" && strings.Contains(e.Msg, "not exist") && e.Time != "" {
					found = true
				}
			}
			if !found {
				t.Errorf("--log has no error entry with level/msg/time: %q", readFile(log))
			}
		})
		t.Run("log-text", func(t *testing.T) {
			log := filepath.Join(x.dir, "log.txt")
			r := x.at(t).rt("--log", log, "--log-format", "text", "kill", "rh-no-such-container")
			if r.code == 0 || !strings.Contains(readFile(log), "not exist") {
				t.Errorf("--log text: want the error in %s, got %q: %v", log, readFile(log), r)
			}
		})
		t.Run("log-format-bad", func(t *testing.T) {
			r := x.at(t).rt("--log-format", "xml", "list")
			if r.code == 0 {
				t.Errorf("--log-format xml accepted: %v", r)
			}
		})
		t.Run("debug", func(t *testing.T) {
			x.at(t).must("--debug", "list")
		})
	})
}

// TestCreateFlags covers create's --no-pivot, --no-new-keyring and
// --preserve-fds, and run's --no-subreaper.
func TestCreateFlags(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		t.Run("no-pivot-no-new-keyring", func(t *testing.T) {
			x := x.at(t)
			id := x.id("nopivot")
			bundle := x.bundle("nopivot", nil, "sh", "-c", "ls /; echo done")
			out := createFile(t, x.dir, "nopivot.out")
			x.create(id, bundle, out, "--no-pivot", "--no-new-keyring")
			x.must("start", id)
			x.waitStatus(id, "stopped")
			// Even without pivot_root the container sees its own rootfs.
			if o := readFile(out.Name()); !strings.Contains(o, "bin") || !strings.Contains(o, "done") {
				t.Errorf("container output %q, want its rootfs listing", o)
			}
			x.must("delete", id)
			x.assertGone(id)
		})
		t.Run("preserve-fds", func(t *testing.T) {
			x := x.at(t)
			id := x.id("pfds")
			bundle := x.bundle("pfds", nil, "sh", "-c", "echo preserved-by-create >&3")
			fd3 := createFile(t, x.dir, "fd3")
			x.cleanupContainer(id)
			r := x.runO(opts{extra: []*os.File{fd3}}, "create", "--preserve-fds", "1", "--bundle", bundle, id)
			skipIfUnsupported(t, x, r)
			if r.code != 0 {
				t.Fatalf("create --preserve-fds: %v", r)
			}
			x.must("start", id)
			x.waitStatus(id, "stopped")
			if got := readFile(fd3.Name()); got != "preserved-by-create\n" {
				t.Errorf("fd 3 got %q, want preserved-by-create", got)
			}
			x.must("delete", id)
			x.assertGone(id)
		})
		t.Run("no-subreaper", func(t *testing.T) {
			x := x.at(t)
			id := x.id("nosub")
			x.cleanupContainer(id)
			r := x.rt("run", "--no-subreaper", "--bundle", x.bundle("nosub", nil, "sh", "-c", "exit 3"), id)
			if r.code != 3 {
				t.Errorf("run --no-subreaper: want exit 3: %v", r)
			}
			x.assertGone(id)
		})
	})
}
