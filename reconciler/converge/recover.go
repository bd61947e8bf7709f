package converge

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/state"
)

// errInterrupted completes intents whose call was cut short and need nothing more: the
// next run redoes what they were part of.
var errInterrupted = errors.New("interrupted: the director stopped during the call; settled at restart")

// Recover settles every unfinished write-ahead intent, as a director does when it starts:
// a VM whose creation was cut short is adopted when its instance already names it and
// deleted otherwise; a deletion cut short is done again; a disk deletion likewise. An
// interrupted disk creation whose disk was never recorded cannot be found through the
// CPI contract (there is no list_disks) and is marked failed with a warning naming it.
//
// Intents of a task that has not ended are left alone: that task's worker (this director
// after a takeover, or another director that is alive) settles them when it runs, as Run
// and Act first settle their deployment's intents under the deployment lock. So Recover
// is safe to call at any director's start, also with several directors on one database.
func (e *Executor) Recover(ctx context.Context) error {
	return e.recover(ctx, "")
}

// recover settles the unfinished intents of one deployment, whose lock the caller holds,
// or with "" those of every task that has ended.
func (e *Executor) recover(ctx context.Context, deployment string) error {
	intents, err := e.cfg.Store.UnfinishedIntents(ctx)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	var vms []cpi.VMInfo
	listed := false
	live := map[int64]bool{}
	for _, it := range intents {
		if deployment != "" && it.Deployment != deployment {
			continue
		}
		if deployment == "" && it.TaskID != 0 {
			running, seen := live[it.TaskID]
			if !seen {
				t, err := e.cfg.Store.Task(ctx, it.TaskID)
				switch {
				case errors.Is(err, state.ErrNotFound):
				case err != nil:
					return fmt.Errorf("recover: %w", err)
				default:
					running = !state.TaskFinal(t.State)
				}
				live[it.TaskID] = running
			}
			if running {
				continue
			}
		}
		log := e.cfg.Log.With("intent", it.ID, "kind", it.Kind, "deployment", it.Deployment, "instance", it.InstanceID, "request_id", it.RequestID)
		var cid string
		var callErr error
		switch it.Kind {
		case state.IntentCreateVM:
			if !listed {
				vms, err = cpi.ListVMs(ctx, e.cfg.CPI)
				if err != nil && !errors.Is(err, cpi.ErrNotImplemented) {
					return fmt.Errorf("recover: list VMs: %w", err)
				}
				listed = true
			}
			cid, callErr, err = e.recoverCreateVM(ctx, it, vms)
			if err != nil {
				return fmt.Errorf("recover create_vm intent %d: %w", it.ID, err)
			}
		case state.IntentDeleteVM:
			if it.CloudCID != "" {
				if f, err := e.deleteVMNoIntent(ctx, it); err != nil {
					return fmt.Errorf("recover delete_vm intent %d: %w", it.ID, err)
				} else if f != nil {
					callErr = errors.New(f.Error)
				}
			}
			cid = it.CloudCID
		case state.IntentDeleteDisk:
			if it.CloudCID != "" {
				callErr = e.cfg.CPI.DeleteDisk(ctx, cpi.DiskCID(it.CloudCID))
				if errors.Is(callErr, cpi.ErrDiskNotFound) {
					callErr = nil
				}
				if callErr == nil {
					if err := e.cfg.Store.DeleteDisk(ctx, it.CloudCID); err != nil {
						return fmt.Errorf("recover delete_disk intent %d: %w", it.ID, err)
					}
				}
			}
			cid = it.CloudCID
		case state.IntentCreateDisk:
			log.Warn("a disk creation was interrupted; if the cloud made the disk it is not recorded and must be found by its metadata (bosun_request_id)")
			callErr = errInterrupted
		default:
			// attach and detach are redone by the next run as needed.
			callErr = errInterrupted
		}
		if err := e.cfg.Store.CompleteIntent(ctx, it.ID, cid, callErr); err != nil {
			return fmt.Errorf("recover: %w", err)
		}
		log.Info("settled unfinished intent", "cloud_cid", cid, "error", callErr)
	}
	return nil
}

// recoverCreateVM finds the VM an interrupted create_vm made, by the agent id the intent's
// request id is, or by the request id on its metadata, and adopts or deletes it.
func (e *Executor) recoverCreateVM(ctx context.Context, it state.Intent, vms []cpi.VMInfo) (string, error, error) {
	var found []cpi.VMCID
	for _, vm := range vms {
		if vm.AgentID == it.RequestID || vm.Metadata[metadataRequestKey] == it.RequestID {
			found = append(found, vm.CID)
		}
	}
	if it.CloudCID != "" && len(found) == 0 {
		found = append(found, cpi.VMCID(it.CloudCID))
	}
	// A VM the run recorded before the director stopped is known by its row too, which
	// matters on CPIs that cannot list VMs (most BOSH CPIs): a create-swap-delete's new VM
	// stays unadopted while its agent boots and the old VM stops.
	rows, err := e.cfg.Store.VMs(ctx, it.Deployment)
	if err != nil {
		return "", nil, err
	}
	for _, row := range rows {
		if row.AgentID == it.RequestID && !slices.Contains(found, cpi.VMCID(row.CID)) {
			found = append(found, cpi.VMCID(row.CID))
		}
	}
	if len(found) == 0 {
		return "", errInterrupted, nil
	}
	owner := ""
	if it.InstanceID != "" {
		is, err := e.cfg.Store.Instances(ctx, it.Deployment)
		if err != nil {
			return "", nil, err
		}
		for _, i := range is {
			if i.ID == it.InstanceID {
				owner = i.VMCID
			}
		}
	}
	adopted := ""
	for _, cid := range found {
		if string(cid) == owner {
			// The instance already names it: the run got as far as recording it.
			adopted = owner
			continue
		}
		e.cfg.Log.Info("deleting a VM whose creation was interrupted", "vm_cid", cid, "instance", it.InstanceID)
		if err := e.cfg.CPI.DeleteVM(ctx, cid); err != nil && !errors.Is(err, cpi.ErrVMNotFound) {
			return "", nil, fmt.Errorf("delete VM %s: %w", cid, err)
		}
		if err := e.cfg.Store.DeleteVM(ctx, string(cid)); err != nil {
			return "", nil, err
		}
	}
	if adopted != "" {
		rows, err := e.cfg.Store.VMs(ctx, it.Deployment)
		if err != nil {
			return "", nil, err
		}
		if !slices.ContainsFunc(rows, func(v state.VM) bool { return v.CID == adopted }) {
			if err := e.cfg.Store.PutVM(ctx, state.VM{CID: adopted, Deployment: it.Deployment, InstanceID: it.InstanceID,
				AgentID: it.RequestID, CPI: e.cfg.CPIName}); err != nil {
				return "", nil, err
			}
		}
		return adopted, nil, nil
	}
	return "", errInterrupted, nil
}

// deleteVMNoIntent repeats an interrupted delete_vm and forgets the VM.
func (e *Executor) deleteVMNoIntent(ctx context.Context, it state.Intent) (*Failure, error) {
	err := e.cfg.CPI.DeleteVM(ctx, cpi.VMCID(it.CloudCID))
	if err != nil && !errors.Is(err, cpi.ErrVMNotFound) {
		return &Failure{Error: err.Error()}, nil
	}
	if err := e.cfg.Store.DeleteVM(ctx, it.CloudCID); err != nil {
		return nil, err
	}
	if it.InstanceID == "" {
		return nil, nil
	}
	is, err := e.cfg.Store.Instances(ctx, it.Deployment)
	if err != nil {
		return nil, err
	}
	for _, i := range is {
		if i.ID == it.InstanceID && i.VMCID == it.CloudCID {
			i.VMCID, i.AgentID, i.IPs = "", "", nil
			if _, err := e.cfg.Store.PutInstance(ctx, i); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

// recordIntent writes a pending intent unless ctx has ended. The write itself is not
// cancelled half-way: a cancelled insert may still commit on the server after the call
// returned, leaving an intent nobody saw recorded.
func (e *Executor) recordIntent(ctx context.Context, it state.Intent) (state.Intent, error) {
	if err := ctx.Err(); err != nil {
		return state.Intent{}, err
	}
	return e.cfg.Store.RecordIntent(context.WithoutCancel(ctx), it)
}
