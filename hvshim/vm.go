// Package hvshim holds runh's utility VM: booting it (this file), probing
// the host (Check), and in subpackages the QEMU driver, guest assets, the
// initrd writer, the transport, the agent protocol and the guest agent.
package hvshim

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/runh-project/runh/hvshim/agent"
	"github.com/runh-project/runh/hvshim/assets"
	"github.com/runh-project/runh/hvshim/client"
	"github.com/runh-project/runh/hvshim/initrd"
	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/hvshim/qemu"
	"github.com/runh-project/runh/hvshim/template"
	"github.com/runh-project/runh/hvshim/transport"
	"github.com/runh-project/runh/hvshim/vmnet"
)

// Defaults for a VM whose size nothing asks for.
const (
	DefaultMemoryMiB = 256
	DefaultCPUs      = 1
)

// VMConfig describes a utility VM to boot.
type VMConfig struct {
	Dir       string // the VM's directory: sockets, logs
	MemoryMiB int
	CPUs      int
	Accel     string // "" probes
	Share     string // the rootfs's directory, mounted at agent.ShareDir; "" for none
	Volumes   string // bind-mount sources' directory, at agent.VolumeDir; "" for none
	// NoTemplate boots the VM instead of restoring it from a template.
	NoTemplate bool
	NICs       []qemu.NIC
	// CgroupV1 lists cgroup v1 hierarchies for the guest to mount as the
	// host has them (see agent); nil: cgroup v2 only.
	CgroupV1  []string
	Init      string // binary to run as /init; "" is this executable
	Debug     bool
	Transport transport.Kind // "" picks the best
}

// BootTimes splits a boot, in seconds since QEMU was started.
type BootTimes struct {
	QMP        float64 // QEMU answered QMP
	AgentReady float64 // the agent answered, took the shares and clock
	GuestInit  float64 // guest uptime when /init started
	GuestReady float64 // guest uptime when the agent accepted the host
	// Template is how the VM started: "restored" from a template, "built"
	// (the template was made first), or "cold" (booted) for the reason.
	Template       string `json:",omitempty"`
	TemplateReason string `json:",omitempty"`

	t0 time.Time
}

// VM is a booted utility VM with its agent connected.
type VM struct {
	QEMU      *qemu.VM
	Agent     *client.Client
	Transport *transport.Host
	Accel     qemu.Accel
	Times     BootTimes
}

// Initrd returns the cached initrd for init (default: this executable)
// and the guest's modules, writing it if needed.
func Initrd(g *assets.Guest, init string) (string, error) {
	if init == "" {
		init = "/proc/self/exe"
	}
	// Uncompressed by default: measured faster under TCG (docs/hypervisor.md).
	gz := os.Getenv("RUNH_INITRD_COMPRESS") == "gzip"
	return initrd.Ensure(initrd.CacheDir(), initrd.Spec{Init: init, Modules: g.Modules, Compress: gz})
}

// StartVM starts a VM, restored from its template (hvshim/template) or
// booted, and waits until its agent answers and has taken the shares,
// the host's clock and fresh entropy. On error nothing is left running.
func StartVM(ctx context.Context, c VMConfig) (_ *VM, err error) {
	reason := "disabled (io.runh.vm.template or --vm-template)"
	if _, ok := template.Size(c.MemoryMiB); !ok && !c.NoTemplate {
		c.NoTemplate = true
		reason = fmt.Sprintf("%d MiB of memory is beyond the largest template", c.MemoryMiB)
	}
	qc, accel, err := qemuConfig(&c)
	if err != nil {
		return nil, err
	}
	tr := qc.Transport
	defer tr.Close() // QEMU holds its own copy of the vsock handle
	how, key := template.Cold, ""
	if !c.NoTemplate {
		if how, key, err = template.Prepare(ctx, qc, vmnet.ScratchTaps); err != nil {
			reason = err.Error()
		} else {
			reason = ""
		}
	}
	v, err := launch(ctx, qc, how != template.Cold)
	if err != nil && how != template.Cold {
		// A template that does not restore is removed; this VM boots.
		template.Invalidate(key)
		qc.Incoming.Close()
		qc.MemoryFile, qc.Incoming = "", nil
		how, reason = template.Cold, "restore failed: "+err.Error()
		keepRestoreLogs(qc.Dir)
		v, err = launch(ctx, qc, false)
	}
	if qc.Incoming != nil {
		qc.Incoming.Close()
	}
	if err != nil {
		return nil, WithConsole(err, qc.Dir, nil)
	}
	v.Transport, v.Accel = tr, accel
	v.Times.Template, v.Times.TemplateReason = string(how), reason
	defer func() {
		if err != nil {
			v.Agent.Sess.Close()
			v.QEMU.Kill()
		}
	}()
	entropy := make([]byte, 64)
	if _, err := rand.Read(entropy); err != nil {
		return nil, err
	}
	if err := v.Agent.Call(ctx, proto.OpBoot, proto.BootRequest{TimeNs: time.Now().UnixNano(), Entropy: entropy,
		Share: c.Share != "", Volumes: c.Volumes != ""}, nil); err != nil {
		return nil, WithConsole(err, qc.Dir, v.QEMU)
	}
	v.Times.AgentReady = v.Times.sinceStart()
	return v, nil
}

// qemuConfig fills in c's defaults and returns QEMU's configuration for
// it, with its transport (the caller closes it) and accelerator.
func qemuConfig(c *VMConfig) (*qemu.Config, qemu.Accel, error) {
	accel := qemu.Accel{Name: c.Accel, Reason: "requested"}
	g, err := assets.Find()
	if err != nil {
		return nil, accel, err
	}
	rd, err := Initrd(g, c.Init)
	if err != nil {
		return nil, accel, err
	}
	if c.Accel == "" {
		accel = qemu.ProbeAccel()
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	// Every VM has both shares, an empty directory standing for one it
	// does not use, so that all have the same devices (one template).
	empty := filepath.Join(c.Dir, "empty")
	if err := os.MkdirAll(empty, 0o700); err != nil {
		return nil, accel, err
	}
	tr, err := transport.NewHost(c.Transport, c.Dir)
	if err != nil {
		return nil, accel, err
	}
	qc := &qemu.Config{
		Dir: c.Dir, Kernel: g.Kernel, Initrd: rd,
		MemoryMiB: c.MemoryMiB, CPUs: c.CPUs, Accel: accel.Name,
		Transport: tr, Debug: c.Debug, NICs: c.NICs,
		Shares: []qemu.Share{{Tag: agent.ShareTag, Path: orDir(c.Share, empty)}, {Tag: agent.VolumeTag, Path: orDir(c.Volumes, empty)}},
	}
	if c.Debug {
		qc.Append = append(qc.Append, "runh.debug=1")
	}
	if len(c.CgroupV1) > 0 {
		qc.Append = append(qc.Append, agent.CgroupV1Arg+strings.Join(c.CgroupV1, ":"))
	}
	return qc, accel, nil
}

// MakeTemplate makes the template VMs of c are restored from, unless it
// exists, without starting one (runh template): the first create then
// restores instead of making it. It says which, with the template's key.
// c.Dir holds the sockets meanwhile; NICs need no taps.
func MakeTemplate(ctx context.Context, c VMConfig) (template.Outcome, string, error) {
	if _, ok := template.Size(c.MemoryMiB); !ok {
		return template.Cold, "", fmt.Errorf("%d MiB of memory is beyond the largest template (%d MiB)", c.MemoryMiB, template.Sizes[len(template.Sizes)-1])
	}
	qc, _, err := qemuConfig(&c)
	if err != nil {
		return template.Cold, "", err
	}
	defer qc.Transport.Close()
	how, key, err := template.Prepare(ctx, qc, vmnet.ScratchTaps)
	if qc.Incoming != nil {
		qc.Incoming.Close()
	}
	return how, key, err
}

// keepRestoreLogs keeps the logs of a restore that failed, which the boot
// that follows would overwrite, as restore-*.log beside them.
func keepRestoreLogs(dir string) {
	for _, n := range []string{qemu.ConsoleLog, qemu.StderrLog} {
		if b, err := os.ReadFile(filepath.Join(dir, n)); err == nil {
			os.WriteFile(filepath.Join(dir, "restore-"+n), b, 0o600)
		}
	}
}

func orDir(dir, empty string) string {
	if dir == "" {
		return empty
	}
	return dir
}

// launch starts QEMU and connects to the agent. A restored VM gets a
// short deadline: a template that does not come back should fall back to
// a boot soon, not after the boot timeout.
func launch(ctx context.Context, qc *qemu.Config, restore bool) (_ *VM, err error) {
	if restore {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
	}
	t0 := time.Now()
	q, err := qemu.Start(ctx, qc)
	if err != nil {
		return nil, err
	}
	v := &VM{QEMU: q}
	v.Times.t0 = t0
	v.Times.QMP = time.Since(t0).Seconds()
	defer func() {
		if err != nil {
			q.Kill()
		}
	}()
	// A guest that dies while booting ends the wait at once.
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-q.Done():
			cancel()
		case <-dctx.Done():
		}
	}()
	sess, err := qc.Transport.Dial(dctx)
	if err != nil {
		select {
		case <-q.Done():
			return nil, fmt.Errorf("vm exited while booting (qemu %s)", q.ExitStatus())
		default:
		}
		return nil, err
	}
	v.Agent = &client.Client{Sess: sess}
	var p struct {
		Version int     `json:"version"`
		Init    float64 `json:"init"`
		Ready   float64 `json:"ready"`
	}
	if err := v.Agent.Call(dctx, "ping", nil, &p); err != nil {
		sess.Close()
		return nil, err
	}
	v.Times.GuestInit, v.Times.GuestReady = p.Init, p.Ready
	return v, nil
}

func (t *BootTimes) sinceStart() float64 { return time.Since(t.t0).Seconds() }

// Close shuts the VM down: the agent connection, then QEMU.
func (v *VM) Close() {
	if v.Agent != nil {
		v.Agent.Sess.Close()
	}
	v.QEMU.Shutdown(5 * time.Second)
	os.Remove(v.Transport.Dir + "/" + qemu.QMPSocket)
	os.Remove(v.Transport.Dir + "/" + transport.SocketName)
}
