package cluster_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/state/postgres/cluster"
	"github.com/jackc/pgx/v5"
)

// reachableDir is a temp dir the postgres user can enter when the tests run as root.
func reachableDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func startCluster(t *testing.T, cfg cluster.Config) *cluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func stop(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pid, port := c.Pid(), c.Port()
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("postgres pid %d still exists after Stop (kill 0: %v)", pid, err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Errorf("port %d still taken after Stop: %v", port, err)
	} else {
		l.Close()
	}
}

func query(t *testing.T, url, sql string) pgx.Rows {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if strings.Contains(sql, ";") {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
		return nil
	}
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestStartStopRestartKeepsData(t *testing.T) {
	dir := filepath.Join(reachableDir(t), "pg")
	c := startCluster(t, cluster.Config{Dir: dir, NoFsync: true})
	if err := syscall.Kill(c.Pid(), 0); err != nil {
		t.Fatalf("postgres pid %d not running: %v", c.Pid(), err)
	}
	query(t, c.URL("postgres"), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
	if strings.Contains(c.URL("postgres"), "127.0.0.1") {
		t.Errorf("URL %s goes over TCP; want the socket in the data dir", c.URL("postgres"))
	}
	// Over TCP anyone on the host could connect: without a password there is no login.
	tcp := "postgres://postgres@127.0.0.1:" + strconv.Itoa(c.Port()) + "/postgres?sslmode=disable"
	if conn, err := pgx.Connect(context.Background(), tcp); err == nil {
		conn.Close(context.Background())
		t.Error("logged in over TCP without a password")
	}
	stop(t, c)

	c = startCluster(t, cluster.Config{Dir: dir, NoFsync: true})
	rows := query(t, c.URL("postgres"), "SELECT v FROM kept")
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(got) != 1 || got[0] != "still here" {
		t.Fatalf("after restart: %v, %v", got, err)
	}
	stop(t, c)
}

func TestStartRefusesBadInput(t *testing.T) {
	base := reachableDir(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := l.Addr().(*net.TCPAddr).Port

	junk := filepath.Join(base, "junk")
	if err := os.MkdirAll(junk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junk, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  cluster.Config
		want string
	}{
		{"port in use", cluster.Config{Dir: filepath.Join(base, "a"), Port: busy}, "port " + strconv.Itoa(busy) + " on 127.0.0.1 is in use"},
		{"foreign files", cluster.Config{Dir: junk}, "is not empty and holds no PostgreSQL cluster"},
	}
	if os.Geteuid() == 0 {
		closed := filepath.Join(base, "closed")
		if err := os.Mkdir(closed, 0o700); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct {
			name string
			cfg  cluster.Config
			want string
		}{"parent closed to postgres", cluster.Config{Dir: filepath.Join(closed, "pg")}, "the postgres user cannot enter " + closed})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := cluster.Start(ctx, tt.cfg)
			if err == nil {
				c.Stop(ctx)
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q; want one line containing %q", err, tt.want)
			}
		})
	}
}
