// Package wait is the waiting the cloud CPIs share: polling a resource until it
// reaches a state within state_timeout, and pausing between retries with jittered
// exponential backoff. What may be retried, and what a state means, stay with each
// CPI: they are its cloud's.
package wait

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// ErrStateTimeout marks a resource that did not reach its state within state_timeout.
var ErrStateTimeout = errors.New("state timeout")

// For polls check every interval until it reports done or an error, or timeout
// passes. check says the state it saw, for the timeout error.
func For(ctx context.Context, timeout, interval time.Duration, what string, check func(context.Context) (done bool, state string, err error)) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "unknown"
	for {
		done, state, err := check(wctx)
		if wctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("%s: still %s after %s: %w", what, last, timeout, ErrStateTimeout)
		}
		if err != nil || done {
			return err
		}
		last = state
		if Sleep(wctx, interval) != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: still %s after %s: %w", what, last, timeout, ErrStateTimeout)
		}
	}
}

// Sleep pauses for d, or until ctx ends (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backoff is the pause before retry n (from 1): base doubled for each retry before
// it, at most doublings times, capped at limit when limit > 0, and then jittered into
// its upper half so that clients refused together do not retry together.
func Backoff(n int, base time.Duration, doublings int, limit time.Duration) time.Duration {
	d := base << min(n-1, doublings)
	if limit > 0 {
		d = min(d, limit)
	}
	return d/2 + rand.N(d/2+1)
}

// Seconds is a config's number of seconds v as a duration, or def when v is 0 (left
// out).
func Seconds(v, def float64) time.Duration {
	if v == 0 {
		v = def
	}
	return time.Duration(v * float64(time.Second))
}
