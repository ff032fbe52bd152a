// Package assets finds the guest kernel and its modules on the host.
//
// `make guest-kernel` (mk/guest.mk) writes two directories:
//   - build/guest: runh's own kernel (hvshim/assets/build-kernel.sh):
//     vmlinux, version, config, flavor ("runh"); everything built in.
//   - build/guest-debian: Debian's kernel, the fallback
//     (hvshim/assets/guest-kernel.sh): vmlinuz, vmlinux if it could be
//     extracted, version, modules/*.ko and modules.dep.
package assets

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// EnvDir overrides the guest asset directory: when set, it is the only
// directory Find looks in.
const EnvDir = "RUNH_GUEST_DIR"

// Kernel flavors.
const (
	FlavorRunh         = "runh"         // runh's own minimal kernel, everything built in
	FlavorDistribution = "distribution" // a distribution's generic kernel and its modules
)

// Guest is a located set of guest assets.
type Guest struct {
	Dir     string   // the asset directory
	Kernel  string   // path of vmlinux (preferred) or vmlinuz
	Version string   // kernel release, if recorded
	Flavor  string   // FlavorRunh or FlavorDistribution
	Modules []string // module paths, each after its dependencies
}

// Roots returns the installation roots Find searches, in order; in each it
// prefers runh's kernel (guest/) to Debian's (guest-debian/).
func Roots() []string {
	var roots []string
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			roots = append(roots, filepath.Join(filepath.Dir(exe), "..", "build"))
		}
	}
	return append(roots, "/usr/local/share/runh", "/usr/share/runh")
}

// SearchDirs returns the directories Find tries, in order: $RUNH_GUEST_DIR
// alone when set, else guest/ then guest-debian/ of each root.
func SearchDirs() []string {
	return searchDirs(os.Getenv(EnvDir), Roots())
}

func searchDirs(env string, roots []string) []string {
	if env != "" {
		return []string{env}
	}
	var dirs []string
	for _, r := range roots {
		dirs = append(dirs, filepath.Join(r, "guest"), filepath.Join(r, "guest-debian"))
	}
	return dirs
}

// Find returns the assets of the first directory of SearchDirs holding a
// kernel.
func Find() (*Guest, error) {
	return findIn(SearchDirs())
}

func findIn(dirs []string) (*Guest, error) {
	for _, d := range dirs {
		if kernelIn(d) != "" {
			return Load(filepath.Clean(d))
		}
	}
	return nil, fmt.Errorf("no guest kernel found (looked in %s; run `make guest-kernel` or set %s)",
		strings.Join(dirs, ", "), EnvDir)
}

// kernelIn returns the kernel image of dir, or "". The uncompressed ELF
// kernel comes first: it boots through PVH and skips the bzImage's own
// decompression, which costs seconds under TCG. runh's kernel has only
// that; for Debian's, guest-kernel.sh extracts it from vmlinuz when it can.
func kernelIn(dir string) string {
	for _, n := range []string{"vmlinux", "vmlinuz"} {
		p := filepath.Join(dir, n)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// Load reads the assets of one directory.
func Load(dir string) (*Guest, error) {
	g := &Guest{Dir: dir, Kernel: kernelIn(dir), Flavor: FlavorDistribution}
	if g.Kernel == "" {
		return nil, fmt.Errorf("guest kernel: no vmlinux or vmlinuz in %s", dir)
	}
	if v, err := os.ReadFile(filepath.Join(dir, "version")); err == nil {
		g.Version = strings.TrimSpace(string(v))
	}
	if f, err := os.ReadFile(filepath.Join(dir, "flavor")); err == nil && strings.TrimSpace(string(f)) == FlavorRunh {
		g.Flavor = FlavorRunh
	}
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if errors.Is(err, os.ErrNotExist) {
		return g, nil // a kernel with everything built in
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps, err := ParseDeps(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	order, err := LoadOrder(deps)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	for _, m := range order {
		p := filepath.Join(dir, "modules", m)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("guest module: %w", err)
		}
		g.Modules = append(g.Modules, p)
	}
	return g, nil
}

// ParseDeps reads modules.dep lines ("a.ko: b.ko c.ko"), keeping basenames,
// so both depmod's output and guest-kernel.sh's are accepted.
func ParseDeps(r io.Reader) (map[string][]string, error) {
	deps := map[string][]string{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("bad line %q", line)
		}
		var ds []string
		for _, d := range strings.Fields(rest) {
			ds = append(ds, filepath.Base(d))
		}
		deps[filepath.Base(strings.TrimSpace(name))] = ds
	}
	return deps, sc.Err()
}

// LoadOrder returns every module of deps after all of its dependencies,
// otherwise in name order so the result is stable.
func LoadOrder(deps map[string][]string) ([]string, error) {
	names := make([]string, 0, len(deps))
	for n := range deps {
		names = append(names, n)
	}
	sort.Strings(names)
	const (
		visiting = 1
		done     = 2
	)
	mark := map[string]int{}
	var order []string
	var visit func(string) error
	visit = func(n string) error {
		switch mark[n] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("dependency cycle at %s", n)
		}
		ds, ok := deps[n]
		if !ok {
			return fmt.Errorf("module %s is needed but not listed", n)
		}
		mark[n] = visiting
		for _, d := range ds {
			if err := visit(d); err != nil {
				return err
			}
		}
		mark[n] = done
		order = append(order, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}
