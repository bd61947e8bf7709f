package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/bosun-gitops/bosun/state"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Judge stores a judged revision in one transaction: its verdict, the tasks it enqueues
// (returned as stored, in order), the renders they converge to, and the deployments it
// deletes. A revision is recorded with its first task's id.
func (s *Store) Judge(ctx context.Context, j state.Judgement) ([]state.Task, error) {
	r := j.Revision
	switch r.Verdict {
	case state.RevisionAccepted, state.RevisionRejected, state.RevisionFailed:
	default:
		return nil, fmt.Errorf("judge revision %s: verdict %q is not accepted, rejected or failed", r.SHA, r.Verdict)
	}
	if r.Verdict != state.RevisionAccepted && (len(j.Tasks) > 0 || len(j.Renders) > 0 || len(j.Forget) > 0) {
		return nil, fmt.Errorf("judge revision %s: a %s revision cannot enqueue tasks", r.SHA, r.Verdict)
	}
	verdict, err := json.Marshal(j.Verdict)
	if err != nil {
		return nil, fmt.Errorf("judge revision %s: %w", r.SHA, err)
	}
	var out []state.Task
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		out = out[:0]
		for _, t := range j.Tasks {
			if t.Type == "" {
				return errors.New("task type is empty")
			}
			var params any
			if len(t.Params) > 0 {
				params = []byte(t.Params)
			}
			st, err := scanTask(tx.QueryRow(ctx, `INSERT INTO tasks (type, deployment, description, params, username)
				VALUES ($1, $2, $3, $4, $5) RETURNING `+taskColumns, t.Type, t.Deployment, t.Description, params, t.User))
			if err != nil {
				return err
			}
			out = append(out, st)
		}
		var task any
		if len(out) > 0 {
			task = out[0].ID
		}
		msgs := append(append([]string{}, j.Verdict.Denies...), j.Verdict.Warnings...)
		if _, err := tx.Exec(ctx, `INSERT INTO revisions (sha, author, message, verdict, policy_messages, task_id, policy_revision, verdict_detail, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (sha) DO UPDATE SET author = $2, message = $3, verdict = $4, policy_messages = $5, task_id = $6,
				policy_revision = $7, verdict_detail = $8, error = $9`,
			r.SHA, r.Author, r.Message, r.Verdict, nonNil(msgs), task, j.Verdict.PolicyRevision, verdict, j.Verdict.Error); err != nil {
			return err
		}
		for _, d := range j.Renders {
			if _, err := tx.Exec(ctx, `INSERT INTO deployment_renders (deployment, revision, digest) VALUES ($1, $2, $3)
				ON CONFLICT (deployment) DO UPDATE SET revision = $2, digest = $3, updated_at = now()`,
				d.Deployment, d.Revision, d.Digest); err != nil {
				return err
			}
		}
		for _, name := range j.Forget {
			if _, err := tx.Exec(ctx, `DELETE FROM deployment_renders WHERE deployment = $1`, name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("judge revision %s: %w", r.SHA, err)
	}
	return out, nil
}

// Verdict returns the full verdict stored with revision sha.
func (s *Store) Verdict(ctx context.Context, sha string) (state.Verdict, error) {
	var v state.Verdict
	var raw []byte
	err := s.pool.QueryRow(ctx, `SELECT verdict_detail FROM revisions WHERE sha = $1`, sha).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, fmt.Errorf("verdict of %s: %w", sha, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("verdict of %s: %w", sha, err)
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &v); err != nil {
			return v, fmt.Errorf("verdict of %s: %w", sha, err)
		}
	}
	return v, nil
}

// DeploymentRenders lists what every deployment was last rendered to, by name.
func (s *Store) DeploymentRenders(ctx context.Context) ([]state.DeploymentRender, error) {
	rows, err := s.pool.Query(ctx, `SELECT deployment, revision, digest, updated_at FROM deployment_renders ORDER BY deployment`)
	if err != nil {
		return nil, fmt.Errorf("list deployment renders: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.DeploymentRender, error) {
		var d state.DeploymentRender
		err := r.Scan(&d.Deployment, &d.Revision, &d.Digest, &d.UpdatedAt)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list deployment renders: %w", err)
	}
	return out, nil
}

// PutDeploymentRender records what deployment d converges to (a task enqueued outside a
// judgement: drift repair or resurrection keep the render they were given).
func (s *Store) PutDeploymentRender(ctx context.Context, d state.DeploymentRender) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO deployment_renders (deployment, revision, digest) VALUES ($1, $2, $3)
		ON CONFLICT (deployment) DO UPDATE SET revision = $2, digest = $3, updated_at = now()`, d.Deployment, d.Revision, d.Digest); err != nil {
		return fmt.Errorf("save render of %s: %w", d.Deployment, err)
	}
	return nil
}

// AppliedInstances lists the planner's records of deployment's instances, or of every
// deployment's when deployment is empty.
func (s *Store) AppliedInstances(ctx context.Context, deployment string) ([]state.AppliedInstance, error) {
	rows, err := s.pool.Query(ctx, `SELECT instance_id, deployment, data FROM instance_applied
		WHERE $1 = '' OR deployment = $1 ORDER BY deployment, instance_id`, deployment)
	if err != nil {
		return nil, fmt.Errorf("list applied instances: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.AppliedInstance, error) {
		var a state.AppliedInstance
		var data []byte
		err := r.Scan(&a.InstanceID, &a.Deployment, &data)
		a.Data = data
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("list applied instances: %w", err)
	}
	return out, nil
}

// PutAppliedInstances records converged instances and forgets deleted ones, in one
// transaction.
func (s *Store) PutAppliedInstances(ctx context.Context, put []state.AppliedInstance, forget []string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for _, a := range put {
			if _, err := tx.Exec(ctx, `INSERT INTO instance_applied (instance_id, deployment, data) VALUES ($1, $2, $3)
				ON CONFLICT (instance_id) DO UPDATE SET deployment = $2, data = $3, updated_at = now()`,
				a.InstanceID, a.Deployment, []byte(a.Data)); err != nil {
				return err
			}
		}
		if len(forget) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM instance_applied WHERE instance_id = ANY($1)`, forget); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save applied instances: %w", err)
	}
	return nil
}

// ForgetDeployment removes what the reconciler kept of a deleted deployment: its render,
// its instances' records, its address claims, the links it shared and its copy of those it
// consumed. Its variables stay, as BOSH's config server keeps them. The copies other
// deployments keep of the links it shared stay too: their instances still run them.
func (s *Store) ForgetDeployment(ctx context.Context, deployment string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM deployment_renders WHERE deployment = $1`, deployment); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM ip_reservations WHERE deployment = $1`, deployment); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM drift_seen WHERE deployment = $1`, deployment); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM shared_links WHERE deployment = $1`, deployment); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM consumed_links WHERE consumer = $1`, deployment); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM instance_applied WHERE deployment = $1`, deployment)
		return err
	})
	if err != nil {
		return fmt.Errorf("forget deployment %s: %w", deployment, err)
	}
	return nil
}

// SealedVariables returns deployment's variables as stored: sealed values by name.
func (s *Store) SealedVariables(ctx context.Context, deployment string) (map[string][]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, value FROM variables WHERE deployment = $1`, deployment)
	if err != nil {
		return nil, fmt.Errorf("read variables of %s: %w", deployment, err)
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var name string
		var v []byte
		if err := rows.Scan(&name, &v); err != nil {
			return nil, fmt.Errorf("read variables of %s: %w", deployment, err)
		}
		out[name] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read variables of %s: %w", deployment, err)
	}
	return out, nil
}

// AddSealedVariables stores newly generated variables. A value already stored under a
// name is kept: when two directors generate at once, the first one stored wins and the
// loser re-reads it.
func (s *Store) AddSealedVariables(ctx context.Context, deployment string, vars map[string][]byte) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for name, v := range vars {
			if _, err := tx.Exec(ctx, `INSERT INTO variables (deployment, name, value) VALUES ($1, $2, $3)
				ON CONFLICT (deployment, name) DO NOTHING`, deployment, name, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store variables of %s: %w", deployment, err)
	}
	return nil
}

// DeleteVariable forgets one variable so that the next render generates it anew: explicit
// rotation. It reports whether the variable existed.
func (s *Store) DeleteVariable(ctx context.Context, deployment, name string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM variables WHERE deployment = $1 AND name = $2`, deployment, name)
	if err != nil {
		return false, fmt.Errorf("rotate variable %s of %s: %w", name, deployment, err)
	}
	return tag.RowsAffected() > 0, nil
}

// ReserveAddresses makes ips (network → addresses) deployment's reserved addresses,
// replacing what it reserved before, unless another deployment holds some of them: then
// nothing changes and those are returned.
func (s *Store) ReserveAddresses(ctx context.Context, deployment string, ips map[string][]string) (map[string][]string, error) {
	var taken map[string][]string
	errTaken := errors.New("taken")
	reserve := func(tx pgx.Tx) error {
		taken = nil
		if _, err := tx.Exec(ctx, `DELETE FROM ip_reservations WHERE deployment = $1`, deployment); err != nil {
			return err
		}
		// One order for every caller, so two deployments claiming overlapping addresses
		// wait for each other instead of deadlocking.
		for _, network := range slices.Sorted(maps.Keys(ips)) {
			addrs := slices.Sorted(slices.Values(ips[network]))
			rows, err := tx.Query(ctx, `INSERT INTO ip_reservations (network, ip, deployment)
				SELECT $1, ip, $2 FROM unnest($3::text[]) AS ip
				ON CONFLICT (network, ip) DO NOTHING RETURNING ip`, network, deployment, addrs)
			if err != nil {
				return err
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if !slices.Contains(got, a) {
					if taken == nil {
						taken = map[string][]string{}
					}
					taken[network] = append(taken[network], a)
				}
			}
		}
		if taken != nil {
			return errTaken // roll back: a plan holds all its addresses or none
		}
		return nil
	}
	var err error
	for range 3 {
		if err = pgx.BeginFunc(ctx, s.pool, reserve); !retryable(err) {
			break
		}
	}
	if errors.Is(err, errTaken) {
		return taken, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reserve addresses of %s: %w", deployment, err)
	}
	return nil, nil
}

// retryable reports a transaction Postgres aborted to settle a conflict with another
// (deadlock, serialization): running it again is the cure.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// ReservedAddresses returns the addresses deployments other than except reserved, by
// network.
func (s *Store) ReservedAddresses(ctx context.Context, except string) (map[string][]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT network, ip FROM ip_reservations WHERE deployment <> $1 ORDER BY network, ip`, except)
	if err != nil {
		return nil, fmt.Errorf("list reserved addresses: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var network, ip string
		if err := rows.Scan(&network, &ip); err != nil {
			return nil, fmt.Errorf("list reserved addresses: %w", err)
		}
		out[network] = append(out[network], ip)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list reserved addresses: %w", err)
	}
	return out, nil
}

// SharedLinks returns the links deployment shares with other deployments, by name.
func (s *Store) SharedLinks(ctx context.Context, deployment string) ([]state.SharedLink, error) {
	rows, err := s.pool.Query(ctx, `SELECT deployment, name, type, data, updated_at FROM shared_links
		WHERE deployment = $1 ORDER BY name`, deployment)
	if err != nil {
		return nil, fmt.Errorf("list shared links of %s: %w", deployment, err)
	}
	out, err := pgx.CollectRows(rows, scanLink)
	if err != nil {
		return nil, fmt.Errorf("list shared links of %s: %w", deployment, err)
	}
	return out, nil
}

// scanLink reads a row of deployment, name, type, data, updated_at.
func scanLink(r pgx.CollectableRow) (state.SharedLink, error) {
	var l state.SharedLink
	var data []byte
	err := r.Scan(&l.Deployment, &l.Name, &l.Type, &data, &l.UpdatedAt)
	l.Data = data
	return l, err
}

// PutSharedLinks makes links deployment's shared links, replacing all it shared before:
// a link no longer shared is no longer offered.
func (s *Store) PutSharedLinks(ctx context.Context, deployment string, links []state.SharedLink) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM shared_links WHERE deployment = $1`, deployment); err != nil {
			return err
		}
		for _, l := range links {
			if l.Deployment != "" && l.Deployment != deployment {
				return fmt.Errorf("link %s belongs to deployment %s", l.Name, l.Deployment)
			}
			data := []byte(l.Data)
			if len(data) == 0 {
				data = []byte(`{}`)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO shared_links (deployment, name, type, data) VALUES ($1, $2, $3, $4)`,
				deployment, l.Name, l.Type, data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save shared links of %s: %w", deployment, err)
	}
	return nil
}

// ConsumedLinks returns consumer's copy of the links it consumes from other deployments,
// by provider deployment, each provider's sorted by name: the shared links of those
// deployments as the consumer's last successful deploy loaded them. UpdatedAt is when
// that deploy recorded them. A consumer with no copy gets an empty map.
func (s *Store) ConsumedLinks(ctx context.Context, consumer string) (map[string][]state.SharedLink, error) {
	rows, err := s.pool.Query(ctx, `SELECT deployment, name, type, data, updated_at FROM consumed_links
		WHERE consumer = $1 ORDER BY deployment, name`, consumer)
	if err != nil {
		return nil, fmt.Errorf("list links %s consumes: %w", consumer, err)
	}
	links, err := pgx.CollectRows(rows, scanLink)
	if err != nil {
		return nil, fmt.Errorf("list links %s consumes: %w", consumer, err)
	}
	out := map[string][]state.SharedLink{}
	for _, l := range links {
		out[l.Deployment] = append(out[l.Deployment], l)
	}
	return out, nil
}

// PutConsumedLinks makes links (provider deployment → its shared links) consumer's copy
// of the links it consumes, replacing the copy it had: a provider it no longer consumes
// from is forgotten. A provider with no links leaves no row, so it reads back absent.
func (s *Store) PutConsumedLinks(ctx context.Context, consumer string, links map[string][]state.SharedLink) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM consumed_links WHERE consumer = $1`, consumer); err != nil {
			return err
		}
		for _, dep := range slices.Sorted(maps.Keys(links)) {
			if dep == consumer {
				// Links within a deployment resolve from its own manifest, never a copy.
				return fmt.Errorf("deployment %s cannot consume its own shared links", dep)
			}
			for _, l := range links[dep] {
				if l.Deployment != "" && l.Deployment != dep {
					return fmt.Errorf("link %s of deployment %s given as %s's", l.Name, l.Deployment, dep)
				}
				data := []byte(l.Data)
				if len(data) == 0 {
					data = []byte(`{}`)
				}
				if _, err := tx.Exec(ctx, `INSERT INTO consumed_links (consumer, deployment, name, type, data) VALUES ($1, $2, $3, $4, $5)`,
					consumer, dep, l.Name, l.Type, data); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save links %s consumes: %w", consumer, err)
	}
	return nil
}

// DriftSeen returns the drift keys the deployment's last drift check acted on.
func (s *Store) DriftSeen(ctx context.Context, deployment string) ([]string, error) {
	var keys []string
	err := s.pool.QueryRow(ctx, `SELECT keys FROM drift_seen WHERE deployment = $1`, deployment).Scan(&keys)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read drift seen for %s: %w", deployment, err)
	}
	return keys, nil
}

// PutDriftSeen records the drift keys the deployment's last check acted on; none clears
// them.
func (s *Store) PutDriftSeen(ctx context.Context, deployment string, keys []string) error {
	var err error
	if len(keys) == 0 {
		_, err = s.pool.Exec(ctx, `DELETE FROM drift_seen WHERE deployment = $1`, deployment)
	} else {
		_, err = s.pool.Exec(ctx, `INSERT INTO drift_seen (deployment, keys) VALUES ($1, $2)
			ON CONFLICT (deployment) DO UPDATE SET keys = excluded.keys, updated_at = now()`, deployment, keys)
	}
	if err != nil {
		return fmt.Errorf("record drift seen for %s: %w", deployment, err)
	}
	return nil
}
