package converge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/state"
)

// blobstoreHash names blobstore settings, so a record can say which ones an agent holds
// without keeping them (they carry the CA); "" for none.
func blobstoreHash(b cpi.Blobstore) string {
	if b.Provider == "" && len(b.Options) == 0 {
		return ""
	}
	j, err := json.Marshal(b) // map keys sorted: the same settings hash the same
	if err != nil {
		return ""
	}
	h := sha256.Sum256(j)
	return hex.EncodeToString(h[:])
}

// syncBlobstore sends the instance's agent the director's current blobstore settings
// with update_settings (BOSH's blobstores list) when it holds others — a blobstore URL
// or CA changed since its VM was made — so the agent fetches the blobs of the apply
// that follows, as BOSH's director sends update_settings before apply. Only agents that
// reach the blobstore through signed URLs (a Signer is set: the cloud CPIs) are told:
// the local CPI's agents read a path, which does not change under them.
func (in *inst) syncBlobstore(ctx context.Context) (*Failure, error) {
	e := in.e()
	if e.cfg.Signer == nil || in.cur.AgentID == "" {
		return nil, nil
	}
	s, err := e.cfg.Settings(in.cur.AgentID)
	if err != nil {
		return nil, fmt.Errorf("agent settings for %s: %w", instanceName(in.cur), err)
	}
	h := blobstoreHash(s.Blobstore)
	if h == "" || h == in.blobHash {
		return nil, nil
	}
	if _, err := e.cfg.Agents.Run(ctx, in.cur.AgentID, protocol.MethodUpdateSettings,
		map[string]any{"blobstores": []cpi.Blobstore{s.Blobstore}}); err != nil {
		return failure(ctx, "update_settings", err)
	}
	e.cfg.Log.Info("agent given the director's blobstore settings", "instance", instanceName(in.cur), "agent_id", in.cur.AgentID)
	in.blobHash = h
	return nil, nil
}

// refreshKept brings the blobstore settings of the instances the plan keeps as they are
// up to date: a director whose blobstore moved or got a new CA must tell every running
// agent, not only those a deploy changes, or their next apply could not fetch a blob.
// An agent that does not answer or refuses is logged and left for the next deploy: the
// instance itself is as wanted.
func (r *run) refreshKept(ctx context.Context) error {
	if r.e.cfg.Signer == nil {
		return nil
	}
	for _, g := range r.t.Plan.Groups {
		for _, ip := range g.Instances {
			if ip.Action == plan.Delete || needsWork(ip) {
				continue
			}
			cur, ok := r.instanceRow(ip.ID)
			rec := r.record(ctx, ip.ID)
			if !ok || rec == nil || cur.VMCID == "" || cur.AgentID == "" || cur.State == state.InstanceDetached {
				continue
			}
			in := &inst{r: r, cur: cur, blobHash: rec.BlobstoreHash}
			ictx := cpi.WithInstance(ctx, instanceName(cur))
			if !in.responsive(ictx) {
				r.e.cfg.Log.Warn("agent not answering; its blobstore settings are brought up to date at the next deploy", "instance", instanceName(cur))
				continue
			}
			f, err := in.syncBlobstore(ictx)
			if err != nil {
				return err
			}
			if f != nil {
				r.e.cfg.Log.Warn("agent's blobstore settings not updated; tried again at the next deploy", "instance", instanceName(cur), "error", f.Error)
				continue
			}
			if in.blobHash == rec.BlobstoreHash {
				continue
			}
			next := *rec
			next.BlobstoreHash = in.blobHash
			b, _ := json.Marshal(next)
			if err := r.e.cfg.Store.SetApplied(ctx, state.Applied{InstanceID: cur.ID, Record: b}); err != nil {
				return err
			}
			r.mu.Lock()
			r.records[cur.ID] = &next
			r.mu.Unlock()
		}
	}
	return nil
}
