package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/bosun-gitops/bosun/state"
	"github.com/jackc/pgx/v5"
)

// SuspendDeployment holds deployment's reconciliation until ResumeDeployment. Suspending
// a suspended deployment keeps the first suspension (its user, reason and time) and
// reports it, so the operator learns who suspended it first.
func (s *Store) SuspendDeployment(ctx context.Context, deployment, user, reason string) (state.Suspension, error) {
	var out state.Suspension
	// The no-op update makes RETURNING give the existing row on a conflict.
	err := s.pool.QueryRow(ctx, `INSERT INTO suspensions (deployment, username, reason) VALUES ($1, $2, $3)
		ON CONFLICT (deployment) DO UPDATE SET deployment = EXCLUDED.deployment
		RETURNING deployment, username, reason, suspended_at`, deployment, user, reason).
		Scan(&out.Deployment, &out.User, &out.Reason, &out.Since)
	if err != nil {
		return state.Suspension{}, fmt.Errorf("suspend deployment %s: %w", deployment, err)
	}
	return out, nil
}

// ResumeDeployment lifts deployment's suspension and reports whether there was one.
func (s *Store) ResumeDeployment(ctx context.Context, deployment string) (bool, error) {
	tag, err := s.pool.Exec(ctx, "DELETE FROM suspensions WHERE deployment = $1", deployment)
	if err != nil {
		return false, fmt.Errorf("resume deployment %s: %w", deployment, err)
	}
	return tag.RowsAffected() > 0, nil
}

// DeploymentSuspended reports whether deployment's reconciliation is suspended: the
// reconciler asks before planning it.
func (s *Store) DeploymentSuspended(ctx context.Context, deployment string) (bool, error) {
	_, err := s.Suspension(ctx, deployment)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// Suspension returns deployment's suspension, or ErrNotFound when it is not suspended.
func (s *Store) Suspension(ctx context.Context, deployment string) (state.Suspension, error) {
	var out state.Suspension
	err := s.pool.QueryRow(ctx, "SELECT deployment, username, reason, suspended_at FROM suspensions WHERE deployment = $1", deployment).
		Scan(&out.Deployment, &out.User, &out.Reason, &out.Since)
	if errors.Is(err, pgx.ErrNoRows) {
		return out, fmt.Errorf("suspension of %s: %w", deployment, ErrNotFound)
	}
	if err != nil {
		return out, fmt.Errorf("suspension of %s: %w", deployment, err)
	}
	return out, nil
}

// Suspensions lists every suspended deployment by name.
func (s *Store) Suspensions(ctx context.Context) ([]state.Suspension, error) {
	rows, err := s.pool.Query(ctx, "SELECT deployment, username, reason, suspended_at FROM suspensions ORDER BY deployment")
	if err != nil {
		return nil, fmt.Errorf("list suspensions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Suspension, error) {
		var v state.Suspension
		err := r.Scan(&v.Deployment, &v.User, &v.Reason, &v.Since)
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("list suspensions: %w", err)
	}
	return out, nil
}

// TaskCounts counts tasks by state, for metrics.
func (s *Store) TaskCounts(ctx context.Context) (map[string]int, error) {
	return s.counts(ctx, "count tasks", "SELECT state, count(*) FROM tasks GROUP BY state")
}

// RevisionCounts counts judged revisions by verdict, for metrics.
func (s *Store) RevisionCounts(ctx context.Context) (map[string]int, error) {
	return s.counts(ctx, "count revisions", "SELECT verdict, count(*) FROM revisions GROUP BY verdict")
}

func (s *Store) counts(ctx context.Context, op, query string) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int
		if err := rows.Scan(&k, &n); err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		out[k] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return out, nil
}

// InstanceCounts counts instances per deployment in one query, for listings of many
// deployments.
func (s *Store) InstanceCounts(ctx context.Context) (map[string]int, error) {
	return s.counts(ctx, "count instances", "SELECT deployment, count(*) FROM instances GROUP BY deployment")
}
