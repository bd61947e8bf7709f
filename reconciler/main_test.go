package reconciler

import (
	"testing"

	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }
