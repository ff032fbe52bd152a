package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// buildSockHelper builds integration/sockhelper (a unix socket server and
// client; busybox has none) static into dir.
func buildSockHelper(dir string) (string, error) {
	bin := filepath.Join(dir, "sockhelper")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./sockhelper")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build sockhelper: %v: %s", err, out)
	}
	return bin, nil
}

// specialFilesProbe says whether VM containers can make unix sockets and
// FIFOs on their files: "yes", or why not. runh check reports it
// (hypervisor.specialFiles); without that field, QEMU's version decides:
// 8.1 or newer (Debian 12's 7.2 fails such a mknod with ENXIO).
var specialFilesProbe = sync.OnceValue(func() string {
	out, _ := exec.Command(runtimeBin, "check", "--format", "json").Output()
	var r struct {
		Hypervisor struct {
			QEMUVersion  string `json:"qemuVersion"`
			SpecialFiles string `json:"specialFiles"`
		} `json:"hypervisor"`
	}
	_ = json.Unmarshal(out, &r)
	if r.Hypervisor.SpecialFiles != "" {
		return r.Hypervisor.SpecialFiles
	}
	v := r.Hypervisor.QEMUVersion
	if v == "" {
		out, err := exec.Command("qemu-system-x86_64", "--version").Output()
		if err != nil {
			return "qemu-system-x86_64 --version: " + err.Error()
		}
		v = firstLine(string(out))
	}
	var major, minor int
	if i := strings.Index(v, "version "); i >= 0 {
		fmt.Sscanf(v[i+len("version "):], "%d.%d", &major, &minor)
	}
	if major > 8 || major == 8 && minor >= 1 {
		return "yes"
	}
	return fmt.Sprintf("QEMU older than 8.1 (%s) cannot make sockets or FIFOs on a 9p share", v)
})

// specialFilesScript runs as user 1000 in the container, in /srv (on the
// rootfs) and /vol (a bind-mounted host directory): a FIFO with a reader
// and a writer, a unix socket server and client, a second bind on a name in
// use, unlink and a new bind, chmod; each step prints one line of report.
// Then it leaves, for the test on the host, a FIFO it holds open for
// reading and writing and a socket it listens on (/vol/cross.fifo,
// /vol/vm.sock), and prints "specialfiles-ready". No step can block for
// ever (timeout, sockhelper's own deadline, bounded waits): a failure shows
// in the report, and "specialfiles-ready" comes in any case.
const specialFilesScript = `
umask 022
waitfor() { # the server $srv says it listens, or has failed
	i=0
	until grep -q listening /tmp/srv; do
		i=$((i+1))
		if [ $i -gt 200 ] || ! kill -0 $srv 2>/dev/null; then echo "$1: server: $(cat /tmp/srv)"; return 1; fi
		sleep 0.1
	done
}
for d in /srv /vol; do
	mkfifo -m 640 $d/fifo
	echo "$d fifo ls: $(ls -l $d/fifo | cut -c1-10)"
	timeout 10 cat $d/fifo >/tmp/got &
	[ -p $d/fifo ] && timeout 10 sh -c "echo through the fifo >$d/fifo"
	wait $!
	echo "$d fifo data: $(cat /tmp/got)"

	rm -f /tmp/srv
	sockhelper listen $d/sock >/tmp/srv 2>&1 &
	srv=$!
	waitfor $d
	echo "$d sock ls: $(ls -l $d/sock | cut -c1-10)"
	echo "$d sock dial: $(sockhelper dial $d/sock hello 2>&1)"
	wait $srv
	echo "$d sock rebind: $(sockhelper listen $d/sock 2>&1 | sed 's/ after .*//')"
	unlink $d/sock && [ ! -e $d/sock ] && echo "$d sock unlink: gone"
	rm -f /tmp/srv
	sockhelper listen $d/sock >/tmp/srv 2>&1 &
	srv=$!
	waitfor $d
	echo "$d sock again: $(sockhelper dial $d/sock again 2>&1)"
	wait $srv

	chmod 604 $d/fifo
	chmod 660 $d/sock
	echo "$d stat: $(stat -c '%F %a %u %g' $d/fifo), $(stat -c '%F %a %u %g' $d/sock)"
done
mkfifo -m 620 /vol/cross.fifo && exec 3<>/vol/cross.fifo
rm -f /tmp/srv
sockhelper listen /vol/vm.sock 0 >/tmp/srv 2>&1 &
srv=$!
waitfor /vol
echo specialfiles-ready
sleep 1000
`

// TestSpecialFiles: unix sockets and FIFOs on a container's files, its
// rootfs and a bind-mounted host directory, behave as in process isolation
// (see specialFilesScript), and the nodes are on the host with their type,
// mode and owner (a non-root user of the container). Across the VM
// boundary a socket node is only a name: the host dialing a socket a VM
// container listens on, or the container dialing one the host listens on,
// is refused at once (ECONNREFUSED, never a hang), and the host finds no
// reader on a FIFO the container reads; with process isolation all three
// connect. In a VM all this needs QEMU 8.1 or newer, and every check
// depends on a node the guest made: run on QEMU 7.2, each one fails. With a
// QEMU older than 8.1 the hypervisor subtest therefore skips.
func TestSpecialFiles(t *testing.T) {
	buildHelper := sync.OnceValues(func() (string, error) { return buildSockHelper(t.TempDir()) })
	forEachMode(t, func(t *testing.T, x *h) {
		if x.mode == ModeHypervisor {
			if why := specialFilesProbe(); why != "yes" {
				t.Skipf("sockets and FIFOs on a VM container's files: %s", why)
			}
		}
		helper, err := buildHelper()
		if err != nil {
			t.Fatal(err)
		}
		const uid, gid = 1000, 1000
		root := writableRootfs(t, x)
		if out, err := exec.Command("cp", helper, filepath.Join(root, "bin/sockhelper")).CombinedOutput(); err != nil {
			t.Fatalf("copy sockhelper: %v: %s", err, out)
		}
		// The short scratch dir keeps host socket paths within sun_path.
		vol := filepath.Join(x.short, "vol")
		for _, d := range []string{filepath.Join(root, "srv"), vol} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}

		// The host's own listener in the volume, open to the container's
		// user.
		hostSock := filepath.Join(vol, "host.sock")
		l, err := net.Listen("unix", hostSock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		if err := os.Chmod(hostSock, 0o666); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				line, _ := bufio.NewReader(c).ReadString('\n')
				fmt.Fprintf(c, "host-pong %s", line)
				c.Close()
			}
		}()

		start := time.Now()
		id := x.id("special")
		out := createFile(t, x.dir, "special.out")
		x.create(id, x.bundle("special", func(s *specs.Spec) {
			s.Root = &specs.Root{Path: root}
			s.Process.User = specs.User{UID: uid, GID: gid}
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/vol", Type: "bind", Source: vol, Options: []string{"rbind", "rw"}})
		}, "sh", "-c", specialFilesScript), out)
		x.must("start", id)
		waitFileCount(t, fileName(out), "specialfiles-ready", 1, x.timeout())
		t.Logf("container ready %v after create", time.Since(start).Round(time.Millisecond))

		// Inside: the report of specialFilesScript.
		output := readFile(fileName(out))
		var report, want []string
		for _, line := range strings.Split(output, "\n") {
			if strings.HasPrefix(line, "/srv ") || strings.HasPrefix(line, "/vol ") {
				report = append(report, line)
			}
		}
		for _, d := range []string{"/srv", "/vol"} {
			want = append(want,
				d+" fifo ls: prw-r-----",
				d+" fifo data: through the fifo",
				d+" sock ls: srwxr-xr-x",
				d+" sock dial: pong hello",
				d+" sock rebind: bind "+d+"/sock: EADDRINUSE (address already in use)",
				d+" sock unlink: gone",
				d+" sock again: pong again",
				d+fmt.Sprintf(" stat: fifo 604 %d %d, socket 660 %d %d", uid, gid, uid, gid))
		}
		if strings.Join(report, "\n") != strings.Join(want, "\n") {
			t.Errorf("in the container, got:\n%s\nwant:\n%s\n(output: %q)", strings.Join(report, "\n"), strings.Join(want, "\n"), output)
		}

		// On the host: the nodes' types, modes and owner.
		for _, n := range []struct {
			path string
			mode os.FileMode
		}{
			{filepath.Join(root, "srv/fifo"), os.ModeNamedPipe | 0o604},
			{filepath.Join(root, "srv/sock"), os.ModeSocket | 0o660},
			{filepath.Join(vol, "fifo"), os.ModeNamedPipe | 0o604},
			{filepath.Join(vol, "sock"), os.ModeSocket | 0o660},
			{filepath.Join(vol, "cross.fifo"), os.ModeNamedPipe | 0o620},
			{filepath.Join(vol, "vm.sock"), os.ModeSocket | 0o755},
		} {
			fi, err := os.Lstat(n.path)
			if err != nil {
				t.Errorf("on the host: %v", err)
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode() != n.mode || st.Uid != uid || st.Gid != gid {
				t.Errorf("on the host: %s: %v %d:%d, want %v %d:%d", n.path, fi.Mode(), st.Uid, st.Gid, n.mode, uid, gid)
			}
		}

		// Across the boundary. The host dials its own listener (alive),
		// then the container's.
		own, ownErr := dialUnix(hostSock, "host-side")
		begin := time.Now()
		got, err := dialUnix(filepath.Join(vol, "vm.sock"), "from-host")
		took := time.Since(begin)
		ok := ownErr == nil && own == "host-pong host-side"
		wantVM := `"pong from-host"`
		if x.mode == ModeProcess {
			ok = ok && err == nil && got == "pong from-host"
		} else {
			ok = ok && errors.Is(err, syscall.ECONNREFUSED) && took < 2*time.Second
			wantVM = "ECONNREFUSED at once"
		}
		if !ok {
			t.Errorf("host dialing its own socket: %q, %v; the container's: %q, %v after %v; want %s from the container's", own, ownErr, got, err, took, wantVM)
		}
		t.Logf("host dialing the container's socket: %q, %v after %v", got, err, took)

		// The container dials its own listener, then the host's.
		r := x.rt("exec", id, "sh", "-c", "sockhelper dial /vol/vm.sock inside && sockhelper dial /vol/host.sock inside")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if x.mode == ModeProcess {
			if r.code != 0 || r.stdout != "pong inside\nhost-pong inside\n" {
				t.Errorf("container dialing its own socket, then the host's: %v", r)
			}
		} else if len(lines) != 2 || lines[0] != "pong inside" || !strings.HasPrefix(lines[1], "connect /vol/host.sock: ECONNREFUSED (connection refused) after ") || r.code != 1 {
			t.Errorf("VM container dialing its own socket, then the host's (want refused): %v", r)
		} else if d, err := time.ParseDuration(strings.TrimPrefix(lines[1], "connect /vol/host.sock: ECONNREFUSED (connection refused) after ")); err != nil || d > 2*time.Second {
			t.Errorf("VM container dialing the host's socket: refused after %v (%v), want at once", d, err)
		}
		t.Logf("container dialing its own socket, then the host's: %q", r.stdout)

		// The host opens, without waiting, the FIFO the container holds
		// open for reading: with process isolation that reader is there and
		// gets what the host writes; a reader in the VM's kernel is none of
		// the host's (ENXIO).
		fifo := filepath.Join(vol, "cross.fifo")
		f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if x.mode == ModeProcess {
			if err != nil {
				t.Errorf("host opening the container's FIFO: %v", err)
			} else {
				fmt.Fprintln(f, "through the host")
				f.Close()
				if r := x.rt("exec", id, "timeout", "10", "head", "-n", "1", "/vol/cross.fifo"); r.code != 0 || r.stdout != "through the host\n" {
					t.Errorf("container reading what the host wrote to its FIFO: %v", r)
				}
			}
		} else {
			if err == nil {
				f.Close()
			}
			if !errors.Is(err, syscall.ENXIO) {
				t.Errorf("host opening the VM container's FIFO without waiting: %v, want ENXIO (no reader in the host's kernel)", err)
			}
		}
		t.Logf("host opening the container's FIFO: %v", err)

		x.must("delete", "--force", id)
		t.Logf("%s: %v from create to delete", x.mode, time.Since(start).Round(time.Millisecond))
	})
}

// dialUnix connects to the unix socket path (at most 2 s), sends msg and
// returns the line answered.
func dialUnix(path, msg string) (string, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSuffix(line, "\n"), err
}
