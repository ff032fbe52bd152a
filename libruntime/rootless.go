package libruntime

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/userns"
)

// SystemRoot is the state root of runh run by the host's root.
const SystemRoot = "/run/runh"

// InUserNamespace reports whether this process runs in a user namespace
// other than the host's (libcontainer's own test, which runc uses).
// podman's rootless runtime calls are such a process, root inside but
// with no privilege over the host.
func InUserNamespace() bool { return userns.RunningInUserNS() }

// Unprivileged reports whether runh runs without the host's root: as an
// ordinary user, or as root of a user namespace.
func Unprivileged() bool {
	return os.Geteuid() != 0 || InUserNamespace()
}

// DefaultRoot is the state root used when --root is not given: the
// system's for the host's root, and for anybody else with a runtime
// directory $XDG_RUNTIME_DIR/runh, which the user owns and which goes
// with the user's session, as runc uses $XDG_RUNTIME_DIR/runc. Root of a
// user namespace counts as a user unless $USER says root: a root login's
// XDG_RUNTIME_DIR (/run/user/0) is not where its state has always been.
// xdg says the runtime directory was chosen.
func DefaultRoot() (root string, xdg bool) {
	return defaultRoot(os.Geteuid(), InUserNamespace, os.LookupEnv)
}

func defaultRoot(euid int, inUserNS func() bool, lookupEnv func(string) (string, bool)) (string, bool) {
	dir, _ := lookupEnv("XDG_RUNTIME_DIR")
	if dir == "" {
		return SystemRoot, false
	}
	honor := euid != 0
	if !honor && inUserNS() {
		u, ok := lookupEnv("USER")
		honor = !ok || u != "root"
	}
	if !honor {
		return SystemRoot, false
	}
	return filepath.Join(dir, "runh"), true
}

// PrepareUserRoot makes the default state root under $XDG_RUNTIME_DIR,
// 0700 and sticky: the XDG specification lets the session prune files of
// its runtime directory that have neither the sticky bit nor recent
// access, and a container's state may sit untouched for days.
func PrepareUserRoot(root string) error {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return fmt.Errorf("state root in $XDG_RUNTIME_DIR: %w", err)
	}
	if err := os.Chmod(root, 0o700|os.ModeSticky); err != nil {
		return fmt.Errorf("state root in $XDG_RUNTIME_DIR: %w", err)
	}
	return nil
}

// ParseRootless parses --rootless: "auto" (or empty) gives nil, for the
// caller to detect; otherwise a boolean as strconv reads one, as runc does.
func ParseRootless(s string) (*bool, error) {
	if s == "" || strings.EqualFold(s, "auto") {
		return nil, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return nil, fmt.Errorf("invalid --rootless %q: want true, false or auto", s)
	}
	return &b, nil
}

// SystemCacheDir is runh's cache (the initrd, VM templates) for the
// host's root.
const SystemCacheDir = "/var/cache/runh"

// EnvCacheDir overrides the cache directory for everybody.
const EnvCacheDir = "RUNH_CACHE_DIR"

// CacheDir is where runh caches what it writes for hypervisor isolation:
// $RUNH_CACHE_DIR when set, the system's for the host's root, and for
// anybody else (an ordinary user, root of a rootless engine's user
// namespace) the user's own, $XDG_CACHE_HOME/runh or ~/.cache/runh, as
// the state root goes to $XDG_RUNTIME_DIR: a user may not write the
// system's, and what it writes must not be shared with other users.
func CacheDir() string {
	return cacheDir(Unprivileged(), os.LookupEnv)
}

func cacheDir(unprivileged bool, lookupEnv func(string) (string, bool)) string {
	if d, _ := lookupEnv(EnvCacheDir); d != "" {
		return d
	}
	if !unprivileged {
		return SystemCacheDir
	}
	if d, _ := lookupEnv("XDG_CACHE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "runh")
	}
	if h, _ := lookupEnv("HOME"); filepath.IsAbs(h) && h != "/" {
		return filepath.Join(h, ".cache", "runh")
	}
	// No home to cache in: the first write fails, naming this directory.
	return SystemCacheDir
}
