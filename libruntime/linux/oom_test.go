package linux

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadOOMKills(t *testing.T) {
	dir := t.TempDir()
	for name, c := range map[string]struct {
		content string
		want    uint64
		err     bool
	}{
		"v1":  {"oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3, false},
		"v2":  {"low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n", 1, false},
		"old": {"oom_kill_disable 0\nunder_oom 0\n", 0, true},
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(c.content), 0o644)
		n, err := readOOMKills(p)
		if n != c.want || (err != nil) != c.err {
			t.Errorf("%s: %d, %v; want %d (error %v)", name, n, err, c.want, c.err)
		}
	}
}
