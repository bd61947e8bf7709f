package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/bosun-gitops/bosun/state"
)

// Cloud-check problem types (bosh-spec §9.5).
const (
	ProblemMissingVM         = "missing_vm"
	ProblemUnresponsiveAgent = "unresponsive_agent"
	ProblemMissingDisk       = "missing_disk"
	ProblemMountInfoMismatch = "mount_info_mismatch"
)

// Resolutions.
const (
	ResolutionIgnore              = "ignore"
	ResolutionRecreateVM          = "recreate_vm"
	ResolutionDeleteVMReference   = "delete_vm_reference"
	ResolutionDeleteDiskReference = "delete_disk_reference"
)

// Problem is one thing the scan found wrong with an instance.
type Problem struct {
	// ID is stable across scans while the problem lasts: type/instance id.
	ID          string `json:"id"`
	Type        string `json:"type"`
	Deployment  string `json:"deployment"`
	Instance    string `json:"instance"` // group/id
	InstanceID  string `json:"instance_id"`
	VMCID       string `json:"vm_cid,omitempty"`
	DiskCID     string `json:"disk_cid,omitempty"`
	Description string `json:"description"`
	// Resolutions are the choices, Default the one --auto applies.
	Resolutions []string `json:"resolutions"`
	Default     string   `json:"default"`
}

// ReasonVMMissing starts the ResurrectParams.Reason of a recreate of VMs the cloud no
// longer has (the reconciler then creates without deleting first).
const ReasonVMMissing = "vm missing"

// ErrUnsupported is what a Cloud returns when its CPI cannot answer a question.
var ErrUnsupported = errors.New("not supported by the CPI")

// Cloud is what the scan asks the clouds. cpi names the CPI that made the object (the
// vms/disks row's cpi; empty for the default one).
type Cloud interface {
	HasVM(ctx context.Context, cpi, vmCID string) (bool, error)
	HasDisk(ctx context.Context, cpi, diskCID string) (bool, error)
	// AttachedDisks lists the persistent disks attached to a VM, or ErrUnsupported.
	AttachedDisks(ctx context.Context, cpi, vmCID string) ([]string, error)
}

// AgentChecker says whether an agent answers: the Monitor (from heartbeats) or a ping.
type AgentChecker interface {
	Responsive(ctx context.Context, agentID string) (bool, error)
}

// ScanStore is what the scan reads and its resolutions change; state/postgres.Store
// satisfies it.
type ScanStore interface {
	Deployments(ctx context.Context) ([]state.Deployment, error)
	Instances(ctx context.Context, deployment string) ([]state.Instance, error)
	VMs(ctx context.Context, deployment string) ([]state.VM, error)
	Disks(ctx context.Context, deployment string) ([]state.Disk, error)
	Locks(ctx context.Context) ([]state.Lock, error)
	PutInstance(ctx context.Context, i state.Instance) (state.Instance, error)
	DeleteVM(ctx context.Context, cid string) error
	DeleteDisk(ctx context.Context, cid string) error
	Enqueue(ctx context.Context, t state.Task) (state.Task, error)
}

// Scanner is `bosun cck` as a library: Scan finds problems, Resolve applies chosen
// resolutions — recreating through the task queue, so the recreate converges like any
// deploy, under the deployment lock.
type Scanner struct {
	Store  ScanStore
	Cloud  Cloud
	Agents AgentChecker
	Log    *slog.Logger
	// Parallel bounds concurrent cloud and agent checks (default 8).
	Parallel int
}

// Scan checks deployment's instances ("" for every deployment). It returns the problems
// found, and an error joining the checks that could not be made (their instances are
// not reported as problems: an unreachable cloud is not a missing VM).
func (s *Scanner) Scan(ctx context.Context, deployment string) ([]Problem, error) {
	deps := []string{deployment}
	if deployment == "" {
		ds, err := s.Store.Deployments(ctx)
		if err != nil {
			return nil, fmt.Errorf("cloud check: %w", err)
		}
		deps = deps[:0]
		for _, d := range ds {
			deps = append(deps, d.Name)
		}
	}
	var problems []Problem
	var errs []error
	for _, d := range deps {
		ps, err := s.scanDeployment(ctx, d)
		problems = append(problems, ps...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	slices.SortFunc(problems, func(a, b Problem) int {
		return strings.Compare(a.Deployment+"\x00"+a.Instance+"\x00"+a.Type, b.Deployment+"\x00"+b.Instance+"\x00"+b.Type)
	})
	return problems, errors.Join(errs...)
}

func (s *Scanner) scanDeployment(ctx context.Context, dep string) ([]Problem, error) {
	insts, err := s.Store.Instances(ctx, dep)
	if err != nil {
		return nil, fmt.Errorf("cloud check of %s: %w", dep, err)
	}
	vms, err := s.Store.VMs(ctx, dep)
	if err != nil {
		return nil, fmt.Errorf("cloud check of %s: %w", dep, err)
	}
	disks, err := s.Store.Disks(ctx, dep)
	if err != nil {
		return nil, fmt.Errorf("cloud check of %s: %w", dep, err)
	}
	vmCPI := map[string]string{}
	for _, v := range vms {
		vmCPI[v.CID] = v.CPI
	}
	diskCPI := map[string]string{}
	for _, d := range disks {
		diskCPI[d.CID] = d.CPI
	}
	par := s.Parallel
	if par <= 0 {
		par = 8
	}
	sem := make(chan struct{}, par)
	var (
		mu       sync.Mutex
		problems []Problem
		errs     []error
		wg       sync.WaitGroup
	)
	for _, inst := range insts {
		if inst.State == state.InstanceDetached || inst.VMCID == "" && inst.DiskCID == "" {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ps, err := s.check(ctx, inst, vmCPI[inst.VMCID], diskCPI[inst.DiskCID])
			mu.Lock()
			problems = append(problems, ps...)
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return problems, errors.Join(errs...)
}

func (s *Scanner) check(ctx context.Context, inst state.Instance, vmCPI, diskCPI string) ([]Problem, error) {
	name := inst.Group + "/" + inst.ID
	problem := func(typ, desc string, resolutions ...string) Problem {
		return Problem{
			ID: typ + "/" + inst.ID, Type: typ, Deployment: inst.Deployment, Instance: name, InstanceID: inst.ID,
			VMCID: inst.VMCID, DiskCID: inst.DiskCID, Description: desc, Resolutions: resolutions, Default: resolutions[0],
		}
	}
	var ps []Problem
	vmExists := false
	if inst.VMCID != "" {
		has, err := s.Cloud.HasVM(ctx, vmCPI, inst.VMCID)
		if err != nil {
			return nil, fmt.Errorf("cloud check of %s: has_vm %s: %w", name, inst.VMCID, err)
		}
		if !has {
			// BOSH's auto resolution for a missing VM is to recreate it.
			ps = append(ps, problem(ProblemMissingVM, fmt.Sprintf("VM %s of %s is missing from the cloud", inst.VMCID, name),
				ResolutionRecreateVM, ResolutionIgnore, ResolutionDeleteVMReference))
		} else {
			vmExists = true
			if inst.AgentID != "" && s.Agents != nil {
				ok, err := s.Agents.Responsive(ctx, inst.AgentID)
				if err != nil {
					return ps, fmt.Errorf("cloud check of %s: agent %s: %w", name, inst.AgentID, err)
				}
				if !ok {
					ps = append(ps, problem(ProblemUnresponsiveAgent, fmt.Sprintf("the agent %s on VM %s of %s is not responding", inst.AgentID, inst.VMCID, name),
						ResolutionIgnore, ResolutionRecreateVM, ResolutionDeleteVMReference))
				}
			}
		}
	}
	if inst.DiskCID != "" {
		has, err := s.Cloud.HasDisk(ctx, diskCPI, inst.DiskCID)
		if err != nil {
			return ps, fmt.Errorf("cloud check of %s: has_disk %s: %w", name, inst.DiskCID, err)
		}
		if !has {
			ps = append(ps, problem(ProblemMissingDisk, fmt.Sprintf("persistent disk %s of %s is missing from the cloud", inst.DiskCID, name),
				ResolutionIgnore, ResolutionDeleteDiskReference))
		} else if vmExists {
			attached, err := s.Cloud.AttachedDisks(ctx, vmCPI, inst.VMCID)
			switch {
			case errors.Is(err, ErrUnsupported):
			case err != nil:
				return ps, fmt.Errorf("cloud check of %s: get_disks %s: %w", name, inst.VMCID, err)
			case !slices.Contains(attached, inst.DiskCID):
				// Recreating the VM re-attaches the disk, as BOSH's reattach_disk does.
				ps = append(ps, problem(ProblemMountInfoMismatch, fmt.Sprintf("persistent disk %s of %s is not attached to its VM %s", inst.DiskCID, name, inst.VMCID),
					ResolutionIgnore, ResolutionRecreateVM))
			}
		}
	}
	return ps, nil
}

// Resolved is what Resolve did about one problem.
type Resolved struct {
	ProblemID  string `json:"problem_id"`
	Resolution string `json:"resolution"`
	// TaskID is the task that recreates the VM, for recreate_vm.
	TaskID int64  `json:"task_id,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Resolve applies a resolution to each problem: choices[problem id], or its default when
// choices has none (--auto). Recreates are queued as one resurrect task per deployment;
// reference deletions change the director's records and are refused while a task holds
// the deployment.
func (s *Scanner) Resolve(ctx context.Context, problems []Problem, choices map[string]string) ([]Resolved, error) {
	locks, err := s.Store.Locks(ctx)
	if err != nil {
		return nil, fmt.Errorf("resolve problems: %w", err)
	}
	locked := map[string]bool{}
	for _, l := range locks {
		locked[l.Deployment] = true
	}
	var out []Resolved
	// Recreates go as one resurrect task per deployment and kind: missing VMs (reason
	// "vm missing…", so the reconciler does not try to delete them first) and the rest.
	type batch struct{ deployment, reason string }
	recreate := map[batch][]int{} // → indexes into out
	ids := map[batch][]string{}
	names := map[batch][]string{}
	for _, p := range problems {
		r := Resolved{ProblemID: p.ID, Resolution: p.Default}
		if c, ok := choices[p.ID]; ok {
			r.Resolution = c
		}
		switch {
		case !slices.Contains(p.Resolutions, r.Resolution):
			r.Error = fmt.Sprintf("%q is not a resolution of %s (choose from %s)", r.Resolution, p.Type, strings.Join(p.Resolutions, ", "))
		case r.Resolution == ResolutionIgnore:
		case r.Resolution == ResolutionRecreateVM:
			b := batch{p.Deployment, "cloud check"}
			if p.Type == ProblemMissingVM {
				b.reason = ReasonVMMissing
			}
			if !slices.Contains(ids[b], p.InstanceID) {
				ids[b] = append(ids[b], p.InstanceID)
				names[b] = append(names[b], p.Instance)
			}
			recreate[b] = append(recreate[b], len(out))
		case locked[p.Deployment]:
			r.Error = "a task holds deployment " + p.Deployment + "; try again when it ends"
		default:
			if err := s.deleteReference(ctx, p, r.Resolution); err != nil {
				r.Error = err.Error()
			}
		}
		out = append(out, r)
	}
	batches := make([]batch, 0, len(recreate))
	for b := range recreate {
		batches = append(batches, b)
	}
	slices.SortFunc(batches, func(a, b batch) int {
		return strings.Compare(a.deployment+"\x00"+a.reason, b.deployment+"\x00"+b.reason)
	})
	for _, b := range batches {
		reason := truncate(b.reason+": "+strings.Join(names[b], ", "), 1000)
		params, _ := json.Marshal(state.ResurrectParams{Instances: ids[b], Reason: reason})
		t, err := s.Store.Enqueue(ctx, state.Task{
			Type: state.TaskResurrect, Deployment: b.deployment, User: "cck", Params: params,
			Description: truncate("cloud check: recreate "+strings.Join(names[b], ", "), 500),
		})
		for _, i := range recreate[b] {
			if err != nil {
				out[i].Error = err.Error()
			} else {
				out[i].TaskID = t.ID
			}
		}
	}
	var errs []error
	for _, r := range out {
		if r.Error != "" {
			errs = append(errs, fmt.Errorf("%s: %s: %s", r.ProblemID, r.Resolution, r.Error))
		}
	}
	return out, errors.Join(errs...)
}

// deleteReference makes the director forget a VM or disk the cloud no longer has (or
// that the operator gives up on); the next deploy creates what the instance then lacks.
func (s *Scanner) deleteReference(ctx context.Context, p Problem, resolution string) error {
	insts, err := s.Store.Instances(ctx, p.Deployment)
	if err != nil {
		return err
	}
	idx := slices.IndexFunc(insts, func(i state.Instance) bool { return i.ID == p.InstanceID })
	if idx < 0 {
		return fmt.Errorf("instance %s: %w", p.Instance, state.ErrNotFound)
	}
	inst := insts[idx]
	switch resolution {
	case ResolutionDeleteVMReference:
		if inst.VMCID != p.VMCID {
			return fmt.Errorf("instance %s now has VM %s, not %s: scan again", p.Instance, inst.VMCID, p.VMCID)
		}
		inst.VMCID, inst.AgentID, inst.IPs = "", "", nil
		if _, err := s.Store.PutInstance(ctx, inst); err != nil {
			return err
		}
		if err := s.Store.DeleteVM(ctx, p.VMCID); err != nil {
			return err
		}
	case ResolutionDeleteDiskReference:
		if inst.DiskCID != p.DiskCID {
			return fmt.Errorf("instance %s now has disk %s, not %s: scan again", p.Instance, inst.DiskCID, p.DiskCID)
		}
		inst.DiskCID = ""
		if _, err := s.Store.PutInstance(ctx, inst); err != nil {
			return err
		}
		if err := s.Store.DeleteDisk(ctx, p.DiskCID); err != nil {
			return err
		}
	}
	if s.Log != nil {
		s.Log.Info("cloud check resolved", "problem", p.ID, "resolution", resolution)
	}
	return nil
}
