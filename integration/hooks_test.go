package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestHostHooks checks that the hooks the runtime spec runs in the
// runtime's namespaces (prestart, createRuntime, poststart, poststop) run on
// the host, with the container's state on stdin, in both modes: engines
// such as Docker rely on them (its network hook is a host binary).
func TestHostHooks(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		out := filepath.Join(x.dir, "hooks")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		hook := func(name string) specs.Hook {
			// /bin/sh of the host: the file it writes is on the host.
			return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "cat > " + filepath.Join(out, name)}}
		}
		id := x.id("hooks")
		bundle := x.bundle("hooks", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{
				Prestart:      []specs.Hook{hook("prestart")},
				CreateRuntime: []specs.Hook{hook("createRuntime")},
				Poststart:     []specs.Hook{hook("poststart")},
				Poststop:      []specs.Hook{hook("poststop")},
			}
		}, "sleep", "1000")
		x.create(id, bundle, nil)
		for _, name := range []string{"prestart", "createRuntime"} {
			checkHookState(t, filepath.Join(out, name), id)
		}
		x.must("start", id)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(filepath.Join(out, "poststart")); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		checkHookState(t, filepath.Join(out, "poststart"), id)
		// Poststop hooks are create's, as with runc: a bundle changed
		// since (here: its hooks dropped) does not change them.
		dropHooks(t, bundle)
		x.must("delete", "--force", id)
		checkHookState(t, filepath.Join(out, "poststop"), id)
		x.assertGone(id)
	})
}

func checkHookState(t *testing.T, file, id string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Errorf("hook %s did not run on the host: %v", filepath.Base(file), err)
		return
	}
	var st specs.State
	if err := json.Unmarshal(data, &st); err != nil || st.ID != id || !strings.HasPrefix(st.Version, "1.") {
		t.Errorf("hook %s got state %q (%v)", filepath.Base(file), data, err)
	}
}

func dropHooks(t *testing.T, bundle string) {
	t.Helper()
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	s.Hooks = nil
	if data, err = json.Marshal(&s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
