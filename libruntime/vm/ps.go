package vm

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/hvshim/shim"
	"github.com/runh-project/runh/libruntime"
)

var _ libruntime.PsTabler = (*Backend)(nil)

// PsTable implements libruntime.PsTabler: the host's ps(1) cannot see the
// guest's processes, so the agent describes them and the table is made
// here, understanding the common ps options: -e -A -a -x -f -o FIELDS
// (FIELD=HEADER renames), and BSD "aux". The default is -ef.
func (b *Backend) PsTable(h *libruntime.Handle, args []string) ([]byte, error) {
	cols, err := psColumns(args)
	if err != nil {
		return nil, err
	}
	var r proto.PsInfoReply
	if err := call(h, proto.OpPsInfo, proto.IDRequest{ID: h.ID}, &r); err != nil {
		if shim.Answered(err) || !exited(h) {
			return nil, err
		}
		r = proto.PsInfoReply{} // stopped: the header alone, as with runc
	}
	return formatPs(cols, &r, time.Now()), nil
}

// psField is one column ps can show.
type psField struct {
	header string
	right  bool // numbers align right
	min    int  // procps's width, so tables look alike
	value  func(p *proto.PsProc, c *psCtx) string
}

type psCtx struct {
	now      time.Time
	memTotal uint64
}

var psFields = map[string]psField{}

func init() {
	num := func(f func(p *proto.PsProc) int) func(*proto.PsProc, *psCtx) string {
		return func(p *proto.PsProc, _ *psCtx) string { return strconv.Itoa(f(p)) }
	}
	user := func(p *proto.PsProc, _ *psCtx) string {
		if p.User != "" {
			return p.User
		}
		return strconv.FormatUint(uint64(p.UID), 10)
	}
	group := func(p *proto.PsProc, _ *psCtx) string {
		if p.Group != "" {
			return p.Group
		}
		return strconv.FormatUint(uint64(p.GID), 10)
	}
	args := func(p *proto.PsProc, _ *psCtx) string {
		if len(p.Args) == 0 {
			return "[" + p.Comm + "]"
		}
		return strings.Join(p.Args, " ")
	}
	comm := func(p *proto.PsProc, _ *psCtx) string { return p.Comm }
	cputime := func(p *proto.PsProc, _ *psCtx) string { return psDuration(p.CPU, true) }
	elapsed := func(p *proto.PsProc, _ *psCtx) string { return psDuration(p.Age, false) }
	pcpu := func(p *proto.PsProc, _ *psCtx) string {
		if p.Age <= 0 {
			return "0.0"
		}
		return strconv.FormatFloat(math.Min(p.CPU/p.Age*100, 999.9), 'f', 1, 64)
	}
	pmem := func(p *proto.PsProc, c *psCtx) string {
		if c.memTotal == 0 {
			return "0.0"
		}
		return strconv.FormatFloat(float64(p.RSS)*100/float64(c.memTotal), 'f', 1, 64)
	}
	start := func(p *proto.PsProc, c *psCtx) string {
		t := c.now.Add(-time.Duration(p.Age * float64(time.Second)))
		if y, m, d := t.Date(); y == c.now.Year() && m == c.now.Month() && d == c.now.Day() {
			return t.Format("15:04")
		}
		if t.Year() == c.now.Year() {
			return t.Format("Jan02")
		}
		return t.Format("2006")
	}
	tty := func(p *proto.PsProc, _ *psCtx) string { return p.Tty }
	for names, f := range map[string]psField{
		"pid":                    {"PID", true, 7, num(func(p *proto.PsProc) int { return p.Pid })},
		"ppid":                   {"PPID", true, 7, num(func(p *proto.PsProc) int { return p.Ppid })},
		"pgid pgrp":              {"PGID", true, 7, num(func(p *proto.PsProc) int { return p.Pgid })},
		"sid sess session":       {"SID", true, 7, num(func(p *proto.PsProc) int { return p.Sid })},
		"uid euid":               {"UID", true, 5, func(p *proto.PsProc, _ *psCtx) string { return strconv.FormatUint(uint64(p.UID), 10) }},
		"gid egid":               {"GID", true, 5, func(p *proto.PsProc, _ *psCtx) string { return strconv.FormatUint(uint64(p.GID), 10) }},
		"user euser uname":       {"USER", false, 8, user},
		"group egroup":           {"GROUP", false, 8, group},
		"comm ucmd ucomm":        {"COMMAND", false, 0, comm},
		"args command":           {"COMMAND", false, 0, args},
		"cmd":                    {"CMD", false, 0, args},
		"stat":                   {"STAT", false, 4, func(p *proto.PsProc, _ *psCtx) string { return p.Stat }},
		"s state":                {"S", false, 1, func(p *proto.PsProc, _ *psCtx) string { return p.Stat[:min(1, len(p.Stat))] }},
		"rss rssize rsz":         {"RSS", true, 5, func(p *proto.PsProc, _ *psCtx) string { return strconv.FormatUint(p.RSS, 10) }},
		"vsz vsize":              {"VSZ", true, 6, func(p *proto.PsProc, _ *psCtx) string { return strconv.FormatUint(p.VSZ, 10) }},
		"time cputime":           {"TIME", true, 8, cputime},
		"etime":                  {"ELAPSED", true, 11, elapsed},
		"etimes":                 {"ELAPSED", true, 7, func(p *proto.PsProc, _ *psCtx) string { return strconv.Itoa(int(p.Age)) }},
		"tty tname tt":           {"TT", false, 8, tty},
		"%cpu pcpu":              {"%CPU", true, 4, pcpu},
		"%mem pmem":              {"%MEM", true, 4, pmem},
		"c":                      {"C", true, 2, func(p *proto.PsProc, c *psCtx) string { s, _, _ := strings.Cut(pcpu(p, c), "."); return s }},
		"nlwp thcount":           {"NLWP", true, 4, num(func(p *proto.PsProc) int { return p.Threads })},
		"ni nice":                {"NI", true, 3, num(func(p *proto.PsProc) int { return p.Nice })},
		"stime start_time start": {"STIME", false, 5, start},
	} {
		for _, n := range strings.Fields(names) {
			psFields[n] = f
		}
	}
}

type psColumn struct {
	psField
	header string
}

// psColumns reads ps's options into the columns to show.
func psColumns(args []string) ([]psColumn, error) {
	if len(args) == 0 {
		args = []string{"-ef"}
	}
	var format []string
	full, bsdUser := false, false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--format" || a == "-o" || a == "o":
			if i+1 == len(args) {
				return nil, fmt.Errorf("ps: %s needs a list of fields", a)
			}
			i++
			format = append(format, args[i])
			continue
		case strings.HasPrefix(a, "--format="):
			format = append(format, strings.TrimPrefix(a, "--format="))
			continue
		case a == "--":
			continue
		}
		letters, bsd := strings.CutPrefix(a, "-")
		bsd = !bsd
		for k, l := range letters {
			switch {
			case l == 'o':
				// -oFIELDS, or -eo FIELDS.
				rest := letters[k+1:]
				if rest == "" {
					if i+1 == len(args) {
						return nil, fmt.Errorf("ps: %s needs a list of fields", a)
					}
					i++
					rest = args[i]
				}
				format = append(format, rest)
			case l == 'f' && !bsd:
				full = true
			case l == 'u' && bsd:
				bsdUser = true
			case strings.ContainsRune("eAaxwH", l):
				// Selection and width: the container's processes are all shown.
				continue
			default:
				return nil, fmt.Errorf("ps: option %q is not supported with hypervisor isolation (use -e, -f, -o FIELDS or aux)", a)
			}
			if l == 'o' {
				break
			}
		}
	}
	var names []string
	switch {
	case format != nil:
		for _, f := range format {
			names = append(names, splitFormat(f)...)
		}
	case bsdUser:
		names = strings.Fields("user pid %cpu %mem vsz rss tty=TTY stat start=START time args")
	case full:
		names = []string{"user=UID", "pid", "ppid", "c", "stime", "tty=TTY", "time", "cmd"}
	default:
		names = []string{"pid", "tty=TTY", "time", "comm=CMD"}
	}
	var cols []psColumn
	for _, n := range names {
		name, header, renamed := strings.Cut(n, "=")
		f, ok := psFields[strings.ToLower(name)]
		if !ok {
			return nil, fmt.Errorf("ps: unknown field %q", name)
		}
		if !renamed {
			header = f.header
		}
		cols = append(cols, psColumn{f, header})
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("ps: no fields to show")
	}
	return cols, nil
}

// splitFormat splits "pid,comm" or "pid comm"; a FIELD=HEADER takes the
// rest of the list as its header, as in procps.
func splitFormat(f string) []string {
	var out []string
	for f != "" {
		i := strings.IndexAny(f, ", =")
		if i < 0 {
			return append(out, f)
		}
		if f[i] == '=' {
			return append(out, f)
		}
		if i > 0 {
			out = append(out, f[:i])
		}
		f = f[i+1:]
	}
	return out
}

// formatPs lays the table out as procps does: numbers right-aligned, text
// left-aligned, the last column unpadded, no header when all are empty.
func formatPs(cols []psColumn, r *proto.PsInfoReply, now time.Time) []byte {
	c := &psCtx{now: now, memTotal: r.MemTotalKiB}
	rows := make([][]string, len(r.Procs))
	width := make([]int, len(cols))
	header := false
	for j, col := range cols {
		width[j] = max(col.min, len(col.header))
		header = header || col.header != ""
	}
	for i := range r.Procs {
		p := &r.Procs[i]
		for j, col := range cols {
			v := sanitize(col.value(p, c))
			rows[i] = append(rows[i], v)
			width[j] = max(width[j], len(v))
		}
	}
	var b bytes.Buffer
	line := func(vals []string) {
		for j, v := range vals {
			if j > 0 {
				b.WriteByte(' ')
			}
			pad := strings.Repeat(" ", max(width[j]-len(v), 0))
			switch {
			case cols[j].right:
				b.WriteString(pad + v)
			case j == len(vals)-1:
				b.WriteString(v)
			default:
				b.WriteString(v + pad)
			}
		}
		b.WriteByte('\n')
	}
	if header {
		hs := make([]string, len(cols))
		for j, col := range cols {
			hs[j] = col.header
		}
		line(hs)
	}
	for _, row := range rows {
		line(row)
	}
	return b.Bytes()
}

// sanitize keeps the guest's strings (command lines, names: untrusted)
// from writing control sequences to the user's terminal, as ps does.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return '?'
		}
		return r
	}, s)
}

// psDuration formats seconds as ps does: cumulative CPU time as
// [DD-]HH:MM:SS, elapsed time as [[DD-]HH:]MM:SS.
func psDuration(sec float64, cpu bool) string {
	t := int64(sec)
	d, h, m, s := t/86400, t/3600%24, t/60%60, t%60
	switch {
	case d > 0:
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, s)
	case cpu || h > 0:
		return fmt.Sprintf("%02d:%02d:%02d", h, m, s)
	}
	return fmt.Sprintf("%02d:%02d", m, s)
}
