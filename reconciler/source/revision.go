package source

import (
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Person is a commit's author or committer.
type Person struct {
	Name  string
	Email string
	When  time.Time
}

// Trailer is one `Key: value` line of a commit message's trailer block.
type Trailer struct {
	Key   string
	Value string
}

// Revision is one commit of the tracked branch, read from the mirror's object store.
type Revision struct {
	SHA       string
	Author    Person
	Committer Person
	Message   string
	Trailers  []Trailer
	Parents   []string
	// Signature is the commit's armored signature (gpgsig header), empty when unsigned.
	Signature string
	// SignedPayload is the commit encoded without its signature: the bytes Signature signs.
	SignedPayload []byte

	tree plumbing.Hash
	src  *Source
}

func newRevision(c *object.Commit, src *Source) (Revision, error) {
	r := Revision{
		SHA:       c.Hash.String(),
		Author:    Person{Name: c.Author.Name, Email: c.Author.Email, When: c.Author.When},
		Committer: Person{Name: c.Committer.Name, Email: c.Committer.Email, When: c.Committer.When},
		Message:   c.Message,
		Trailers:  ParseTrailers(c.Message),
		Signature: c.PGPSignature,
		tree:      c.TreeHash,
		src:       src,
	}
	for _, p := range c.ParentHashes {
		r.Parents = append(r.Parents, p.String())
	}
	if c.PGPSignature != "" {
		o := &plumbing.MemoryObject{}
		if err := c.EncodeWithoutSignature(o); err != nil {
			return Revision{}, fmt.Errorf("encode commit %s for signature check: %w", c.Hash, err)
		}
		rd, err := o.Reader()
		if err != nil {
			return Revision{}, fmt.Errorf("encode commit %s for signature check: %w", c.Hash, err)
		}
		defer rd.Close()
		if r.SignedPayload, err = io.ReadAll(rd); err != nil {
			return Revision{}, fmt.Errorf("encode commit %s for signature check: %w", c.Hash, err)
		}
	}
	return r, nil
}

// Short is the abbreviated sha, as in `4f2a9c1`.
func (r Revision) Short() string {
	if len(r.SHA) < 7 {
		return r.SHA
	}
	return r.SHA[:7]
}

// Subject is the message's first line.
func (r Revision) Subject() string {
	s, _, _ := strings.Cut(strings.TrimLeft(r.Message, "\n"), "\n")
	return s
}

// Trailer returns the last value of a trailer key, compared case-insensitively as git does.
func (r Revision) Trailer(key string) (string, bool) {
	for i := len(r.Trailers) - 1; i >= 0; i-- {
		if strings.EqualFold(r.Trailers[i].Key, key) {
			return r.Trailers[i].Value, true
		}
	}
	return "", false
}

var trailerLine = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*?)[ \t]*$`)

// gitGenerated are prefixes git itself writes; with one present, git accepts a trailer
// block that is only 25% trailers.
var gitGenerated = []string{"Signed-off-by: ", "(cherry picked from commit "}

// ParseTrailers follows git-interpret-trailers: the trailers are the message's last
// paragraph, never its first (the title), when every line of it is a `Key: value` trailer
// or an indented continuation — or, if it holds a git-generated line, at least a quarter
// of its lines are trailers.
func ParseTrailers(msg string) []Trailer {
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(msg, "\r\n", "\n"), "\n \t"), "\n")
	start := len(lines)
	for start > 0 && strings.TrimSpace(lines[start-1]) != "" {
		start--
	}
	if start == 0 {
		return nil
	}
	// The title is everything up to the first blank line; the last paragraph must come after.
	title := 0
	for title < len(lines) && strings.TrimSpace(lines[title]) == "" {
		title++
	}
	if start <= title {
		return nil
	}
	block := lines[start:]
	var out []Trailer
	trailers, others, generated := 0, 0, false
	for _, l := range block {
		if (l[0] == ' ' || l[0] == '\t') && len(out) > 0 {
			out[len(out)-1].Value = strings.TrimSpace(out[len(out)-1].Value + " " + strings.TrimSpace(l))
			continue
		}
		for _, g := range gitGenerated {
			if strings.HasPrefix(l, g) {
				generated = true
			}
		}
		m := trailerLine.FindStringSubmatch(l)
		if m == nil {
			others++
			continue
		}
		trailers++
		out = append(out, Trailer{Key: m[1], Value: m[2]})
	}
	if trailers == 0 || (others > 0 && !(generated && trailers*3 >= others)) {
		return nil
	}
	return out
}
