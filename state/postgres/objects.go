package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/bosun-gitops/bosun/state"
	"github.com/jackc/pgx/v5"
)

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// optTime is nil for the zero time, so that a query can tell "no bound" from a bound.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// PutDeployment creates or updates deployment d.
func (s *Store) PutDeployment(ctx context.Context, d state.Deployment) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO deployments (name, revision, manifest) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET revision = $2, manifest = $3, updated_at = now()`, d.Name, d.Revision, d.Manifest)
	if err != nil {
		return fmt.Errorf("save deployment %s: %w", d.Name, err)
	}
	return nil
}

const deploymentColumns = "name, revision, manifest, created_at, updated_at"

func scanDeployment(r pgx.Row) (state.Deployment, error) {
	var d state.Deployment
	err := r.Scan(&d.Name, &d.Revision, &d.Manifest, &d.CreatedAt, &d.UpdatedAt)
	return d, err
}

// Deployment returns deployment name.
func (s *Store) Deployment(ctx context.Context, name string) (state.Deployment, error) {
	d, err := scanDeployment(s.pool.QueryRow(ctx, "SELECT "+deploymentColumns+" FROM deployments WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return d, fmt.Errorf("deployment %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return d, fmt.Errorf("deployment %s: %w", name, err)
	}
	return d, nil
}

// Deployments lists every deployment by name.
func (s *Store) Deployments(ctx context.Context) ([]state.Deployment, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+deploymentColumns+" FROM deployments ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Deployment, error) { return scanDeployment(r) })
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return ds, nil
}

// DeleteDeployment removes deployment name and its instances. VMs and disks stay recorded
// until deleted from the cloud and from here.
func (s *Store) DeleteDeployment(ctx context.Context, name string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM deployments WHERE name = $1", name); err != nil {
		return fmt.Errorf("delete deployment %s: %w", name, err)
	}
	return nil
}

const instanceColumns = "id, deployment, grp, idx, az, state, bootstrap, vm_cid, ips, agent_id, disk_cid, created_at, updated_at"

func scanInstance(r pgx.Row) (state.Instance, error) {
	var i state.Instance
	err := r.Scan(&i.ID, &i.Deployment, &i.Group, &i.Index, &i.AZ, &i.State, &i.Bootstrap, &i.VMCID, &i.IPs, &i.AgentID, &i.DiskCID, &i.CreatedAt, &i.UpdatedAt)
	i.IPs = nilIfEmpty(i.IPs)
	return i, err
}

// PutInstance creates instance i (assigning its id when empty) or updates it by id, and
// returns it as stored. Its deployment must exist.
func (s *Store) PutInstance(ctx context.Context, i state.Instance) (state.Instance, error) {
	if i.State == "" {
		i.State = state.InstanceStarted
	}
	var id any
	if i.ID != "" {
		id = i.ID
	}
	out, err := scanInstance(s.pool.QueryRow(ctx, `INSERT INTO instances
		(id, deployment, grp, idx, az, state, bootstrap, vm_cid, ips, agent_id, disk_cid)
		VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (id) DO UPDATE SET deployment = $2, grp = $3, idx = $4, az = $5, state = $6, bootstrap = $7,
			vm_cid = $8, ips = $9, agent_id = $10, disk_cid = $11, updated_at = now()
		RETURNING `+instanceColumns,
		id, i.Deployment, i.Group, i.Index, i.AZ, i.State, i.Bootstrap, i.VMCID, nonNil(i.IPs), i.AgentID, i.DiskCID))
	if err != nil {
		return state.Instance{}, fmt.Errorf("save instance %s/%d of %s: %w", i.Group, i.Index, i.Deployment, err)
	}
	return out, nil
}

// Instances lists deployment's instances by group and index.
func (s *Store) Instances(ctx context.Context, deployment string) ([]state.Instance, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+instanceColumns+" FROM instances WHERE deployment = $1 ORDER BY grp, idx", deployment)
	if err != nil {
		return nil, fmt.Errorf("list instances of %s: %w", deployment, err)
	}
	is, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Instance, error) { return scanInstance(r) })
	if err != nil {
		return nil, fmt.Errorf("list instances of %s: %w", deployment, err)
	}
	return is, nil
}

// VMAddresses returns every address a recorded VM holds, in any deployment, once each.
func (s *Store) VMAddresses(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ip FROM vms, unnest(ips) AS ip ORDER BY ip`)
	if err != nil {
		return nil, fmt.Errorf("list VM addresses: %w", err)
	}
	ips, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list VM addresses: %w", err)
	}
	return ips, nil
}

// DeleteInstance removes instance id.
func (s *Store) DeleteInstance(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM instances WHERE id = $1", id); err != nil {
		return fmt.Errorf("delete instance %s: %w", id, err)
	}
	return nil
}

// PutVM records vm (by cid).
func (s *Store) PutVM(ctx context.Context, vm state.VM) error {
	var inst any
	if vm.InstanceID != "" {
		inst = vm.InstanceID
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO vms (cid, deployment, instance_id, agent_id, ips, cpi, stemcell, metadata)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (cid) DO UPDATE SET deployment = $2, instance_id = $3, agent_id = $4, ips = $5, cpi = $6, stemcell = $7, metadata = $8`,
		vm.CID, vm.Deployment, inst, vm.AgentID, nonNil(vm.IPs), vm.CPI, vm.Stemcell, vm.Metadata)
	if err != nil {
		return fmt.Errorf("save vm %s: %w", vm.CID, err)
	}
	return nil
}

// VMs lists deployment's VMs.
func (s *Store) VMs(ctx context.Context, deployment string) ([]state.VM, error) {
	rows, err := s.pool.Query(ctx, `SELECT cid, deployment, coalesce(instance_id::text, ''), agent_id, ips, cpi, stemcell, metadata, created_at
		FROM vms WHERE deployment = $1 ORDER BY cid`, deployment)
	if err != nil {
		return nil, fmt.Errorf("list vms of %s: %w", deployment, err)
	}
	vms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.VM, error) {
		var v state.VM
		err := r.Scan(&v.CID, &v.Deployment, &v.InstanceID, &v.AgentID, &v.IPs, &v.CPI, &v.Stemcell, &v.Metadata, &v.CreatedAt)
		v.IPs = nilIfEmpty(v.IPs)
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("list vms of %s: %w", deployment, err)
	}
	return vms, nil
}

// DeleteVM forgets VM cid.
func (s *Store) DeleteVM(ctx context.Context, cid string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM vms WHERE cid = $1", cid); err != nil {
		return fmt.Errorf("delete vm %s: %w", cid, err)
	}
	return nil
}

// PutDisk records disk d (by cid).
func (s *Store) PutDisk(ctx context.Context, d state.Disk) error {
	var inst any
	if d.InstanceID != "" {
		inst = d.InstanceID
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO disks (cid, deployment, instance_id, size_mb, cpi, active)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (cid) DO UPDATE SET deployment = $2, instance_id = $3, size_mb = $4, cpi = $5, active = $6`,
		d.CID, d.Deployment, inst, d.SizeMB, d.CPI, d.Active)
	if err != nil {
		return fmt.Errorf("save disk %s: %w", d.CID, err)
	}
	return nil
}

// Disks lists deployment's disks.
func (s *Store) Disks(ctx context.Context, deployment string) ([]state.Disk, error) {
	rows, err := s.pool.Query(ctx, `SELECT cid, deployment, coalesce(instance_id::text, ''), size_mb, cpi, active, created_at
		FROM disks WHERE deployment = $1 ORDER BY cid`, deployment)
	if err != nil {
		return nil, fmt.Errorf("list disks of %s: %w", deployment, err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Disk, error) {
		var d state.Disk
		err := r.Scan(&d.CID, &d.Deployment, &d.InstanceID, &d.SizeMB, &d.CPI, &d.Active, &d.CreatedAt)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("list disks of %s: %w", deployment, err)
	}
	return ds, nil
}

// DeleteDisk forgets disk cid.
func (s *Store) DeleteDisk(ctx context.Context, cid string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM disks WHERE cid = $1", cid); err != nil {
		return fmt.Errorf("delete disk %s: %w", cid, err)
	}
	return nil
}

// RecordRevision stores the verdict on a source commit (replacing an earlier one for it).
func (s *Store) RecordRevision(ctx context.Context, r state.Revision) error {
	var task any
	if r.TaskID != 0 {
		task = r.TaskID
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO revisions (sha, author, message, verdict, policy_messages, task_id)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (sha) DO UPDATE SET author = $2, message = $3, verdict = $4, policy_messages = $5, task_id = $6`,
		r.SHA, r.Author, r.Message, r.Verdict, nonNil(r.PolicyMessages), task)
	if err != nil {
		return fmt.Errorf("record revision %s: %w", r.SHA, err)
	}
	return nil
}

// AcceptRevision records revision r as accepted and enqueues task for it in one
// transaction, so an accepted commit always has its task and a task always its commit.
// It returns the task as stored; r.TaskID is set to it.
func (s *Store) AcceptRevision(ctx context.Context, r state.Revision, task state.Task) (state.Task, error) {
	if task.Type == "" {
		return state.Task{}, fmt.Errorf("accept revision %s: task type is empty", r.SHA)
	}
	var params any
	if len(task.Params) > 0 {
		params = []byte(task.Params)
	}
	var out state.Task
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		out, err = scanTask(tx.QueryRow(ctx, `INSERT INTO tasks (type, deployment, description, params, username)
			VALUES ($1, $2, $3, $4, $5) RETURNING `+taskColumns, task.Type, task.Deployment, task.Description, params, task.User))
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO revisions (sha, author, message, verdict, policy_messages, task_id)
			VALUES ($1, $2, $3, 'accepted', $4, $5)
			ON CONFLICT (sha) DO UPDATE SET author = $2, message = $3, verdict = 'accepted', policy_messages = $4, task_id = $5`,
			r.SHA, r.Author, r.Message, nonNil(r.PolicyMessages), out.ID)
		return err
	})
	if err != nil {
		return state.Task{}, fmt.Errorf("accept revision %s: %w", r.SHA, err)
	}
	return out, nil
}

const revisionColumns = "sha, author, message, received, verdict, policy_messages, coalesce(task_id, 0)"

func scanRevision(r pgx.Row) (state.Revision, error) {
	var v state.Revision
	err := r.Scan(&v.SHA, &v.Author, &v.Message, &v.Received, &v.Verdict, &v.PolicyMessages, &v.TaskID)
	v.PolicyMessages = nilIfEmpty(v.PolicyMessages)
	return v, err
}

// Revision returns the verdict on commit sha.
func (s *Store) Revision(ctx context.Context, sha string) (state.Revision, error) {
	v, err := scanRevision(s.pool.QueryRow(ctx, "SELECT "+revisionColumns+" FROM revisions WHERE sha = $1", sha))
	if errors.Is(err, pgx.ErrNoRows) {
		return v, fmt.Errorf("revision %s: %w", sha, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("revision %s: %w", sha, err)
	}
	return v, nil
}

// LastAccepted returns the most recently received accepted revision: the one whose
// policies judge the next commit. ErrNotFound when none was accepted yet.
func (s *Store) LastAccepted(ctx context.Context) (state.Revision, error) {
	v, err := scanRevision(s.pool.QueryRow(ctx, "SELECT "+revisionColumns+` FROM revisions
		WHERE verdict = 'accepted' ORDER BY received DESC LIMIT 1`))
	if errors.Is(err, pgx.ErrNoRows) {
		return v, fmt.Errorf("last accepted revision: %w", ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("last accepted revision: %w", err)
	}
	return v, nil
}

// Revisions lists the latest limit revisions, newest first.
func (s *Store) Revisions(ctx context.Context, limit int) ([]state.Revision, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.pool.Query(ctx, "SELECT "+revisionColumns+" FROM revisions ORDER BY received DESC LIMIT $1", limit)
	if err != nil {
		return nil, fmt.Errorf("list revisions: %w", err)
	}
	vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Revision, error) { return scanRevision(r) })
	if err != nil {
		return nil, fmt.Errorf("list revisions: %w", err)
	}
	return vs, nil
}

// AddEvent appends e to the audit trail and returns its id.
func (s *Store) AddEvent(ctx context.Context, e state.Event) (int64, error) {
	var task any
	if e.TaskID != 0 {
		task = e.TaskID
	}
	var ctxJSON []byte
	if len(e.Context) > 0 {
		var err error
		if ctxJSON, err = json.Marshal(e.Context); err != nil {
			return 0, fmt.Errorf("add event %s %s: context: %w", e.Action, e.ObjectType, err)
		}
	}
	var id int64
	err := s.pool.QueryRow(ctx, `INSERT INTO events (username, action, object_type, object_name, deployment, instance, task_id, error, context)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id`,
		e.User, e.Action, e.ObjectType, e.ObjectName, e.Deployment, e.Instance, task, e.Error, ctxJSON).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("add event %s %s: %w", e.Action, e.ObjectType, err)
	}
	return id, nil
}

// EventFilter narrows Events; it is state's, so callers need not import this package.
type EventFilter = state.EventFilter

// Events lists audit events, newest first.
func (s *Store) Events(ctx context.Context, f EventFilter) ([]state.Event, error) {
	if f.Limit <= 0 {
		f.Limit = 200
	}
	rows, err := s.pool.Query(ctx, `SELECT id, time, username, action, object_type, object_name, deployment, instance,
			coalesce(task_id, 0), error, context
		FROM events WHERE ($1 = '' OR deployment = $1) AND ($2 = 0 OR task_id = $2) AND ($3 = 0 OR id < $3)
		  AND ($5::text[] IS NULL OR deployment = ANY($5)) AND ($6 = '' OR instance = $6)
		  AND ($7::timestamptz IS NULL OR time >= $7) AND ($8::timestamptz IS NULL OR time < $8)
		ORDER BY id DESC LIMIT $4`, f.Deployment, f.TaskID, f.BeforeID, f.Limit, f.Deployments, f.Instance, optTime(f.Since), optTime(f.Until))
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	es, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Event, error) {
		var e state.Event
		err := r.Scan(&e.ID, &e.Time, &e.User, &e.Action, &e.ObjectType, &e.ObjectName, &e.Deployment, &e.Instance, &e.TaskID, &e.Error, &e.Context)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list events: %w", err)
	}
	return es, nil
}

const intentColumns = "id, coalesce(task_id, 0), kind, deployment, instance_id, request_id, state, cloud_cid, error, created_at, updated_at, done_at"

func scanIntent(r pgx.Row) (state.Intent, error) {
	var i state.Intent
	err := r.Scan(&i.ID, &i.TaskID, &i.Kind, &i.Deployment, &i.InstanceID, &i.RequestID, &i.State, &i.CloudCID, &i.Error, &i.CreatedAt, &i.UpdatedAt, &i.DoneAt)
	return i, err
}

// RecordIntent writes a pending intent before its cloud call and returns it with its id.
// A request id recorded before is an error: each cloud call gets its own.
func (s *Store) RecordIntent(ctx context.Context, i state.Intent) (state.Intent, error) {
	if i.RequestID == "" || i.Kind == "" {
		return state.Intent{}, errors.New("record intent: kind and request id are required")
	}
	var task any
	if i.TaskID != 0 {
		task = i.TaskID
	}
	out, err := scanIntent(s.pool.QueryRow(ctx, `INSERT INTO intents (task_id, kind, deployment, instance_id, request_id, cloud_cid)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+intentColumns, task, i.Kind, i.Deployment, i.InstanceID, i.RequestID, i.CloudCID))
	if err != nil {
		return state.Intent{}, fmt.Errorf("record %s intent %s: %w", i.Kind, i.RequestID, err)
	}
	return out, nil
}

// CompleteIntent records the outcome of intent id's cloud call: done with the cloud's cid,
// or failed with callErr's message.
func (s *Store) CompleteIntent(ctx context.Context, id int64, cloudCID string, callErr error) error {
	st, msg := state.IntentDone, ""
	if callErr != nil {
		st, msg = state.IntentFailed, callErr.Error()
	}
	tag, err := s.pool.Exec(ctx, `UPDATE intents SET state = $2, cloud_cid = CASE WHEN $3 = '' THEN cloud_cid ELSE $3 END,
		error = $4, updated_at = now(), done_at = now() WHERE id = $1`, id, st, cloudCID, msg)
	if err != nil {
		return fmt.Errorf("complete intent %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("complete intent %d: %w", id, ErrNotFound)
	}
	return nil
}

// UnfinishedIntents lists pending intents, oldest first: the cloud calls a director that
// stopped mid-flight may have made without recording their result.
func (s *Store) UnfinishedIntents(ctx context.Context) ([]state.Intent, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+intentColumns+" FROM intents WHERE state = 'pending' ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list unfinished intents: %w", err)
	}
	is, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (state.Intent, error) { return scanIntent(r) })
	if err != nil {
		return nil, fmt.Errorf("list unfinished intents: %w", err)
	}
	return is, nil
}
