// Package pgtest owns the PostgreSQL that tests run against: BOSUN_TEST_DATABASE_URL when
// set, otherwise one throwaway cluster per test process, and a fresh database per test.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//	func TestX(t *testing.T) { url := pgtest.NewDatabase(t); … }
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/state/postgres/cluster"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EnvURL names the variable that points tests at an existing server; its user must be
// allowed to create databases.
const EnvURL = "BOSUN_TEST_DATABASE_URL"

var (
	inMain   bool
	once     sync.Once
	adminURL string
	startErr error
	running  *cluster.Cluster
	tmpDir   string
)

// Main runs the package's tests and, if any of them asked for a database, stops the
// cluster started for them and removes its files. Call it from TestMain.
func Main(m *testing.M) {
	inMain = true
	code := m.Run()
	if running != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := running.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			code = 1
		}
		cancel()
	}
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
	os.Exit(code)
}

// server finds or starts the one server of this test process, on first use: test runs
// that need no database (go test -run X) start none.
func server() (string, error) {
	once.Do(func() {
		if u := os.Getenv(EnvURL); u != "" {
			adminURL = u
			return
		}
		if !inMain {
			startErr = fmt.Errorf("no server: call pgtest.Main(m) from TestMain, or set %s", EnvURL)
			return
		}
		// os.MkdirTemp gives 0700; the postgres user must be able to enter it.
		if tmpDir, startErr = os.MkdirTemp("", "bosun-pgtest-"); startErr != nil {
			return
		}
		if startErr = os.Chmod(tmpDir, 0o755); startErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		running, startErr = cluster.Start(ctx, cluster.Config{Dir: filepath.Join(tmpDir, "data"), NoFsync: true})
		if startErr == nil {
			adminURL = running.URL("postgres")
		}
	})
	return adminURL, startErr
}

// NewDatabase creates an empty database for this test, dropped when it ends, and
// returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	adminURL, err := server()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "bosun_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Errorf("pgtest: connect to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("pgtest: %s is not a URL: %v", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

// NewPool is NewDatabase with a pool on it, closed when the test ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), NewDatabase(t))
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}
