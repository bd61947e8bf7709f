package main

import (
	"testing"

	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
)

// TestMain lets tests of this package ask pgtest for a database; it starts a cluster
// only when one does.
func TestMain(m *testing.M) { pgtest.Main(m) }
