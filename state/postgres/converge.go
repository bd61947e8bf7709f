package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/bosun-gitops/bosun/state"
	"github.com/jackc/pgx/v5"
)

// EnsureDeployment creates deployment name when it does not exist and leaves it alone
// when it does: converge records instances under a deployment the reconciler may not have
// saved yet.
func (s *Store) EnsureDeployment(ctx context.Context, name string) error {
	if _, err := s.pool.Exec(ctx, "INSERT INTO deployments (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", name); err != nil {
		return fmt.Errorf("ensure deployment %s: %w", name, err)
	}
	return nil
}

func jsonOrNil(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return []byte(b)
}

// SetApplied records what converge applied to instance a.InstanceID; an empty field
// leaves the stored one as it was.
func (s *Store) SetApplied(ctx context.Context, a state.Applied) error {
	tag, err := s.pool.Exec(ctx, `UPDATE instances SET applied = coalesce($2::jsonb, applied),
		apply_record = coalesce($3::jsonb, apply_record), updated_at = now() WHERE id = $1`,
		a.InstanceID, jsonOrNil(a.Fingerprint), jsonOrNil(a.Record))
	if err != nil {
		return fmt.Errorf("record applied state of instance %s: %w", a.InstanceID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("record applied state of instance %s: %w", a.InstanceID, ErrNotFound)
	}
	return nil
}

// AppliedByInstance returns what converge last applied to each of deployment's
// instances, by instance id. Instances never applied are absent.
func (s *Store) AppliedByInstance(ctx context.Context, deployment string) (map[string]state.Applied, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::text, applied, apply_record FROM instances
		WHERE deployment = $1 AND (applied IS NOT NULL OR apply_record IS NOT NULL)`, deployment)
	if err != nil {
		return nil, fmt.Errorf("list applied state of %s: %w", deployment, err)
	}
	out := map[string]state.Applied{}
	defer rows.Close()
	for rows.Next() {
		var a state.Applied
		var fp, rec []byte
		if err := rows.Scan(&a.InstanceID, &fp, &rec); err != nil {
			return nil, fmt.Errorf("list applied state of %s: %w", deployment, err)
		}
		a.Fingerprint, a.Record = fp, rec
		out[a.InstanceID] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list applied state of %s: %w", deployment, err)
	}
	return out, nil
}

// StemcellCID returns the cid under which stemcell name/version was uploaded to the CPI
// named cpiName, or ErrNotFound.
func (s *Store) StemcellCID(ctx context.Context, cpiName, name, version string) (string, error) {
	var cid string
	err := s.pool.QueryRow(ctx, "SELECT cid FROM stemcell_uploads WHERE cpi = $1 AND name = $2 AND version = $3", cpiName, name, version).Scan(&cid)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("stemcell %s/%s on cpi %q: %w", name, version, cpiName, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("stemcell %s/%s on cpi %q: %w", name, version, cpiName, err)
	}
	return cid, nil
}

// PutStemcell records an upload and returns the cid that stands: when another director
// recorded the same stemcell first, its cid wins and the caller deletes its own.
func (s *Store) PutStemcell(ctx context.Context, cpiName, name, version, cid string) (string, error) {
	var got string
	err := s.pool.QueryRow(ctx, `INSERT INTO stemcell_uploads (cpi, name, version, cid) VALUES ($1, $2, $3, $4)
		ON CONFLICT (cpi, name, version) DO UPDATE SET cpi = excluded.cpi RETURNING cid`, cpiName, name, version, cid).Scan(&got)
	if err != nil {
		return "", fmt.Errorf("record stemcell %s/%s on cpi %q: %w", name, version, cpiName, err)
	}
	return got, nil
}

// CompiledPackage returns the compiled package with key, or ErrNotFound.
func (s *Store) CompiledPackage(ctx context.Context, key string) (state.CompiledPackage, error) {
	var p state.CompiledPackage
	err := s.pool.QueryRow(ctx, "SELECT key, name, version, stemcell, blob FROM compiled_packages WHERE key = $1", key).
		Scan(&p.Key, &p.Name, &p.Version, &p.Stemcell, &p.Blob)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("compiled package %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("compiled package %s: %w", key, err)
	}
	return p, nil
}

// PutCompiledPackage records (or replaces) a compiled package.
func (s *Store) PutCompiledPackage(ctx context.Context, p state.CompiledPackage) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO compiled_packages (key, name, version, stemcell, blob) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (key) DO UPDATE SET blob = $5, created_at = now()`, p.Key, p.Name, p.Version, p.Stemcell, p.Blob)
	if err != nil {
		return fmt.Errorf("record compiled package %s/%s: %w", p.Name, p.Version, err)
	}
	return nil
}
