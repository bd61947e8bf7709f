package main

import (
	"testing"

	hm "github.com/bosun-gitops/bosun/health"
	"github.com/bosun-gitops/bosun/reconciler"
)

// The health monitor and the reconciler agree on the reason a resurrect task gives for a
// VM the cloud lost, without importing each other.
func TestVMMissingReasonAgrees(t *testing.T) {
	if hm.ReasonVMMissing != reconciler.ReasonVMMissing {
		t.Errorf("health says %q, the reconciler %q", hm.ReasonVMMissing, reconciler.ReasonVMMissing)
	}
}
