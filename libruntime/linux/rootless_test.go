package linux

import (
	"os"
	"testing"

	"github.com/runh-project/runh/libruntime"
)

func TestRootlessCgroups(t *testing.T) {
	for flag, want := range map[string]bool{"true": true, "false": false, "1": true, "0": false} {
		if got, err := RootlessCgroups(flag, false); err != nil || got != want {
			t.Errorf("--rootless %s: got %v, %v; want %v", flag, got, err, want)
		}
	}
	if _, err := RootlessCgroups("sometimes", false); err == nil {
		t.Error("--rootless sometimes: want an error")
	}
	// auto: rootless unless this is the host's root.
	got, err := RootlessCgroups("auto", false)
	if want := libruntime.Unprivileged(); err != nil || got != want {
		t.Errorf("--rootless auto (euid %d, user namespace %v): got %v, %v; want %v", os.Geteuid(), libruntime.InUserNamespace(), got, err, want)
	}
}
