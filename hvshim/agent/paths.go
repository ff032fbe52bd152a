package agent

import (
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// readonlyDevices turns the readonlyPaths entries that name a device node,
// FIFO or socket of the rootfs into read-only bind mounts of the node onto
// itself, which is what libcontainer makes of them too. Its readonlyPaths
// code statfs()s the node once mounted, and on the 9p share that makes
// QEMU open the node on the host (ENXIO for a device without a driver or
// a FIFO without a writer, a real device opened otherwise); a bind mount
// with "ro" needs no statfs.
func readonlyDevices(spec *specs.Spec) {
	if spec.Linux == nil || spec.Root == nil {
		return
	}
	var keep []string
	for _, p := range spec.Linux.ReadonlyPaths {
		if !rootfsDevice(spec, p) {
			keep = append(keep, p)
			continue
		}
		spec.Mounts = append(spec.Mounts, specs.Mount{
			Destination: p, Type: "bind", Source: filepath.Join(spec.Root.Path, p),
			Options: []string{"bind", "ro"},
		})
	}
	spec.Linux.ReadonlyPaths = keep
}

// rootfsDevice reports whether p is a special file of the rootfs itself,
// not of a mount the spec puts over it.
func rootfsDevice(spec *specs.Spec, p string) bool {
	p = filepath.Clean("/" + p)
	for _, m := range spec.Mounts {
		d := filepath.Clean("/" + m.Destination)
		if p == d || strings.HasPrefix(p, d+"/") || d == "/" {
			return false
		}
	}
	fi, err := os.Lstat(filepath.Join(spec.Root.Path, p))
	return err == nil && fi.Mode()&(os.ModeDevice|os.ModeNamedPipe|os.ModeSocket) != 0
}
