package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bosun-gitops/bosun/state"
	"github.com/jackc/pgx/v5"
)

// The store's errors are state's, so that callers need not import this package to test them.
var (
	ErrNotFound = state.ErrNotFound
	ErrLost     = state.ErrTaskLost
)

const taskColumns = `id, type, deployment, state, description, params, result, username,
	owner, heartbeat_at, attempts, created_at, started_at, finished_at`

func scanTask(row pgx.Row) (state.Task, error) {
	var t state.Task
	var owner *string
	var params []byte
	err := row.Scan(&t.ID, &t.Type, &t.Deployment, &t.State, &t.Description, &params, &t.Result, &t.User,
		&owner, &t.HeartbeatAt, &t.Attempts, &t.CreatedAt, &t.StartedAt, &t.FinishedAt)
	if owner != nil {
		t.Owner = *owner
	}
	if len(params) > 0 {
		t.Params = params
	}
	return t, err
}

// Enqueue adds a queued task and returns it as stored.
func (s *Store) Enqueue(ctx context.Context, t state.Task) (state.Task, error) {
	if t.Type == "" {
		return state.Task{}, errors.New("enqueue task: type is empty")
	}
	var params any
	if len(t.Params) > 0 {
		params = []byte(t.Params)
	}
	out, err := scanTask(s.pool.QueryRow(ctx, `INSERT INTO tasks (type, deployment, description, params, username)
		VALUES ($1, $2, $3, $4, $5) RETURNING `+taskColumns, t.Type, t.Deployment, t.Description, params, t.User))
	if err != nil {
		return state.Task{}, fmt.Errorf("enqueue %s task: %w", t.Type, err)
	}
	return out, nil
}

// Claim hands owner the oldest queued task of one of types (any type when types is nil)
// and marks it processing, or returns nil when there is none. A task of a deployment is
// handed out only when no task of that deployment is processing and no older one waits:
// the deployment's lock row, taken in the same transaction, is what guarantees it.
func (s *Store) Claim(ctx context.Context, owner string, types []string) (*state.Task, error) {
	// Another worker may win the deployment lock between our pick and our insert; then
	// pick again rather than fail the caller.
	for range 8 {
		var got *state.Task
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var id int64
			var deployment string
			err := tx.QueryRow(ctx, `SELECT id, deployment FROM tasks t
				WHERE state = 'queued' AND ($1::text[] IS NULL OR type = ANY($1))
				  AND (deployment = '' OR (
				      NOT EXISTS (SELECT 1 FROM locks l WHERE l.deployment = t.deployment)
				      AND NOT EXISTS (SELECT 1 FROM tasks e WHERE e.deployment = t.deployment AND e.state = 'queued' AND e.id < t.id)))
				ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED`, types).Scan(&id, &deployment)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			if deployment != "" {
				tag, err := tx.Exec(ctx, `INSERT INTO locks (deployment, task_id, owner) VALUES ($1, $2, $3)
					ON CONFLICT (deployment) DO NOTHING`, deployment, id, owner)
				if err != nil {
					return err
				}
				if tag.RowsAffected() == 0 {
					return errLockTaken
				}
			}
			t, err := scanTask(tx.QueryRow(ctx, `UPDATE tasks SET state = 'processing', owner = $2, heartbeat_at = now(),
				started_at = coalesce(started_at, now()), attempts = attempts + 1
				WHERE id = $1 RETURNING `+taskColumns, id, owner))
			if err != nil {
				return err
			}
			got = &t
			return nil
		})
		if errors.Is(err, errLockTaken) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("claim task for %s: %w", owner, err)
		}
		return got, nil
	}
	return nil, nil
}

var errLockTaken = errors.New("deployment lock taken")

// Heartbeat records that owner still works on task id, and reports whether a cancel was
// requested. ErrLost means the task was taken from owner: it must stop at once.
func (s *Store) Heartbeat(ctx context.Context, id int64, owner string) (cancel bool, err error) {
	var st string
	err = s.pool.QueryRow(ctx, `UPDATE tasks SET heartbeat_at = now()
		WHERE id = $1 AND owner = $2 AND state IN ('processing', 'cancelling') RETURNING state`, id, owner).Scan(&st)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, fmt.Errorf("heartbeat task %d: %w", id, ErrLost)
	}
	if err != nil {
		return false, fmt.Errorf("heartbeat task %d: %w", id, err)
	}
	return st == state.TaskCancelling, nil
}

// Finish ends owner's task id in a final state with result, releasing its deployment.
func (s *Store) Finish(ctx context.Context, id int64, owner, final, result string) error {
	if !state.TaskFinal(final) {
		return fmt.Errorf("finish task %d: %q is not a final state", id, final)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE tasks SET state = $3, result = $4, finished_at = now(), heartbeat_at = now()
			WHERE id = $1 AND owner = $2 AND state IN ('processing', 'cancelling')`, id, owner, final, result)
		if err != nil {
			return fmt.Errorf("finish task %d: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("finish task %d: %w", id, ErrLost)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM locks WHERE task_id = $1", id); err != nil {
			return fmt.Errorf("finish task %d: release lock: %w", id, err)
		}
		return nil
	})
}

// Release gives owner's unfinished task back to the queue, for a worker shutting down
// before it could finish. A cancel requested meanwhile is honoured: the task ends cancelled.
func (s *Store) Release(ctx context.Context, id int64, owner string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE tasks SET
				state = CASE WHEN state = 'cancelling' THEN 'cancelled' ELSE 'queued' END,
				finished_at = CASE WHEN state = 'cancelling' THEN now() END,
				owner = NULL, heartbeat_at = NULL
			WHERE id = $1 AND owner = $2 AND state IN ('processing', 'cancelling')`, id, owner)
		if err != nil {
			return fmt.Errorf("release task %d: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("release task %d: %w", id, ErrLost)
		}
		_, err = tx.Exec(ctx, "DELETE FROM locks WHERE task_id = $1", id)
		return err
	})
}

// RequestCancel cancels a queued task at once and asks the worker of a processing one to
// stop (state cancelling, seen at its next heartbeat). Finished tasks are left as they are.
func (s *Store) RequestCancel(ctx context.Context, id int64) (state.Task, error) {
	t, err := scanTask(s.pool.QueryRow(ctx, `UPDATE tasks SET
			state = CASE state WHEN 'queued' THEN 'cancelled' WHEN 'processing' THEN 'cancelling' ELSE state END,
			finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END
		WHERE id = $1 RETURNING `+taskColumns, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return state.Task{}, fmt.Errorf("cancel task %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return state.Task{}, fmt.Errorf("cancel task %d: %w", id, err)
	}
	return t, nil
}

// RequeueStale takes back the tasks whose worker has not heartbeaten for ttl: they are
// queued again for another worker (or cancelled, when a cancel was requested). It
// returns the ids taken back.
func (s *Store) RequeueStale(ctx context.Context, ttl time.Duration) ([]int64, error) {
	var ids []int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE tasks SET
				state = CASE WHEN state = 'cancelling' THEN 'cancelled' ELSE 'queued' END,
				finished_at = CASE WHEN state = 'cancelling' THEN now() END,
				owner = NULL, heartbeat_at = NULL
			WHERE state IN ('processing', 'cancelling') AND heartbeat_at < now() - $1::interval
			RETURNING id`, ttl)
		if err != nil {
			return err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DELETE FROM locks WHERE task_id = ANY($1)", ids)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("requeue stale tasks: %w", err)
	}
	return ids, nil
}

// Task returns task id.
func (s *Store) Task(ctx context.Context, id int64) (state.Task, error) {
	t, err := scanTask(s.pool.QueryRow(ctx, "SELECT "+taskColumns+" FROM tasks WHERE id = $1", id))
	if errors.Is(err, pgx.ErrNoRows) {
		return state.Task{}, fmt.Errorf("task %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return state.Task{}, fmt.Errorf("task %d: %w", id, err)
	}
	return t, nil
}

// TaskFilter narrows Tasks; it is state's, so callers need not import this package.
type TaskFilter = state.TaskFilter

// Tasks lists tasks, newest first.
func (s *Store) Tasks(ctx context.Context, f TaskFilter) ([]state.Task, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	rows, err := s.pool.Query(ctx, "SELECT "+taskColumns+` FROM tasks
		WHERE ($1 = '' OR deployment = $1) AND ($2::text[] IS NULL OR state = ANY($2))
		  AND ($4::text[] IS NULL OR deployment = ANY($4))
		ORDER BY id DESC LIMIT $3`, f.Deployment, f.States, f.Limit, f.Deployments)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Task, error) { return scanTask(r) })
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	return ts, nil
}

// AddTaskEvent appends e to task e.TaskID's event log and returns its sequence number.
// Sequence numbers are gapless and commit in order, so a reader following with
// TaskEvents(afterSeq) never skips one.
func (s *Store) AddTaskEvent(ctx context.Context, e state.TaskEvent) (int64, error) {
	var seq int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "UPDATE tasks SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq", e.TaskID).Scan(&seq); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			return err
		}
		tags := e.Tags
		if tags == nil {
			tags = []string{}
		}
		_, err := tx.Exec(ctx, `INSERT INTO task_events (task_id, seq, stage, task, tags, index, total, state, progress, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			e.TaskID, seq, e.Stage, e.Task, tags, e.Index, e.Total, e.State, e.Progress, e.Error)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("add event to task %d: %w", e.TaskID, err)
	}
	return seq, nil
}

// TaskEvents returns task id's events after sequence number afterSeq, in order.
func (s *Store) TaskEvents(ctx context.Context, id, afterSeq int64) ([]state.TaskEvent, error) {
	rows, err := s.pool.Query(ctx, `SELECT task_id, seq, time, stage, task, tags, index, total, state, progress, error
		FROM task_events WHERE task_id = $1 AND seq > $2 ORDER BY seq`, id, afterSeq)
	if err != nil {
		return nil, fmt.Errorf("events of task %d: %w", id, err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.TaskEvent, error) {
		var e state.TaskEvent
		err := r.Scan(&e.TaskID, &e.Seq, &e.Time, &e.Stage, &e.Task, &e.Tags, &e.Index, &e.Total, &e.State, &e.Progress, &e.Error)
		if len(e.Tags) == 0 {
			e.Tags = nil
		}
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("events of task %d: %w", id, err)
	}
	return evs, nil
}

// Locks lists the deployment locks held now: which task and worker, since when.
func (s *Store) Locks(ctx context.Context) ([]state.Lock, error) {
	rows, err := s.pool.Query(ctx, `SELECT deployment, task_id, owner, acquired_at, now() - acquired_at
		FROM locks ORDER BY deployment`)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	ls, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Lock, error) {
		var l state.Lock
		err := r.Scan(&l.Deployment, &l.TaskID, &l.Owner, &l.Since, &l.Age)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	return ls, nil
}

// ListenTasks calls wake whenever a task may have become claimable (queued, requeued, or
// its deployment released), until ctx ends. Workers still poll; this only makes them
// quick. It holds one connection for as long as it runs.
func (s *Store) ListenTasks(ctx context.Context, wake func()) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listen for tasks: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN bosun_tasks"); err != nil {
		return fmt.Errorf("listen for tasks: %w", err)
	}
	defer func() {
		// The connection goes back to the pool: it must not keep listening.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "UNLISTEN bosun_tasks")
	}()
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("listen for tasks: %w", err)
		}
		wake()
	}
}
