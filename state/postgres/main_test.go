package postgres_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/bosun-gitops/bosun/state/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openStore(t *testing.T, url string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(ctxFor(t), url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func pgtestDatabase(t *testing.T) string { return pgtest.NewDatabase(t) }

func openStoreB(b *testing.B) *postgres.Store {
	b.Helper()
	s, err := postgres.Open(b.Context(), pgtest.NewDatabase(b), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}
