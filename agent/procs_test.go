package agent

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseMonit(t *testing.T) {
	tests := []struct {
		name, in string
		want     []procSpec
		err      string
	}{
		{
			name: "bpm shim and a daemon",
			in: `# comment
check process web
  with pidfile /var/vcap/sys/run/bpm/web/web.pid
  start program "/var/vcap/jobs/bpm/bin/bpm start web" with timeout 60 seconds
  stop program "/var/vcap/jobs/bpm/bin/bpm stop web"
  group vcap

check file config with path /etc/x
check process worker with pidfile '/var/vcap/sys/run/w.pid'
  start program = "/var/vcap/jobs/w/bin/ctl start"
  stop program = "/var/vcap/jobs/w/bin/ctl stop"
`,
			want: []procSpec{
				{Name: "web", Pidfile: "/var/vcap/sys/run/bpm/web/web.pid", StartProgram: "/var/vcap/jobs/bpm/bin/bpm start web", StopProgram: "/var/vcap/jobs/bpm/bin/bpm stop web"},
				{Name: "worker", Pidfile: "/var/vcap/sys/run/w.pid", StartProgram: "/var/vcap/jobs/w/bin/ctl start", StopProgram: "/var/vcap/jobs/w/bin/ctl stop"},
			},
		},
		{name: "empty", in: "", want: nil},
		{name: "unterminated", in: "check process web\n start program \"/bin/x", err: "line 2: unterminated quote"},
		{name: "no start", in: "check process web\n stop program \"x\"", err: "check process web has no start program"},
		{name: "unquoted", in: "check process web\n start program /bin/x", err: "line 2: start program needs a quoted command"},
		{name: "twice", in: "check process a\nstart program \"x\"\ncheck process a\nstart program \"y\"", err: "line 3: process \"a\" is checked twice"},
		{name: "bad name", in: "check process ../x\nstart program \"x\"", err: "line 1: check process needs a name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMonit([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestParseBPM(t *testing.T) {
	tests := []struct {
		name, in string
		want     []procSpec
		err      string
	}{
		{
			name: "full",
			in:   "processes:\n- name: web\n  executable: /var/vcap/packages/web/bin/web\n  args: [-p, \"80\"]\n  env: {A: b}\n  workdir: /var/vcap/data/web\n  limits: {memory: 1G, open_files: 100, processes: 10}\n  shutdown_signal: INT\n",
			want: []procSpec{{Name: "web", Executable: "/var/vcap/packages/web/bin/web", Args: []string{"-p", "80"}, Env: map[string]string{"A": "b"}, Workdir: "/var/vcap/data/web", Limits: limits{Memory: "1G", OpenFiles: 100, Processes: 10}, ShutdownSignal: "INT"}},
		},
		{name: "no executable", in: "processes:\n- name: web\n", err: "processes[0] (web): executable is missing"},
		{name: "no name", in: "processes:\n- executable: /x\n", err: "processes[0].name is missing"},
		{name: "dup", in: "processes:\n- {name: a, executable: /x}\n- {name: a, executable: /y}\n", err: "processes[1].name \"a\" is declared twice"},
		{name: "bad memory", in: "processes:\n- {name: a, executable: /x, limits: {memory: lots}}\n", err: "limits.memory: \"lots\""},
		{name: "bad signal", in: "processes:\n- {name: a, executable: /x, shutdown_signal: HUP}\n", err: "shutdown_signal \"HUP\""},
		{name: "yaml error has line", in: "processes:\n- name: [\n", err: "line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBPM([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(procSpec{})); diff != "" {
				t.Fatalf("(-want +got)\n%s", diff)
			}
		})
	}
}

func FuzzParseMonit(f *testing.F) {
	f.Add("check process web\n with pidfile /p\n start program \"/bin/a\"\n stop program = \"/bin/b\"\n")
	f.Add("check file x with path /y\ncheck process")
	f.Add("'unterminated")
	f.Fuzz(func(t *testing.T, in string) {
		procs, err := parseMonit([]byte(in))
		if err == nil {
			for _, p := range procs {
				if p.StartProgram == "" || !validToken(p.Name) {
					t.Fatalf("accepted %+v", p)
				}
			}
		}
	})
}

func FuzzParseBPM(f *testing.F) {
	f.Add("processes:\n- {name: a, executable: /x, limits: {memory: 1G}}\n")
	f.Add("processes: 3")
	f.Fuzz(func(t *testing.T, in string) {
		procs, err := parseBPM([]byte(in))
		if err == nil {
			for _, p := range procs {
				if p.Executable == "" || !validToken(p.Name) {
					t.Fatalf("accepted %+v", p)
				}
			}
		}
	})
}

func FuzzParseSettings(f *testing.F) {
	f.Add(`{"agent_id":"a","mbus":"nats://u:p@h:1","blobstore":{"provider":"local","options":{"blobstore_path":"/b"}},"env":{"bosun":{"heartbeat_interval":"2s"}}}`)
	f.Add(`{"agent_id":"a","mbus":"x","env":{"bosun":{"heartbeat_interval":3}}}`)
	f.Add(`{"agent_id":"a","mbus":"x","blobstore":{"provider":"dav","options":{"endpoint":"https://h","tls":{"cert":{"ca":"x"}}}}}`)
	f.Add("{\n\"agent_id\": ,}")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSettings([]byte(in))
		if err == nil && (s.AgentID == "" || s.Mbus == "") {
			t.Fatalf("accepted settings without agent_id or mbus: %+v", s)
		}
	})
}

func TestParseSettingsErrors(t *testing.T) {
	tests := []struct{ in, err string }{
		{`{"mbus":"x"}`, "agent_id is missing"},
		{`{"agent_id":"a"}`, "mbus is missing"},
		{`{"agent_id":"a","mbus":"x","blobstore":{"provider":"s3"}}`, `blobstore.provider "s3" is not supported`},
		{`{"agent_id":"a","mbus":"x","blobstore":{"provider":"local"}}`, "blobstore.options.blobstore_path is missing"},
		{"{\n\"agent_id\": ,\n}", "line 2"},
		{`{"agent_id":"a","mbus":"x","env":{"bosun":{"heartbeat_interval":"often"}}}`, `duration "often"`},
	}
	for _, tc := range tests {
		if _, err := ParseSettings([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseSettings(%s) = %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	for _, h := range []*tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "/abs", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "../../etc"},
		{Name: "dev", Typeflag: tar.TypeChar},
	} {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		tw.WriteHeader(h)
		tw.Close()
		gz.Close()
		path := filepath.Join(t.TempDir(), "x.tgz")
		os.WriteFile(path, buf.Bytes(), 0o644)
		if err := extract(path, t.TempDir()); err == nil {
			t.Errorf("extract accepted %q (%c)", h.Name, h.Typeflag)
		}
	}
}

func TestRotatingLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.stdout.log")
	r, err := openRotating(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		fmt.Fprintf(r, "%02d %s\n", i, strings.Repeat("x", 40))
	}
	r.Close()
	for _, p := range []string{path, path + ".1", path + ".2", path + ".3"} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if st.Size() > 100 {
			t.Fatalf("%s is %d bytes, over the limit", p, st.Size())
		}
	}
	if _, err := os.Stat(path + ".4"); err == nil {
		t.Fatal("more than three rotated files kept")
	}
	if got := tailFile(path, 1024); !strings.HasPrefix(got, "08 ") {
		t.Fatalf("tail = %q, want the newest lines", got)
	}
}

func TestMatchLogFilter(t *testing.T) {
	tests := []struct {
		filters []string
		path    string
		want    bool
	}{
		{nil, "web/a.log", true},
		{[]string{"**/*"}, "web/a.log", true},
		{[]string{"**/*.stderr.log"}, "web/a.stdout.log", false},
		{[]string{"**/*.stderr.log"}, "web/a.stderr.log", true},
		{[]string{"web/*"}, "web/a.log", true},
		{[]string{"web/*"}, "db/a.log", false},
	}
	for _, tc := range tests {
		if got := matchLogFilter(tc.filters, tc.path); got != tc.want {
			t.Errorf("matchLogFilter(%v, %s) = %v", tc.filters, tc.path, got)
		}
	}
}

type nopTransport struct{}

func (nopTransport) Publish(string, []byte) error { return nil }
func (nopTransport) Subscribe(string, func(string, []byte)) (func() error, error) {
	return func() error { return nil }, nil
}

// FuzzSyncMethods feeds arbitrary arguments to the methods answered inline; none may
// panic, and bad arguments are bad_arguments errors.
func FuzzSyncMethods(f *testing.F) {
	f.Add("get_state", `"full"`)
	f.Add("get_task", `"no-such-task"`)
	f.Add("cancel_task", `42`)
	f.Add("ping", `{}`)
	a, err := New(Settings{AgentID: "a", Mbus: "x"}, nopTransport{}, Options{Root: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, arg string) {
		switch method {
		case "ping", "info", "get_state", "get_task", "cancel_task":
		default:
			return
		}
		a.dispatch(t.Context(), method, []json.RawMessage{json.RawMessage(arg)})
	})
}
