package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Two directors against one Postgres: exactly one health monitor is active, and killing
// its director moves the role to the other well within one agent timeout.
func TestHealthMonitorFailsOverBetweenDirectors(t *testing.T) {
	base := reachableTempDir(t)
	// The first director only provides the database (its own monitor is off).
	pgData := filepath.Join(base, "pg")
	pg := startDirector(t, "--dev", "--data-dir", pgData, "--listen", directorFreePort(t), "--nats-listen", directorFreePort(t), "--no-health")
	pg.healthy(t)
	_, port := postmaster(t, pgData)
	url := pgSocketURL(pgData, port)

	start := func(name string) *directorProc {
		d := startDirector(t, "--database-url", url, "--data-dir", filepath.Join(base, name),
			"--listen", directorFreePort(t), "--nats-listen", directorFreePort(t), "--log-format", "json")
		if h := d.healthy(t); h.Roles["health"] != "running" {
			t.Fatalf("%s: health role = %q", name, h.Roles["health"])
		}
		return d
	}
	active := func(d *directorProc) int { return strings.Count(d.stderr.String(), "health monitor active") }
	waitUntil := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	a := start("a")
	waitUntil("the first director's monitor to become active", time.Minute, func() bool { return active(a) == 1 })
	b := start("b")
	time.Sleep(2 * time.Second) // b competes a few times meanwhile
	if active(b) != 0 {
		t.Fatalf("two active monitors:\n%s", b.stderr)
	}

	// Kill -9: no goodbye; its database session ends with it.
	killed := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.wait(t)
	waitUntil("the second director's monitor to take over", 60*time.Second, func() bool { return active(b) == 1 })
	t.Logf("failover took %s", time.Since(killed).Round(time.Millisecond))
}

// A director whose expected agent never heartbeats: the monitor alerts (visible in the
// events table `bosun events` reads) and queues one resurrect task.
func TestHealthMonitorQueuesResurrectionForASilentAgent(t *testing.T) {
	base := reachableTempDir(t)
	data := filepath.Join(base, "data")
	d := startDirector(t, "--dev", "--data-dir", data, "--listen", directorFreePort(t), "--nats-listen", directorFreePort(t),
		"--agent-timeout", "1s", "--health-interval", "200ms", "--meltdown-window", "1m", "--log-format", "json")
	d.healthy(t)
	_, port := postmaster(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgSocketURL(data, port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO deployments (name) VALUES ('web');
		INSERT INTO instances (deployment, grp, idx, vm_cid, agent_id) VALUES ('web', 'web', 0, 'vm-1', 'agent-1')`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		var tasks, alerts int
		err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM tasks WHERE type = 'resurrect' AND deployment = 'web' AND username = 'health_monitor'),
			(SELECT count(*) FROM events WHERE action = 'alert' AND deployment = 'web' AND object_name LIKE '%has timed out')`).Scan(&tasks, &alerts)
		if err != nil {
			t.Fatal(err)
		}
		if tasks >= 1 && alerts == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 90 s: %d resurrect tasks, %d timed-out alerts; director output:\n%s", tasks, alerts, d.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
