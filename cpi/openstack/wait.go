package openstack

import (
	"context"
	"errors"
	"fmt"
)

// errStateTimeout marks a resource that did not reach its state within state_timeout.
var errStateTimeout = errors.New("state timeout")

// waitFor polls check every wait_resource_poll_interval until it reports done or an
// error, or state_timeout passes. check says the state it saw, for the timeout error.
func (c *CPI) waitFor(ctx context.Context, what string, check func(context.Context) (done bool, state string, err error)) error {
	timeout := c.cfg.stateTimeout()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "unknown"
	for {
		done, state, err := check(wctx)
		if wctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("%s: still %s after %s: %w", what, last, timeout, errStateTimeout)
		}
		if err != nil || done {
			return err
		}
		last = state
		if sleep(wctx, c.cfg.pollInterval()) != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: still %s after %s: %w", what, last, timeout, errStateTimeout)
		}
	}
}
