// Package fakecloud is the plumbing the fake clouds (fakeopenstack, fakealicloud)
// share: injected faults, taken in order and used up, the request log, and holding or
// dropping a request. What a fault matches, and how a cloud answers one, stay with
// each fake: they are its API's.
package fakecloud

import (
	"net/http"
	"slices"
	"sync"
	"time"
)

// Faults are a fake's injected faults of its type F. Safe for concurrent use.
type Faults[F any] struct {
	mu   sync.Mutex
	list []*F
}

// Inject adds a fault.
func (fs *Faults[F]) Inject(f F) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.list = append(fs.list, &f)
}

// Clear removes every fault.
func (fs *Faults[F]) Clear() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.list = nil
}

// Take returns a copy of the first fault match accepts, or nil. times points at a
// fault's count of requests still to hit (0: every one until Clear); Take counts it
// down and removes the fault it uses up.
func (fs *Faults[F]) Take(match func(*F) bool, times func(*F) *int) *F {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i, f := range fs.list {
		if match(f) {
			if n := times(f); *n > 0 {
				if *n--; *n == 0 {
					fs.list = slices.Delete(fs.list, i, i+1)
				}
			}
			cp := *f
			return &cp
		}
	}
	return nil
}

// Log is a fake's request log of its type R. Safe for concurrent use.
type Log[R any] struct {
	mu   sync.Mutex
	list []R
}

// Add logs r.
func (l *Log[R]) Add(r R) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, r)
}

// All returns the log.
func (l *Log[R]) All() []R {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.list)
}

// Hold keeps r waiting d (to exceed a client's timeout), and reports whether it is
// still wanted: false when the client gave up first.
func Hold(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	select {
	case <-time.After(d):
		return true
	case <-r.Context().Done():
		return false
	}
}

// Drop closes w's connection without an answer, as a network failure would.
func Drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
		}
	}
}

// CloneMap copies m (a nil m to an empty map).
func CloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
