package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Failure is one `not ok` line of a program's TAP output.
type Failure struct {
	Number int    `json:"number"`
	Test   string `json:"test"`
	Reason string `json:"reason"`
}

// Counts are the TAP results of one program.
type Counts struct {
	OK       int       `json:"ok"`
	NotOK    int       `json:"notOk"`
	Skip     int       `json:"skip"`
	Planned  int       `json:"planned"`
	Failures []Failure `json:"failures,omitempty"`
	// Unreported holds errors of programs that printed no test line.
	Unreported []string `json:"unreported,omitempty"`
}

var (
	testLine = regexp.MustCompile(`^(ok|not ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$`)
	skipDir  = regexp.MustCompile(`(?i)#\s*skip\b`)
	planLine = regexp.MustCompile(`^1\.\.(\d+)`)
	// runtimetest's own TAP shows up in the stdout field of the outer
	// diagnostic (RuntimeInsideValidate).
	innerNotOK = regexp.MustCompile(`^\s*not ok\s+\d+\s*-?\s*(.*)$`)
	exitStatus = regexp.MustCompile(`^exit status \d+$`)
	// logrus text format, which runc (and runh) print on errors.
	logMsg = regexp.MustCompile(`\bmsg=("(?:[^"\\]|\\.)*"|\S+)`)
)

// stderrErrors picks the lines that say what went wrong from a runtime's or
// a validation program's stderr: logrus msg= values, and other lines except
// the suite's own filler.
func stderrErrors(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if m := logMsg.FindStringSubmatch(l); m != nil {
			if u, err := strconv.Unquote(m[1]); err == nil {
				l = u
			} else {
				l = m[1]
			}
		}
		switch {
		case l == "", exitStatus.MatchString(l), strings.HasPrefix(l, "Refer to:"),
			l == "failed to create the container", l == "failed to start the container":
			continue
		}
		out = append(out, l)
	}
	return out
}

// tapItem is either a test line or a YAML diagnostic block, in output order.
type tapItem struct {
	test   bool
	ok     bool
	number int
	desc   string
	yaml   []string
	// comments are the "# " diagnostic lines printed after a test line.
	comments []string
}

// parseTAP counts test lines that start in column 0: indented lines belong
// to YAML blocks (for instance the stdout of runtimetest) and are not tests
// of their own. `ok ... # SKIP` counts as a skip.
func parseTAP(r io.Reader) Counts {
	var items []tapItem
	var c Counts
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1024*1024), 16*1024*1024)
	inYAML := false
	for sc.Scan() {
		line := sc.Text()
		if inYAML {
			if strings.TrimSpace(line) == "..." {
				inYAML = false
				continue
			}
			last := &items[len(items)-1]
			last.yaml = append(last.yaml, line)
			continue
		}
		if strings.TrimSpace(line) == "---" && strings.HasPrefix(line, " ") {
			inYAML = true
			items = append(items, tapItem{})
			continue
		}
		if strings.HasPrefix(line, "# ") && len(items) > 0 && items[len(items)-1].test {
			last := &items[len(items)-1]
			last.comments = append(last.comments, strings.TrimSpace(line[2:]))
			continue
		}
		if m := planLine.FindStringSubmatch(line); m != nil {
			c.Planned = atoi(m[1])
			continue
		}
		m := testLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		it := tapItem{test: true, ok: m[1] == "ok", number: atoi(m[2]), desc: strings.TrimSpace(m[3])}
		switch {
		case it.ok && skipDir.MatchString(line):
			c.Skip++
		case it.ok:
			c.OK++
		default:
			c.NotOK++
		}
		items = append(items, it)
	}
	// RuntimeInsideValidate prints runtimetest's stdout as a diagnostic
	// before its test line; every other diagnostic follows its test line.
	diag := map[int][]string{}
	for i, it := range items {
		if it.test {
			continue
		}
		if strings.Contains(strings.Join(it.yaml, "\n"), `"stdout":`) {
			if i+1 < len(items) && items[i+1].test {
				diag[i+1] = it.yaml
			}
		} else if i > 0 && items[i-1].test {
			diag[i-1] = it.yaml
		}
	}
	for i, it := range items {
		if !it.test || it.ok {
			continue
		}
		reason := yamlReason(diag[i])
		if reason == "" && len(it.comments) > 0 {
			reason = it.comments[0]
		}
		c.Failures = append(c.Failures, Failure{Number: it.number, Test: it.desc, Reason: reason})
	}
	if c.OK+c.NotOK+c.Skip == 0 {
		// Some programs (the hook tests) report a failure only as a
		// diagnostic, without a test line.
		for _, it := range items {
			if r := yamlReason(it.yaml); !it.test && r != "" {
				c.Unreported = append(c.Unreported, r)
			}
		}
	}
	return c
}

// addStderrReasons explains failures that only say "exit status N" (the
// runtime failed) with the runtime's error messages, which the programs
// print to their stderr, in order.
func (c *Counts) addStderrReasons(stderr string) {
	errs := stderrErrors(stderr)
	if len(errs) == 0 {
		return
	}
	k := 0
	for i := range c.Failures {
		f := &c.Failures[i]
		if f.Reason != "" && !exitStatus.MatchString(f.Reason) && !exitStatus.MatchString(f.Test) {
			continue
		}
		f.Reason = strings.TrimSpace(f.Reason + " " + errs[min(k, len(errs)-1)])
		k++
	}
}

// yamlReason reduces a diagnostic block to one line: the inner failures of
// runtimetest, else the error, else the first stderr line, else actual vs
// expected. tap-go writes its "YAML" blocks as JSON.
func yamlReason(lines []string) string {
	var fields map[string]any
	if json.Unmarshal([]byte(strings.Join(lines, "\n")), &fields) != nil {
		return ""
	}
	str := func(k string) string {
		switch v := fields[k].(type) {
		case nil:
			return ""
		case string:
			return v
		default:
			return fmt.Sprint(v)
		}
	}
	var inner []string
	for _, l := range strings.Split(str("stdout"), "\n") {
		if m := innerNotOK.FindStringSubmatch(l); m != nil {
			inner = append(inner, strings.TrimSpace(m[1]))
		}
	}
	if len(inner) > 0 {
		return "runtimetest: " + strings.Join(inner, "; ")
	}
	errLine, stderr := firstLine(str("error")), stderrErrors(str("stderr"))
	switch {
	case len(stderr) > 0 && (errLine == "" || exitStatus.MatchString(errLine)):
		return strings.TrimSpace(errLine + " " + stderr[len(stderr)-1])
	case errLine != "":
		return errLine
	}
	if a, e := str("actual"), str("expected"); a != "" || e != "" {
		return "got " + firstLine(a) + ", want " + firstLine(e)
	}
	return ""
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func atoi(s string) int {
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return n
		}
		n = n*10 + int(r-'0')
	}
	return n
}
