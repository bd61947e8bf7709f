package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/bosun-gitops/bosun/state"
	"github.com/jackc/pgx/v5"
)

// AdvisoryLock is a session-level advisory lock held on a connection of its own, outside
// the pool: the lock lives exactly as long as that session, so a director that dies or
// loses its database gives the lock up and another director can take it. Single-writer
// roles (the health monitor, a deployment's reconciler) are held this way.
type AdvisoryLock struct {
	key  int64
	mu   sync.Mutex
	conn *pgx.Conn // nil once released
}

// TryAdvisoryLock takes the advisory lock key without waiting. It returns nil and no error
// when another session holds it.
func (s *Store) TryAdvisoryLock(ctx context.Context, key int64) (*AdvisoryLock, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("take advisory lock %d: connect: %w", key, oneLine(err))
	}
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&got); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("take advisory lock %d: %w", key, err)
	}
	if !got {
		conn.Close(context.WithoutCancel(ctx))
		return nil, nil
	}
	return &AdvisoryLock{key: key, conn: conn}, nil
}

// ErrLockLost: the session holding an advisory lock ended, so the lock may now be
// someone else's.
var ErrLockLost = errors.New("advisory lock lost: its database session ended")

// Check confirms the session holding the lock is still alive, and with it the lock. An
// error means the holder must stop acting as if it held the lock.
func (l *AdvisoryLock) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return fmt.Errorf("check advisory lock %d: %w", l.key, ErrLockLost)
	}
	var held bool
	// Ask the server rather than only ping: the lock itself is what matters.
	err := l.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
		AND pid = pg_backend_pid() AND granted
		AND classid = ($1::bigint >> 32)::oid AND objid = ($1::bigint & 4294967295)::oid AND objsubid = 1)`, l.key).Scan(&held)
	if err != nil {
		if ctx.Err() == nil {
			// The session is broken; drop it so the server frees whatever it still holds.
			l.conn.Close(context.WithoutCancel(ctx))
			l.conn = nil
			return fmt.Errorf("check advisory lock %d: %w (%w)", l.key, ErrLockLost, oneLine(err))
		}
		return fmt.Errorf("check advisory lock %d: %w", l.key, err)
	}
	if !held {
		return fmt.Errorf("check advisory lock %d: %w", l.key, ErrLockLost)
	}
	return nil
}

// Release gives the lock up and closes its session. It is safe to call more than once.
func (l *AdvisoryLock) Release(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return
	}
	// Closing the session releases the lock even if the unlock is never answered.
	_, _ = l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", l.key)
	l.conn.Close(context.WithoutCancel(ctx))
	l.conn = nil
}

// PID is the server process id of the lock's session (for operators and tests); 0 once
// released.
func (l *AdvisoryLock) PID() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return 0
	}
	return l.conn.PgConn().PID()
}

// UnfinishedTasks lists deployment's tasks of type typ that are queued or running
// (processing or cancelling), oldest first: what the health monitor checks before it
// queues a resurrection.
func (s *Store) UnfinishedTasks(ctx context.Context, deployment, typ string) ([]state.Task, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+taskColumns+` FROM tasks
		WHERE deployment = $1 AND type = $2 AND state IN ('queued', 'processing', 'cancelling') ORDER BY id`, deployment, typ)
	if err != nil {
		return nil, fmt.Errorf("list unfinished %s tasks of %s: %w", typ, deployment, err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Task, error) { return scanTask(r) })
	if err != nil {
		return nil, fmt.Errorf("list unfinished %s tasks of %s: %w", typ, deployment, err)
	}
	return ts, nil
}
