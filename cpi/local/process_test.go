package local

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		in   string
		want procStat
		err  bool
	}{
		{in: "4242 (bosun-agent) S 1 4242 4242 0 -1 4194560 150", want: procStat{state: 'S', session: 4242}},
		{in: "77 (a) b) (c) Z 5 77 12 0", want: procStat{state: 'Z', session: 12}},
		{in: "77 (sh) R 1 2", err: true},
		{in: "77 (sh) R 1 2 x 0", err: true},
		{in: "no paren", err: true},
		{in: "", err: true},
	}
	for _, tt := range tests {
		got, err := parseStat([]byte(tt.in))
		if (err != nil) != tt.err {
			t.Errorf("parseStat(%q) error %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(procStat{})); !tt.err && diff != "" {
			t.Errorf("parseStat(%q) (-want +got)\n%s", tt.in, diff)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	for _, s := range []string{"1 (init) S 0 1 1 0", "2 ()) ) Z 1 2 3 4", ")", "1 (x) ", "1 (x)  S  1  1  1  "} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		parseStat(b)
	})
}
