// Package initrd writes the guest's initial ramdisk: a cpio "newc" archive
// holding the runh binary as /init and the kernel modules it loads.
package initrd

import (
	"fmt"
	"io"
	"strings"
)

// Writer writes a cpio archive in the "newc" format the kernel unpacks.
type Writer struct {
	w   io.Writer
	off int64
	ino uint32
	err error
}

// NewWriter returns a Writer appending to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, ino: 1} }

// File modes of cpio entries.
const (
	ModeDir  = 0o040000
	ModeReg  = 0o100000
	ModeChar = 0o020000
)

func (c *Writer) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.off += int64(n)
	c.err = err
}

func (c *Writer) pad() {
	if r := c.off % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *Writer) header(name string, mode uint32, size int64, rmajor, rminor uint32) {
	name = strings.TrimPrefix(name, "/")
	nlink := uint32(1)
	if mode&0o170000 == ModeDir {
		nlink = 2
	}
	if size > 0xffffffff {
		c.err = fmt.Errorf("cpio: %s: too large", name)
		return
	}
	// Fixed mtime 0 keeps archives reproducible: same inputs, same bytes.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rmajor, rminor, len(name)+1, 0)
	c.ino++
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
}

// Dir adds a directory.
func (c *Writer) Dir(name string, perm uint32) error {
	c.header(name, ModeDir|perm&0o7777, 0, 0, 0)
	return c.err
}

// CharDev adds a character device node.
func (c *Writer) CharDev(name string, perm, major, minor uint32) error {
	c.header(name, ModeChar|perm&0o7777, 0, major, minor)
	return c.err
}

// File adds a regular file of size bytes read from r.
func (c *Writer) File(name string, perm uint32, size int64, r io.Reader) error {
	c.header(name, ModeReg|perm&0o7777, size, 0, 0)
	if c.err != nil {
		return c.err
	}
	n, err := io.CopyN(c.w, r, size)
	c.off += n
	if err != nil {
		c.err = fmt.Errorf("cpio: %s: %w", name, err)
		return c.err
	}
	c.pad()
	return c.err
}

// Close writes the trailer. It does not close the underlying writer.
func (c *Writer) Close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	return c.err
}
