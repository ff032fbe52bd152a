package initrd

import (
	"bytes"
	"encoding/binary"
)

// FloorInit returns a minimal static x86-64 ELF program that calls
// reboot(RB_POWER_OFF) and nothing else. An initrd holding only it as /init
// measures the floor of a VM boot: kernel start to init and back out.
func FloorInit() []byte {
	const base = 0x400000
	code := []byte{
		0xbf, 0xad, 0xde, 0xe1, 0xfe, // mov edi, LINUX_REBOOT_MAGIC1
		0xbe, 0x69, 0x19, 0x12, 0x28, // mov esi, LINUX_REBOOT_MAGIC2
		0xba, 0xdc, 0xfe, 0x21, 0x43, // mov edx, LINUX_REBOOT_CMD_POWER_OFF
		0xb8, 0xa9, 0x00, 0x00, 0x00, // mov eax, SYS_reboot
		0x0f, 0x05, // syscall
		0xeb, 0xfe, // jmp . (never reached)
	}
	const hdrs = 64 + 56
	size := uint64(hdrs + len(code))
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	binary.Write(&b, le, struct {
		Type, Machine                                 uint16
		Version                                       uint32
		Entry, Phoff, Shoff                           uint64
		Flags                                         uint32
		Ehsize, Phentsize, Phnum, Shentsize, Shnum, X uint16
	}{2, 0x3e, 1, base + hdrs, 64, 0, 0, 64, 56, 1, 64, 0, 0})
	binary.Write(&b, le, struct {
		Type, Flags                          uint32
		Off, Vaddr, Paddr, Filesz, Memsz, Al uint64
	}{1, 5, 0, base, base, size, size, 0x1000})
	b.Write(code)
	return b.Bytes()
}

// WriteFloor writes an uncompressed initrd whose /init is FloorInit.
func WriteFloor(path string) error {
	var b bytes.Buffer
	c := NewWriter(&b)
	c.Dir("/dev", 0o755)
	c.CharDev("/dev/console", 0o600, 5, 1)
	p := FloorInit()
	c.File(InitPath, 0o755, int64(len(p)), bytes.NewReader(p))
	if err := c.Close(); err != nil {
		return err
	}
	return writeFileAtomic(path, b.Bytes())
}
