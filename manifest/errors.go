package manifest

import (
	"strconv"
	"strings"
)

// Error is one problem with a document: where it is and what is wrong.
type Error struct {
	Pos  Pos
	Path string // key path such as instance_groups/name=web/networks/0, or empty
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	if e.Path != "" {
		b.WriteString(": ")
		b.WriteString(e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a document, reported together.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	if len(es) == 1 {
		return lines[0]
	}
	return "found " + strconv.Itoa(len(es)) + " problems:\n  " + strings.Join(lines, "\n  ")
}

// Err returns es as an error, or nil when there are none.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}
