package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
)

// Bounds of a ps-info answer, well below the frame limit.
const (
	maxPsProcs = 4096
	maxPsArgs  = 512 // bytes of a command line
)

func init() {
	handlers[proto.OpPsInfo] = psInfo
}

// psInfo reads the container's processes from the guest's /proc, for the
// host to format a ps(1) table: the host's ps cannot see guest PIDs.
func psInfo(_ *server, b json.RawMessage) (any, error) {
	var r proto.IDRequest
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	pids, err := rt.Processes(r.ID)
	if err != nil {
		return nil, err
	}
	reply := proto.PsInfoReply{MemTotalKiB: memTotal()}
	now := uptime()
	names := map[string]*idNames{} // by the process's root directory
	for _, pid := range pids {
		if len(reply.Procs) == maxPsProcs {
			break
		}
		p, ok := readProc(pid, now)
		if !ok {
			continue // exited meanwhile
		}
		root, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/root")
		n, ok := names[root]
		if !ok {
			n = readNames("/proc/" + strconv.Itoa(pid) + "/root")
			names[root] = n
		}
		p.User, p.Group = n.users[p.UID], n.groups[p.GID]
		reply.Procs = append(reply.Procs, p)
	}
	return reply, nil
}

// userHZ is the unit of /proc times (USER_HZ, 100 on every architecture
// the guest kernel runs on).
const userHZ = 100

func readProc(pid int, now float64) (proto.PsProc, bool) {
	p := proto.PsProc{Pid: pid}
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	stat, err := os.ReadFile(dir + "stat")
	if err != nil {
		return p, false
	}
	// The command name may hold spaces and parentheses: it runs from the
	// first '(' to the last ')'.
	i, j := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if i < 0 || j < i {
		return p, false
	}
	p.Comm = string(stat[i+1 : j])
	f := strings.Fields(string(stat[j+1:]))
	if len(f) < 22 {
		return p, false
	}
	num := func(k int) int64 { n, _ := strconv.ParseInt(f[k], 10, 64); return n }
	p.Ppid, p.Pgid, p.Sid = int(num(1)), int(num(2)), int(num(3))
	p.Tty = ttyName(num(4))
	p.CPU = float64(num(11)+num(12)) / userHZ
	p.Nice, p.Threads = int(num(16)), int(num(17))
	p.Age = max(now-float64(num(19))/userHZ, 0)
	p.VSZ = uint64(num(20)) / 1024
	p.RSS = uint64(num(21)) * uint64(os.Getpagesize()) / 1024
	p.Stat = f[0]
	if p.Nice < 0 {
		p.Stat += "<"
	} else if p.Nice > 0 {
		p.Stat += "N"
	}
	if p.Sid == pid {
		p.Stat += "s"
	}
	if p.Threads > 1 {
		p.Stat += "l"
	}
	if num(5) == int64(p.Pgid) && p.Tty != "?" {
		p.Stat += "+"
	}
	if st, err := os.ReadFile(dir + "status"); err == nil {
		for _, l := range strings.Split(string(st), "\n") {
			k, v, _ := strings.Cut(l, ":")
			ids := strings.Fields(v)
			if len(ids) < 2 {
				continue
			}
			id, _ := strconv.ParseUint(ids[1], 10, 32) // effective
			switch k {
			case "Uid":
				p.UID = uint32(id)
			case "Gid":
				p.GID = uint32(id)
			}
		}
	}
	if cl, err := os.ReadFile(dir + "cmdline"); err == nil && len(cl) > 0 {
		if len(cl) > maxPsArgs {
			cl = cl[:maxPsArgs]
		}
		p.Args = strings.Split(strings.TrimRight(string(cl), "\x00"), "\x00")
	}
	return p, true
}

// ttyName names a controlling terminal from /proc's tty_nr.
func ttyName(nr int64) string {
	major, minor := (nr>>8)&0xfff, (nr&0xff)|((nr>>12)&0xfff00)
	switch {
	case nr == 0:
		return "?"
	case major >= 136 && major <= 143:
		return "pts/" + strconv.FormatInt((major-136)<<8|minor, 10)
	case major == 4 && minor < 64:
		return "tty" + strconv.FormatInt(minor, 10)
	case major == 4:
		return "ttyS" + strconv.FormatInt(minor-64, 10)
	case major == 5 && minor == 1:
		return "console"
	}
	return "?"
}

type idNames struct {
	users, groups map[uint32]string
}

// readNames reads user and group names from the container's own files,
// as ps in the container would show them.
func readNames(root string) *idNames {
	return &idNames{users: readIDFile(root + "/etc/passwd"), groups: readIDFile(root + "/etc/group")}
}

func readIDFile(path string) map[uint32]string {
	m := map[uint32]string{}
	// The container owns the file: a FIFO must not block the agent, nor a
	// huge file hold it.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW, 0)
	if err != nil {
		return m
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return m
	}
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() && len(m) < 10000 {
		// name:password:id:...
		parts := strings.SplitN(sc.Text(), ":", 4)
		if len(parts) < 3 {
			continue
		}
		if id, err := strconv.ParseUint(parts[2], 10, 32); err == nil {
			if _, dup := m[uint32(id)]; !dup {
				m[uint32(id)] = parts[0]
			}
		}
	}
	return m
}

func memTotal() uint64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
