package source

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
)

func TestParseTrailers(t *testing.T) {
	for _, tc := range []struct {
		name, msg string
		want      []Trailer
	}{
		{"title only", "Fixes: #1\n", nil},
		{"no trailers", "title\n\nbody text\n", nil},
		{"simple", "title\n\nbody\n\nKey: value\nOther-Key: v2\n", []Trailer{{"Key", "value"}, {"Other-Key", "v2"}}},
		{"only last paragraph", "title\n\nA: 1\n\nbody\n\nB: 2\n", []Trailer{{"B", "2"}}},
		{"mixed paragraph is not trailers", "title\n\nsome prose\nKey: value\n", nil},
		{"continuation", "t\n\nKey: first\n  second\n", []Trailer{{"Key", "first second"}}},
		{"spaces around colon", "t\n\nKey :  v  \n", []Trailer{{"Key", "v"}}},
		{"trailing blank lines", "t\n\nA: 1\n\n\n", []Trailer{{"A", "1"}}},
		{"crlf", "t\r\n\r\nA: 1\r\n", []Trailer{{"A", "1"}}},
		{"git generated allows 25%", "t\n\nprose one\nprose two\nprose three\nSigned-off-by: A <a@x>\n", []Trailer{{"Signed-off-by", "A <a@x>"}}},
		{"under 25% even with git line", "t\n\np1\np2\np3\np4\nSigned-off-by: A <a@x>\n", nil},
		{"key with space is prose", "t\n\nnot a key: v\n", nil},
		{"leading blank lines", "\n\ntitle\n\nA: 1", []Trailer{{"A", "1"}}},
		{"bosun status", "demo: deployed 4f2a9c1 (1 updated) in 3s\n\nBosun-Source: abc\nBosun-Result: succeeded\nBosun-Task: 7\n",
			[]Trailer{{"Bosun-Source", "abc"}, {"Bosun-Result", "succeeded"}, {"Bosun-Task", "7"}}},
		{"empty", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, ParseTrailers(tc.msg)); diff != "" {
				t.Errorf("ParseTrailers(%q) (-want +got):\n%s", tc.msg, diff)
			}
		})
	}
}

func FuzzParseTrailers(f *testing.F) {
	for _, s := range []string{"", "t\n\nA: 1", "t\n\n A: 1\n\tx", "\n\n\n", "t\n\nSigned-off-by: x\n(cherry picked from commit a)\n", "a\r\n\r\nB:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		for _, tr := range ParseTrailers(msg) {
			if tr.Key == "" || strings.ContainsAny(tr.Key, " :\n") {
				t.Fatalf("bad key %q from %q", tr.Key, msg)
			}
		}
	})
}

func TestSignedCommitPayloadVerifies(t *testing.T) {
	entity, err := openpgp.NewEntity("Signer", "", "signer@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	work := newWorkRepo(t)
	wt, err := work.repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit("signed\n\nSigned-off-by: Signer <signer@example.com>", &git.CommitOptions{AllowEmptyCommits: true, SignKey: entity,
		Author: &object.Signature{Name: "Signer", Email: "signer@example.com", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	s := openSource(t, work.dir, t.TempDir())
	rev, _, err := s.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rev.SHA != h.String() || !strings.HasPrefix(rev.Signature, "-----BEGIN PGP SIGNATURE-----") {
		t.Fatalf("revision %s signature %q", rev.SHA, rev.Signature)
	}
	if bytes.Contains(rev.SignedPayload, []byte("gpgsig")) {
		t.Fatal("signed payload still holds the signature")
	}
	keyring := openpgp.EntityList{entity}
	if _, err := openpgp.CheckArmoredDetachedSignature(keyring, bytes.NewReader(rev.SignedPayload), strings.NewReader(rev.Signature), nil); err != nil {
		t.Fatalf("signature does not verify over the payload: %v", err)
	}
	tampered := bytes.Replace(rev.SignedPayload, []byte("signed"), []byte("signeD"), 1)
	if _, err := openpgp.CheckArmoredDetachedSignature(keyring, bytes.NewReader(tampered), strings.NewReader(rev.Signature), nil); err == nil {
		t.Fatal("a tampered payload verified")
	}
	if v, ok := rev.Trailer("signed-off-by"); !ok || v != "Signer <signer@example.com>" {
		t.Errorf("Trailer(signed-off-by) = %q, %v", v, ok)
	}
}
