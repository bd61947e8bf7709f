package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// procSpec is one process a job declares, from bpm.yml or a monit file.
type procSpec struct {
	Name           string            `yaml:"name"`
	Executable     string            `yaml:"executable"`
	Args           []string          `yaml:"args"`
	Env            map[string]string `yaml:"env"`
	Workdir        string            `yaml:"workdir"`
	Limits         limits            `yaml:"limits"`
	ShutdownSignal string            `yaml:"shutdown_signal"`

	// The monit form: shell commands and an optional pidfile for daemons.
	StartProgram string `yaml:"-"`
	StopProgram  string `yaml:"-"`
	Pidfile      string `yaml:"-"`
}

type limits struct {
	Memory    string `yaml:"memory"`
	OpenFiles int64  `yaml:"open_files"`
	Processes int64  `yaml:"processes"`
}

type bpmConfig struct {
	Processes []procSpec `yaml:"processes"`
}

// loadProcesses reads a job's process declarations: config/bpm.yml when present, else
// the monit file. A job with neither has no processes (errand-like jobs).
func loadProcesses(p paths, job string) ([]procSpec, error) {
	dir := p.jobDir(job)
	bpmPath := filepath.Join(dir, "config", "bpm.yml")
	b, err := os.ReadFile(bpmPath)
	if err == nil {
		procs, err := parseBPM(b)
		if err != nil {
			return nil, fmt.Errorf("job %s: config/bpm.yml: %w", job, err)
		}
		return procs, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("job %s: %w", job, err)
	}
	b, err = os.ReadFile(filepath.Join(dir, "monit"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job, err)
	}
	procs, err := parseMonit(b)
	if err != nil {
		return nil, fmt.Errorf("job %s: monit %w", job, err)
	}
	return procs, nil
}

func parseBPM(b []byte) ([]procSpec, error) {
	var c bpmConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, pr := range c.Processes {
		switch {
		case pr.Name == "":
			return nil, fmt.Errorf("processes[%d].name is missing", i)
		case !validToken(pr.Name):
			return nil, fmt.Errorf("processes[%d].name %q: use letters, digits, '-', '_' and '.'", i, pr.Name)
		case seen[pr.Name]:
			return nil, fmt.Errorf("processes[%d].name %q is declared twice", i, pr.Name)
		case pr.Executable == "":
			return nil, fmt.Errorf("processes[%d] (%s): executable is missing", i, pr.Name)
		case pr.ShutdownSignal != "" && pr.ShutdownSignal != "TERM" && pr.ShutdownSignal != "INT":
			return nil, fmt.Errorf("processes[%d] (%s): shutdown_signal %q: want TERM or INT", i, pr.Name, pr.ShutdownSignal)
		}
		if _, err := memoryKB(pr.Limits.Memory); err != nil {
			return nil, fmt.Errorf("processes[%d] (%s): limits.memory: %w", i, pr.Name, err)
		}
		seen[pr.Name] = true
	}
	return c.Processes, nil
}

func validToken(s string) bool {
	if s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return false
		}
	}
	return true
}

// memoryKB parses bpm's memory limit ("512M", "1G", "1024K" or bytes).
func memoryKB(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	num := s
	switch unicode.ToUpper(rune(s[len(s)-1])) {
	case 'K':
		mult, num = 1<<10, s[:len(s)-1]
	case 'M':
		mult, num = 1<<20, s[:len(s)-1]
	case 'G':
		mult, num = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: want a positive size such as 512M or 1G", s)
	}
	return n * mult / 1024, nil
}

// parseMonit understands the common `check process NAME [with pidfile P]
// start program "CMD" stop program "CMD"` form; other checks are skipped.
func parseMonit(b []byte) ([]procSpec, error) {
	type tok struct {
		s      string
		line   int
		quoted bool
	}
	var toks []tok
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		for i := 0; i < len(text); {
			c := text[i]
			switch {
			case c == '#':
				i = len(text)
			case c == ' ' || c == '\t' || c == '\r':
				i++
			case c == '"' || c == '\'':
				j := strings.IndexByte(text[i+1:], c)
				if j < 0 {
					return nil, fmt.Errorf("line %d: unterminated quote", line)
				}
				toks = append(toks, tok{text[i+1 : i+1+j], line, true})
				i += j + 2
			default:
				j := strings.IndexAny(text[i:], " \t\r\"'#")
				if j < 0 {
					j = len(text) - i
				}
				toks = append(toks, tok{text[i : i+j], line, false})
				i += j
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var procs []procSpec
	var cur *procSpec
	inProcess := false
	next := func(i int) (tok, bool) {
		if i+1 < len(toks) {
			return toks[i+1], true
		}
		return tok{}, false
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case !t.quoted && t.s == "check":
			kind, ok := next(i)
			if !ok {
				return nil, fmt.Errorf("line %d: check without a type", t.line)
			}
			inProcess = kind.s == "process"
			if !inProcess {
				i++
				continue
			}
			name, ok := next(i + 1)
			if !ok || !validToken(name.s) {
				return nil, fmt.Errorf("line %d: check process needs a name of letters, digits, '-', '_' and '.'", t.line)
			}
			for _, p := range procs {
				if p.Name == name.s {
					return nil, fmt.Errorf("line %d: process %q is checked twice", t.line, name.s)
				}
			}
			procs = append(procs, procSpec{Name: name.s})
			cur = &procs[len(procs)-1]
			i += 2
		case !inProcess || t.quoted:
		case t.s == "pidfile":
			p, ok := next(i)
			if !ok {
				return nil, fmt.Errorf("line %d: pidfile needs a path", t.line)
			}
			cur.Pidfile = p.s
			i++
		case t.s == "start" || t.s == "stop":
			j := i + 1
			if j < len(toks) && toks[j].s == "program" && !toks[j].quoted {
				j++
			} else {
				continue
			}
			if j < len(toks) && toks[j].s == "=" {
				j++
			}
			if j >= len(toks) || !toks[j].quoted || toks[j].s == "" {
				return nil, fmt.Errorf("line %d: %s program needs a quoted command", t.line, t.s)
			}
			if t.s == "start" {
				cur.StartProgram = toks[j].s
			} else {
				cur.StopProgram = toks[j].s
			}
			i = j
		}
	}
	for _, p := range procs {
		if p.StartProgram == "" {
			return nil, fmt.Errorf("check process %s has no start program", p.Name)
		}
	}
	return procs, nil
}
