package vm

import (
	"strings"
	"testing"
	"time"

	"github.com/runh-project/runh/hvshim/proto"
)

func TestPsTable(t *testing.T) {
	r := &proto.PsInfoReply{MemTotalKiB: 1000, Procs: []proto.PsProc{
		{Pid: 7, Ppid: 1, User: "root", Stat: "Ss", Tty: "?", Comm: "sh", Args: []string{"sh", "-c", "x\x1b[2J"}, CPU: 61, Age: 100},
		{Pid: 12, Ppid: 7, UID: 1000, Stat: "S", Tty: "pts/0", Comm: "sleep"},
	}}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "UID          PID    PPID  C STIME TTY          TIME CMD\n" +
			"root           7       1 61 11:58 ?        00:01:01 sh -c x?[2J\n" +
			"1000          12       7  0 12:00 pts/0    00:00:00 [sleep]\n"},
		{[]string{"-o", "pid,comm"}, "    PID COMMAND\n      7 sh\n     12 sleep\n"},
		{[]string{"-eopid=", "-o", "ppid="}, "      7       1\n     12       7\n"},
		{[]string{"-o", "pid,args=WHAT IT RUNS"}, "    PID WHAT IT RUNS\n      7 sh -c x?[2J\n     12 [sleep]\n"},
	} {
		cols, err := psColumns(c.args)
		if err != nil {
			t.Fatalf("%q: %v", c.args, err)
		}
		now := time.Date(2025, 3, 4, 12, 0, 0, 0, time.Local)
		if got := string(formatPs(cols, r, now)); got != c.want {
			t.Errorf("ps %q:\n%s\nwant:\n%s", c.args, got, c.want)
		}
	}
	for _, bad := range [][]string{{"-Z"}, {"-o"}, {"-o", "nosuch"}} {
		if _, err := psColumns(bad); err == nil || !strings.HasPrefix(err.Error(), "ps: ") {
			t.Errorf("ps %q: err %v, want a ps: error", bad, err)
		}
	}
}
