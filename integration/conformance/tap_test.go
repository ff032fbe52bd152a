package main

import (
	"strings"
	"testing"
)

const sample = `TAP version 13
ok 1 - first
ok 2 # SKIP no cgroup
  ---
  {
    "error": "exit status 1",
    "stderr": "time=\"x\" level=error msg=\"container does not exist\"\n"
  }
  ...
not ok 3 - delete MUST fail
  ---
  {
    "stdout": "TAP version 13\nok 1 - a\nnot ok 2 - rlimit nofile\n1..2\n",
    "stderr": ""
  }
  ...
not ok 4 - inside
# expect: 1, actual: 2
not ok 5 - exit status 1
1..5
`

func TestParseTAP(t *testing.T) {
	c := parseTAP(strings.NewReader(sample))
	if c.OK != 1 || c.NotOK != 3 || c.Skip != 1 || c.Planned != 5 {
		t.Fatalf("counts %+v", c)
	}
	want := []string{
		// A plain diagnostic follows its test; runtimetest's precedes it.
		"",
		"runtimetest: rlimit nofile",
		"",
	}
	for i, f := range c.Failures {
		if f.Reason != want[i] {
			t.Errorf("failure %d reason %q, want %q", f.Number, f.Reason, want[i])
		}
	}
	if got := c.Failures[1].Reason; got != "runtimetest: rlimit nofile" {
		t.Errorf("comment must not override diagnostic: %q", got)
	}
	c = parseTAP(strings.NewReader("not ok 1 - memory\n# expect: 1, actual: 2\n"))
	if got := c.Failures[0].Reason; got != "expect: 1, actual: 2" {
		t.Errorf("comment reason %q", got)
	}
	c = parseTAP(strings.NewReader(sample))
	c.addStderrReasons("failed to create the container\ntime=\"t\" level=error msg=\"runc create failed: boom\"\n")
	if got := c.Failures[0].Reason; got != "runc create failed: boom" {
		t.Errorf("stderr reason %q", got)
	}
	if got := c.Failures[2].Reason; got != "runc create failed: boom" {
		t.Errorf("stderr reason %q", got)
	}
}

func TestYAMLReasonStderr(t *testing.T) {
	got := yamlReason([]string{`{"error": "exit status 1", "stderr": "time=\"x\" level=error msg=\"container not running\"\n"}`})
	if got != "exit status 1 container not running" {
		t.Errorf("got %q", got)
	}
}

func TestNoTestLines(t *testing.T) {
	c := parseTAP(strings.NewReader("TAP version 13\n  ---\n  {\n    \"error\": \"hooks MUST be called\\nRefer to: x\"\n  }\n  ...\n1..0\n"))
	if len(c.Unreported) != 1 || c.Unreported[0] != "hooks MUST be called" {
		t.Errorf("unreported %q", c.Unreported)
	}
}

func TestMountsUnescape(t *testing.T) {
	if got := unescapeMount(`/a\040b`); got != "/a b" {
		t.Errorf("got %q", got)
	}
}
