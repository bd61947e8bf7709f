package cpitest

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/bosun-gitops/bosun/cpi"
)

// Log is a CPI's log as a test keeps it, safe for the concurrent requests that write
// to it.
type Log struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// NewLog returns a debug logger for a CPI under test and the Log it writes, and fails
// t at its end if any of secrets appeared in that log.
func NewLog(t testing.TB, secrets ...string) (*slog.Logger, *Log) {
	l := &Log{}
	t.Cleanup(func() {
		for _, s := range secrets {
			if strings.Contains(l.String(), s) {
				t.Errorf("a secret appeared in the CPI's log:\n%s", l)
			}
		}
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

// WantError fails t unless err is a *cpi.Error of kind whose OkToRetry is retry, and
// whose text holds each of contains and none of secrets.
func WantError(t *testing.T, err error, kind cpi.Kind, retry bool, contains []string, secrets ...string) {
	t.Helper()
	var e *cpi.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want a *cpi.Error", err, err)
	}
	if e.Kind != kind || e.OkToRetry != retry {
		t.Errorf("err kind %s retry %v, want %s %v: %v", e.Kind, e.OkToRetry, kind, retry, err)
	}
	for _, s := range contains {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("err does not say %q: %v", s, err)
		}
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("err holds a secret: %v", err)
		}
	}
}
