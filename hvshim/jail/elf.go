package jail

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
)

// ldCache is the dynamic loader's cache, the first place it looks for a
// library: soname -> paths.
const ldCache = "/etc/ld.so.cache"

// defaultLibDirs are searched after the cache, as the loader does.
var defaultLibDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// libraries returns what the dynamic loader opens to run the ELF objects
// in paths: interpreters and needed libraries, transitively. A path that
// is not a dynamic ELF object brings nothing; a library that cannot be
// found is left out (the program then fails in the jail as it would
// outside, saying which).
func libraries(paths []string) []string {
	r := resolver{seen: map[string]bool{}, cache: readLDCache(ldCache)}
	for _, p := range paths {
		r.object(p)
	}
	return r.found
}

type resolver struct {
	seen  map[string]bool
	found []string
	cache map[string][]string
	mach  elf.Machine
}

func (r *resolver) object(path string) {
	f, err := elf.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if r.mach == 0 {
		r.mach = f.Machine
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err == nil {
			r.add(string(bytes.TrimRight(b, "\x00")))
		}
	}
	needed, dirs, rpath := dynamic(f)
	if len(needed) == 0 {
		return
	}
	// DT_RPATH counts only without DT_RUNPATH.
	if len(dirs) == 0 {
		dirs = rpath
	}
	var search []string
	for _, d := range dirs {
		for _, e := range strings.Split(d, ":") {
			e = strings.ReplaceAll(e, "${ORIGIN}", "$ORIGIN")
			search = append(search, strings.ReplaceAll(e, "$ORIGIN", filepath.Dir(path)))
		}
	}
	for _, n := range needed {
		for _, lib := range r.lookup(n, search) {
			r.add(lib)
		}
	}
}

// dynamic returns an object's needed libraries and run paths. It reads
// the dynamic section and only the strings it names: whole string tables
// (a large library's is over 100 kB) made this most of the jail's cost.
func dynamic(f *elf.File) (needed, runpath, rpath []string) {
	ds := f.SectionByType(elf.SHT_DYNAMIC)
	if ds == nil || int(ds.Link) >= len(f.Sections) || f.Class != elf.ELFCLASS64 {
		return nil, nil, nil
	}
	d, err := ds.Data()
	if err != nil {
		return nil, nil, nil
	}
	strs := f.Sections[ds.Link]
	str := func(off uint64) string {
		var s []byte
		buf := make([]byte, 128)
		for off < strs.Size {
			n, _ := strs.ReadAt(buf, int64(off))
			if n == 0 {
				break
			}
			if i := bytes.IndexByte(buf[:n], 0); i >= 0 {
				return string(append(s, buf[:i]...))
			}
			s, off = append(s, buf[:n]...), off+uint64(n)
		}
		return string(s)
	}
	for ; len(d) >= 16; d = d[16:] {
		v := f.ByteOrder.Uint64(d[8:])
		switch elf.DynTag(f.ByteOrder.Uint64(d)) {
		case elf.DT_NEEDED:
			needed = append(needed, str(v))
		case elf.DT_RUNPATH:
			runpath = append(runpath, str(v))
		case elf.DT_RPATH:
			rpath = append(rpath, str(v))
		case elf.DT_NULL:
			return
		}
	}
	return
}

// add records path and what it needs, once.
func (r *resolver) add(path string) {
	if r.seen[path] {
		return
	}
	r.seen[path] = true
	r.found = append(r.found, path)
	r.object(path)
}

// lookup finds a needed library as the loader would: a name with a slash
// is a path; otherwise the object's run path, the cache (every entry for
// the name: the loader may pick a hardware-specific one), the default
// directories.
func (r *resolver) lookup(name string, runpath []string) []string {
	if strings.Contains(name, "/") {
		return []string{name}
	}
	for _, d := range runpath {
		if p := filepath.Join(d, name); r.fits(p) {
			return []string{p}
		}
	}
	if ps := r.cache[name]; len(ps) > 0 {
		return ps
	}
	for _, d := range defaultLibDirs {
		if p := filepath.Join(d, name); r.fits(p) {
			return []string{p}
		}
	}
	return nil
}

// fits reports whether path is an ELF object for the program's machine.
func (r *resolver) fits(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Machine == r.mach
}

// readLDCache reads glibc's loader cache (format 1.1, which may follow
// the old format in the same file): the x86-64 libc6 entries.
func readLDCache(name string) map[string][]string {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil
	}
	const (
		magic     = "glibc-ld.so.cache1.1"
		header    = 48 // magic, nlibs, len_strings, flags, extension offset, unused
		entrySize = 24 // flags, key, value, osversion, hwcap
		wantFlags = 0x0303
	)
	i := bytes.Index(b, []byte(magic))
	if i < 0 {
		return nil
	}
	b = b[i:] // string offsets count from here
	if len(b) < header {
		return nil
	}
	le := binary.LittleEndian
	n := int(le.Uint32(b[20:]))
	str := func(off uint32) string {
		if int(off) >= len(b) {
			return ""
		}
		s := b[off:]
		if j := bytes.IndexByte(s, 0); j >= 0 {
			s = s[:j]
		}
		return string(s)
	}
	m := map[string][]string{}
	for k := 0; k < n && header+(k+1)*entrySize <= len(b); k++ {
		e := b[header+k*entrySize:]
		if le.Uint32(e) != wantFlags {
			continue
		}
		key, val := str(le.Uint32(e[4:])), str(le.Uint32(e[8:]))
		if key != "" && strings.HasPrefix(val, "/") {
			m[key] = append(m[key], val)
		}
	}
	return m
}
