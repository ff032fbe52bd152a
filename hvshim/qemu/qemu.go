// Package qemu drives one QEMU microvm: its command line, its process and
// its QMP socket.
package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/runh-project/runh/hvshim/jail"
	"github.com/runh-project/runh/hvshim/transport"
)

// Files QEMU creates in its working directory (the VM's directory). Relative
// names keep unix socket paths short whatever the directory.
const (
	QMPSocket  = "qmp.sock"
	ConsoleLog = "console.log"
	StderrLog  = "qemu.log" // QEMU's stderr
)

// ExitError is Start's error when QEMU exits before it opens QMP: how it
// ended and the last line it wrote to StderrLog, which says why.
type ExitError struct {
	Status string
	Tail   string
}

func (e *ExitError) Error() string { return "qemu exited: " + e.Status + ": " + e.Tail }

// Share is a host directory exported to the guest over virtio-9p.
type Share struct {
	Tag      string
	Path     string
	ReadOnly bool
}

// NIC is a virtio-net device backed by an open tap device.
type NIC struct {
	Tap *os.File
	MAC string
	MTU int // 0: the guest may set any
}

// Config describes one VM.
type Config struct {
	Binary    string // QEMU; found in PATH when empty
	Dir       string // working directory: sockets and console log
	Kernel    string
	Initrd    string
	Append    []string // extra kernel arguments
	MemoryMiB int
	CPUs      int
	Accel     string // KVM or TCG
	Shares    []Share
	NICs      []NIC
	Transport *transport.Host
	Debug     bool   // verbose kernel console
	Firmware  string // microvm firmware (-bios); "" takes Firmware's for the binary

	// Templates (hvshim/template): guest RAM in MemoryFile, mapped shared
	// (a template being made) or private (a VM restored from it), and the
	// saved device state read from Incoming.
	MemoryFile   string
	MemoryShared bool
	// MemoryReadOnly opens a private MemoryFile read-only (QEMU 8.2 and
	// later): QEMU can then never write the template.
	MemoryReadOnly bool
	Incoming       *os.File
}

// BaseCmdline is the kernel command line. The console goes to a log file;
// `quiet` keeps it short because every byte is an emulated port write
// under TCG. panic=-1 with -no-reboot makes a guest panic end QEMU.
var BaseCmdline = []string{
	"console=ttyS0", "panic=-1", "reboot=t",
	// Skip work a utility VM never needs (as Kata does).
	"cryptomgr.notests", "no_timer_check", "tsc=reliable", "noreplace-smp",
	"i8042.noaux", "i8042.nomux", "i8042.nopnp", "i8042.dumbkbd",
	"random.trust_cpu=on", "rcupdate.rcu_expedited=1",
}

// Sandbox is the value of QEMU's -sandbox option.
const Sandbox = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// PidFile, in the VM directory, holds QEMU's PID as its starter sees it.
// The starter writes it: QEMU's own -pidfile would say 1, its PID in the
// jail's PID namespace.
const PidFile = "qemu.pid"

// FindBinary returns the path of qemu-system-x86_64.
func FindBinary() (string, error) {
	return exec.LookPath("qemu-system-x86_64")
}

// Version returns QEMU's version line.
func Version(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line), nil
}

// SpecialFiles says why the QEMU of version line v (Version's) cannot
// create unix sockets and FIFOs on a 9p share, or nil. Debian 12's QEMU 7.2
// carries the fix for CVE-2023-2861, whose mknod then fails with ENXIO for
// special files; QEMU 8.1 and later create them.
func SpecialFiles(v string) error {
	major, minor := versionNumbers(v)
	if atLeast(v, 8, 1) {
		return nil
	}
	return fmt.Errorf("QEMU %d.%d cannot create unix sockets or FIFOs on a VM container's files (they fail with ENXIO): install QEMU 8.1 or newer (Debian 12: qemu-system-x86 from bookworm-backports, as scripts/deps.sh does)", major, minor)
}

// ReadOnlyPrivateMemory says whether the QEMU of version line v maps a
// read-only memory file privately and writably (rom=off, QEMU 8.2).
func ReadOnlyPrivateMemory(v string) bool { return atLeast(v, 8, 2) }

// versionNumbers reads major and minor from a Version line.
func versionNumbers(v string) (major, minor int) {
	f := strings.Fields(v)
	for i, w := range f {
		if w == "version" && i+1 < len(f) {
			fmt.Sscanf(f[i+1], "%d.%d", &major, &minor)
		}
	}
	return major, minor
}

func atLeast(v string, major, minor int) bool {
	ma, mi := versionNumbers(v)
	return ma > major || ma == major && mi >= minor
}

// escape doubles commas, QEMU's escape inside an option value.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Args returns QEMU's arguments and the files to pass as fd 3, 4, ...
func (c *Config) Args() ([]string, []*os.File) {
	cmdline := append([]string{}, BaseCmdline...)
	if !c.Debug {
		cmdline = append(cmdline, "quiet")
	}
	if c.Transport != nil {
		cmdline = append(cmdline, c.Transport.KernelArg())
	}
	accel := c.Accel
	if accel == "" {
		accel = TCG
	}
	if khz := hostTSCkHz(); accel == TCG && khz != "" {
		// Under TCG the guest's TSC runs at the host's rate. Calibrating
		// it against the emulated PIT fails on a loaded host, and the
		// microvm has no other reference: the boot then hangs.
		cmdline = append(cmdline, "tsc_early_khz="+khz)
	}
	cmdline = append(cmdline, c.Append...)
	machine := "microvm,acpi=on,x-option-roms=off"
	if c.MemoryFile != "" {
		machine += ",memory-backend=mem"
	}
	args := []string{
		"-M", machine,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-accel", accelArg(accel),
		"-m", strconv.Itoa(c.MemoryMiB),
		"-smp", strconv.Itoa(c.CPUs),
		"-kernel", c.Kernel,
		"-initrd", c.Initrd,
		"-append", strings.Join(cmdline, " "),
		"-serial", "file:" + ConsoleLog,
		"-qmp", "unix:" + QMPSocket + ",server=on,wait=off",
		// QEMU's seccomp filter: no obsolete system calls, no setuid,
		// no fork or exec, no changes to scheduling or affinity.
		"-sandbox", Sandbox,
	}
	if fw := c.firmware(); fw != "" {
		args = append(args, "-bios", fw)
	}
	if accel == KVM {
		args = append(args, "-cpu", "host")
	}
	// Pages the guest frees go back to the host (free page reporting):
	// a VM sized like a container without limits costs only what it uses.
	args = append(args, "-device", "virtio-balloon-device,free-page-reporting=on")
	for i, s := range c.Shares {
		id := "fs" + strconv.Itoa(i)
		// multidevs=remap: files of different host file systems under
		// one share (a pod's containers' rootfs) never share an inode
		// number in the guest, whose cache would mix them up.
		fsdev := "local,id=" + id + ",path=" + escape(s.Path) + ",security_model=passthrough,multidevs=remap"
		if s.ReadOnly {
			fsdev += ",readonly=on"
		}
		args = append(args, "-fsdev", fsdev,
			"-device", "virtio-9p-device,fsdev="+id+",mount_tag="+escape(s.Tag))
	}
	if c.MemoryFile != "" {
		share := "off"
		if c.MemoryShared {
			share = "on"
		}
		obj := fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s", c.MemoryMiB, escape(c.MemoryFile), share)
		if c.MemoryReadOnly && !c.MemoryShared {
			obj += ",readonly=on,rom=off" // a writable private mapping of a read-only file
		}
		args = append(args, "-object", obj)
	}
	var files []*os.File
	if c.Transport != nil {
		a, f := c.Transport.QEMUArgs(0)
		args, files = append(args, a...), f
	}
	for i, n := range c.NICs {
		// QEMU gets the tap open: it needs neither /dev/net/tun nor the
		// container's network namespace.
		id := "net" + strconv.Itoa(i)
		dev := fmt.Sprintf("virtio-net-device,netdev=%s,mac=%s", id, n.MAC)
		if n.MTU > 0 {
			dev += ",host_mtu=" + strconv.Itoa(n.MTU)
		}
		args = append(args, "-netdev", fmt.Sprintf("tap,id=%s,fd=%d", id, 3+len(files)), "-device", dev)
		files = append(files, n.Tap)
	}
	if c.Incoming != nil {
		// Deferred: the capability must be set first (Start does).
		args = append(args, "-incoming", "defer")
		files = append(files, c.Incoming)
	}
	return args, files
}

// VM is a running QEMU.
type VM struct {
	Cmd  *exec.Cmd
	QMP  *QMP
	done chan struct{}
	err  error
}

// Start starts QEMU and connects to its QMP socket. QEMU gets SIGKILL when
// its parent dies, so a killed shim does not leave a VM behind.
func Start(ctx context.Context, c *Config) (*VM, error) {
	bin := c.Binary
	if bin == "" {
		var err error
		if bin, err = FindBinary(); err != nil {
			return nil, err
		}
	}
	for _, n := range []string{QMPSocket, transport.SocketName} {
		os.Remove(c.Dir + "/" + n)
	}
	args, files := c.Args()
	// QEMU runs confined (docs/security.md): the command is a helper that
	// builds its jail, then becomes QEMU, keeping files as fds 3, 4, ...
	cmd, err := jail.Command(c.jail(bin, args), files)
	if err != nil {
		return nil, err
	}
	errLog, err := os.OpenFile(filepath.Join(c.Dir, StderrLog), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer errLog.Close()
	cmd.Stdout, cmd.Stderr = errLog, errLog
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	os.WriteFile(filepath.Join(c.Dir, PidFile), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
	v := &VM{Cmd: cmd, done: make(chan struct{})}
	go func() {
		v.err = cmd.Wait()
		close(v.done)
	}()
	for {
		conn, err := transport.DialUnixIn(c.Dir, QMPSocket)
		if err == nil {
			if v.QMP, err = NewQMP(conn, 10*time.Second); err == nil {
				if c.Incoming == nil {
					return v, nil
				}
				if err = v.incoming(3 + len(files) - 1); err == nil {
					return v, nil
				}
				v.Kill()
				return nil, err
			}
			conn.Close()
		}
		select {
		case <-v.done:
			return nil, &ExitError{Status: v.ExitStatus(), Tail: v.StderrTail(c.Dir)}
		case <-ctx.Done():
			v.Kill()
			return nil, fmt.Errorf("qemu did not open QMP: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// IgnoreShared is the migration capability that leaves RAM mapped from a
// shared file out of the stream (templates). Both ends must set it.
var IgnoreShared = map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}

// incoming loads the saved state from descriptor fd; the VM runs once it
// is loaded.
func (v *VM) incoming(fd int) error {
	if _, err := v.QMP.Execute("migrate-set-capabilities", IgnoreShared, 10*time.Second); err != nil {
		return err
	}
	if _, err := v.QMP.Execute("migrate-incoming", map[string]any{"uri": fmt.Sprintf("fd:%d", fd)}, 10*time.Second); err != nil {
		return err
	}
	if err := v.WaitMigration(30 * time.Second); err != nil {
		return err
	}
	// The template was saved stopped, so the loaded VM stays paused.
	_, err := v.QMP.Execute("cont", nil, 10*time.Second)
	return err
}

// WaitMigration waits until the migration in progress (out or in) has
// completed.
func (v *VM) WaitMigration(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		r, err := v.QMP.Execute("query-migrate", nil, 10*time.Second)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
			Error  string `json:"error-desc"`
		}
		json.Unmarshal(r, &st)
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", st.Status, st.Error)
		}
		if time.Now().After(deadline) {
			return errors.New("migration timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// jail says what QEMU may reach: the kernel, the initrd, the microvm
// firmware and the accelerator modules (read-only), the VM directory, the
// shares and a template's memory file (which must exist), /dev/kvm with
// KVM. Its tap, vhost and migration descriptors come open.
func (c *Config) jail(bin string, args []string) *jail.Config {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	j := &jail.Config{Binary: abs(bin), Args: args, Dir: abs(c.Dir), Files: []string{abs(c.Kernel), abs(c.Initrd)}}
	if fw := c.firmware(); fw != "" {
		j.Files = append(j.Files, abs(fw))
	}
	exeDir := binDir(j.Binary)
	for _, pat := range []string{"../lib/*/qemu/accel-*.so", "../lib64/qemu/accel-*.so", "../lib/qemu/accel-*.so"} {
		m, _ := filepath.Glob(filepath.Join(exeDir, pat))
		j.Files = append(j.Files, m...)
	}
	for _, s := range c.Shares {
		j.Shares = append(j.Shares, jail.Share{Path: s.Path, ReadOnly: s.ReadOnly})
	}
	if c.MemoryFile != "" && c.MemoryReadOnly && !c.MemoryShared {
		j.Files = append(j.Files, abs(c.MemoryFile))
	} else if c.MemoryFile != "" {
		j.Writable = append(j.Writable, abs(c.MemoryFile))
	}
	if c.Accel == KVM {
		j.Devices = append(j.Devices, "/dev/kvm")
	}
	return j
}

// firmware is c's microvm firmware: Firmware, else the one of its QEMU.
func (c *Config) firmware() string {
	if c.Firmware != "" {
		return c.Firmware
	}
	bin := c.Binary
	if bin == "" {
		var err error
		if bin, err = FindBinary(); err != nil {
			return ""
		}
	}
	return Firmware(bin)
}

// binDir is the directory of QEMU's binary, symbolic links resolved:
// QEMU finds its data and modules relative to it.
func binDir(bin string) string {
	if real, err := filepath.EvalSymlinks(bin); err == nil {
		bin = real
	}
	return filepath.Dir(bin)
}

// Firmware returns the microvm firmware to boot bin with: qboot, QEMU's
// own microvm firmware, from QEMU's data directory (next to the binary,
// else /usr/share/qemu). QEMU's default, bios-microvm.bin, may be
// SeaBIOS's build instead (Debian's QEMU 10 finds /usr/share/seabios'),
// which does not boot -kernel with x-option-roms=off ("No bootable
// device"); 7.2's was a link to qboot.rom. "" when there is neither: QEMU
// then uses its default.
func Firmware(bin string) string {
	for _, d := range []string{filepath.Join(binDir(bin), "../share/qemu"), "/usr/share/qemu"} {
		for _, n := range []string{"qboot.rom", "bios-microvm.bin"} {
			if f := filepath.Join(d, n); exists(f) {
				return filepath.Clean(f)
			}
		}
	}
	return ""
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// StderrTail returns the last line QEMU wrote to StderrLog in dir.
func (v *VM) StderrTail(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, StderrLog))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// Done is closed when QEMU has exited.
func (v *VM) Done() <-chan struct{} { return v.done }

// ExitStatus says how QEMU ended ("exit status 1", "signal: killed");
// only once Done is closed.
func (v *VM) ExitStatus() string {
	if v.err == nil {
		return "exit status 0"
	}
	return v.err.Error()
}

// Pid returns QEMU's process ID.
func (v *VM) Pid() int { return v.Cmd.Process.Pid }

// Kill stops QEMU at once and waits for it.
func (v *VM) Kill() {
	v.Cmd.Process.Kill()
	<-v.done
}

// Shutdown asks QEMU to quit, killing it if it has not after timeout.
func (v *VM) Shutdown(timeout time.Duration) {
	if v.QMP != nil {
		v.QMP.Execute("quit", nil, timeout)
		v.QMP.Close()
	}
	select {
	case <-v.done:
	case <-time.After(timeout):
		v.Kill()
	}
}

// tbSizeMiB caps TCG's translation cache. QEMU reserves 1 GiB and keeps
// what it touched: about 36 MiB of an idle container's host memory, more
// than the rest of QEMU. At 32 MiB a full cache is flushed and code is
// translated again, which measured within noise for containers here.
const tbSizeMiB = 32

func accelArg(accel string) string {
	if accel == TCG {
		return fmt.Sprintf("%s,tb-size=%d", TCG, tbSizeMiB)
	}
	return accel
}

// ErrExited is returned for operations on a VM that is gone.
var ErrExited = errors.New("vm exited")

// hostTSCkHz returns the host's TSC frequency in kHz when the kernel knows
// it exactly (tsc_known_freq), else "".
func hostTSCkHz() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil || !hasFlag(b, "tsc_known_freq") || !hasFlag(b, "constant_tsc") {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 {
			return ""
		}
		return strconv.FormatInt(int64(mhz*1000+0.5), 10)
	}
	return ""
}
