package converge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/reconciler/plan"
	"github.com/bosun-gitops/bosun/state"
)

// record is what converge keeps per instance (instances.apply_record) so that operator
// actions can stop, start and recreate it later without the task that built it. Blob
// references carry no signed URLs: those are made fresh for each call.
type record struct {
	Spec               protocol.ApplySpec `json:"spec"`
	VM                 VM                 `json:"vm"`
	Stemcell           string             `json:"stemcell_cid"`
	StemcellAPIVersion int                `json:"stemcell_api_version,omitempty"`
	Disk               Disk               `json:"disk"`
	Watch              plan.WatchTime     `json:"watch"`
	// BlobstoreHash names the blobstore settings the VM's agent holds (given at
	// create_vm or by update_settings since); empty when none were given or when not
	// known (a record from before it was kept), which has update_settings sent.
	BlobstoreHash string `json:"blobstore_hash,omitempty"`
}

func instanceName(i state.Instance) string { return fmt.Sprintf("%s/%d (%s)", i.Group, i.Index, i.ID) }

// failure turns a CPI or agent error into the rollout's failure, unless it is the
// director's own: ctx ending.
func failure(ctx context.Context, step string, err error) (*Failure, error) {
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	f := &Failure{Error: step + ": " + err.Error()}
	var pe *protocol.Error
	if errors.As(err, &pe) && (pe.Code == protocol.CodeJobFailed || pe.Code == protocol.CodeCompileFailed) {
		f.LogTail = tail(pe.Message)
	}
	return f, nil
}

func networksFor(n cpi.Networks) map[string]protocol.Network {
	out := make(map[string]protocol.Network, len(n))
	for name, v := range n {
		out[name] = protocol.Network{Type: v.Type, IP: v.IP, Netmask: v.Netmask, Gateway: v.Gateway, DNS: v.DNS, Default: v.Default}
	}
	return out
}

func ipsOf(n cpi.Networks) []string {
	var ips []string
	for _, name := range slices.Sorted(maps.Keys(n)) {
		if ip := n[name].IP; ip != "" {
			ips = append(ips, ip)
		}
	}
	return ips
}

func blobRef(d blobstore.Digest) protocol.BlobRef {
	return protocol.BlobRef{BlobstoreID: d.Hex(), SHA1: string(d)}
}

// applySpec is the instance's apply spec without signed URLs.
func (r *run) applySpec(want Instance, nets cpi.Networks) protocol.ApplySpec {
	spec := protocol.ApplySpec{
		Deployment: r.t.Deployment, Name: want.Group, Index: want.Index, ID: want.ID, AZ: want.AZ,
		Job:               protocol.JobSpec{Name: want.Group, Templates: []protocol.JobTemplate{}},
		Packages:          map[string]protocol.PackageSpec{},
		Networks:          networksFor(nets),
		ConfigurationHash: want.ConfigurationHash,
		PersistentDisk:    want.PersistentDisk.SizeMiB,
		TemplateHashes:    want.TemplateHashes,
	}
	for _, j := range want.Jobs {
		spec.Job.Templates = append(spec.Job.Templates, protocol.JobTemplate{Name: j.Name, Version: j.Version, BlobRef: blobRef(j.Blob)})
		for _, p := range j.Packages {
			if c, ok := r.compiled[j.Release+"/"+p]; ok {
				spec.Packages[p] = protocol.PackageSpec{Name: p, Version: c.version, BlobRef: blobRef(c.blob)}
			}
		}
	}
	if want.RenderedTemplates != "" {
		ref := blobRef(want.RenderedTemplates)
		spec.RenderedTemplatesArchive = &ref
	}
	return spec
}

// signed returns spec with a fresh signed URL on every blob reference.
func (e *Executor) signed(spec protocol.ApplySpec) protocol.ApplySpec {
	s := e.cfg.Signer
	if s == nil {
		return spec
	}
	sign := func(ref protocol.BlobRef) protocol.BlobRef {
		if d, err := blobstore.ParseDigest(ref.SHA1); err == nil {
			ref.SignedURL = s.SignGet(d)
		}
		return ref
	}
	pkgs := make(map[string]protocol.PackageSpec, len(spec.Packages))
	for k, p := range spec.Packages {
		p.BlobRef = sign(p.BlobRef)
		pkgs[k] = p
	}
	spec.Packages = pkgs
	spec.Job.Templates = slices.Clone(spec.Job.Templates)
	for i := range spec.Job.Templates {
		spec.Job.Templates[i].BlobRef = sign(spec.Job.Templates[i].BlobRef)
	}
	if spec.RenderedTemplatesArchive != nil {
		ref := sign(*spec.RenderedTemplatesArchive)
		spec.RenderedTemplatesArchive = &ref
	}
	return spec
}

// update brings one instance to want: creating or recreating its VM as the plan says,
// then its disk, then applying and starting its jobs.
func (r *run) update(ctx context.Context, ip plan.InstancePlan, want Instance, watch plan.WatchTime) (*Failure, error) {
	st := r.e.cfg.Store
	cur, ok := r.instanceRow(ip.ID)
	if !ok {
		cur = state.Instance{ID: ip.ID, Deployment: r.t.Deployment, State: state.InstanceStarted}
	}
	cur.Group, cur.Index, cur.AZ, cur.Bootstrap = ip.Group, ip.Index, ip.AZ, ip.Bootstrap
	cur, err := st.PutInstance(ctx, cur)
	if err != nil {
		return nil, err
	}
	r.setInstance(cur)
	prev := r.record(ctx, ip.ID)
	rec := record{VM: want.VM, Stemcell: r.stemcell, StemcellAPIVersion: r.t.Stemcell.APIVersion, Disk: want.PersistentDisk, Watch: watch}
	fp, _ := json.Marshal(ip.Applied)
	if cur.State == state.InstanceDetached {
		// A hard-stopped instance stays without a VM; it gets this spec when started.
		rec.Spec = r.applySpec(want, want.VM.Networks)
		b, _ := json.Marshal(rec)
		return nil, st.SetApplied(ctx, state.Applied{InstanceID: cur.ID, Fingerprint: fp, Record: b})
	}
	ctx = cpi.WithInstance(ctx, instanceName(cur))
	in := &inst{r: r, cur: cur}
	if prev != nil {
		in.blobHash = prev.BlobstoreHash
	}

	hasVM, f, err := in.vmExists(ctx)
	if f != nil || err != nil {
		return f, err
	}
	recreate := hasVM && ip.Action == plan.Recreate && (ip.VMCID == "" || ip.VMCID == cur.VMCID)
	nets := want.VM.Networks
	if prev != nil && hasVM && !recreate && len(prev.Spec.Networks) > 0 {
		nets = prevNetworks(prev, want.VM.Networks)
	}
	if recreate && ip.VMStrategy == plan.CreateSwapDelete {
		return in.createSwapDelete(ctx, ip, want, watch, rec, fp)
	}
	if hasVM {
		next := r.applySpec(want, nets)
		if recreate {
			in.shutdown(ctx, "shutdown", nil)
		} else {
			if f, err := in.drainStop(ctx, "update", &next); f != nil || err != nil {
				return f, err
			}
		}
	}
	if recreate {
		if f, err := in.detachDisk(ctx, in.cur.DiskCID, true); f != nil || err != nil {
			return f, err
		}
		if f, err := in.deleteVM(ctx); f != nil || err != nil {
			return f, err
		}
		hasVM = false
	}
	newVM := false
	if !hasVM {
		created, f, err := in.createVM(ctx, want.VM, r.stemcell, r.t.Stemcell.APIVersion)
		if f != nil || err != nil {
			return f, err
		}
		nets, newVM = created, true
	}
	if f, err := in.disk(ctx, ip, want.PersistentDisk, newVM); f != nil || err != nil {
		return f, err
	}
	rec.Spec = r.applySpec(want, nets)
	if f, err := in.applyStart(ctx, rec.Spec, watch, cur.State != state.InstanceStopped); f != nil || err != nil {
		return f, err
	}
	rec.BlobstoreHash = in.blobHash
	b, _ := json.Marshal(rec)
	return nil, st.SetApplied(ctx, state.Applied{InstanceID: cur.ID, Fingerprint: fp, Record: b})
}

// createSwapDelete replaces the instance's VM with the new one running before the old
// one stops, so the instance is down only while its disk moves and its jobs start; a new
// VM whose agent never answers is deleted and the old one keeps running.
//
// Crash safety rests on two intents: the new VM's create_vm stays pending until the
// instance names it, and the old VM's delete_vm is recorded before the swap. A restart
// before the swap deletes the new VM (and, past the delete intent, the old one: the next
// run creates afresh); after it, keeps the new one and deletes the old.
func (in *inst) createSwapDelete(ctx context.Context, ip plan.InstancePlan, want Instance, watch plan.WatchTime, rec record, fp []byte) (*Failure, error) {
	r, e := in.r, in.e()
	v, f, err := in.launchVM(ctx, want.VM, r.stemcell, r.t.Stemcell.APIVersion)
	if f != nil || err != nil {
		return f, err
	}
	// Whatever stops the swap before the instance names the new VM deletes it; a director
	// that is stopping leaves it to Recover, through the pending create_vm intent.
	var stopped error
	defer func() {
		if in.cur.VMCID == v.cid || ctx.Err() != nil {
			return
		}
		if err := in.discard(context.WithoutCancel(ctx), v, cmp.Or(stopped, errors.New("create-swap-delete stopped before the swap"))); err != nil {
			e.cfg.Log.Warn("an unused new VM could not be deleted; the next run will", "vm_cid", v.cid, "err", err)
		}
	}()
	if f, err := in.waitAgent(ctx, v.agentID, v.cid); f != nil || err != nil {
		if f != nil {
			stopped = errors.New(f.Error)
		}
		return f, err
	}
	in.shutdown(ctx, "shutdown", nil)
	if f, err := in.detachDisk(ctx, in.cur.DiskCID, true); f != nil || err != nil {
		return f, err
	}
	old := in.cur.VMCID
	del, err := e.recordIntent(ctx, state.Intent{TaskID: r.task, Kind: state.IntentDeleteVM,
		Deployment: in.cur.Deployment, InstanceID: in.cur.ID, RequestID: e.cfg.NewID(), CloudCID: old})
	if err != nil {
		return nil, err
	}
	if err := in.adopt(ctx, v); err != nil {
		return nil, err
	}
	f, err = in.disk(ctx, ip, want.PersistentDisk, true)
	if f == nil && err == nil {
		rec.Spec = r.applySpec(want, v.nets)
		f, err = in.applyStart(ctx, rec.Spec, watch, in.cur.State != state.InstanceStopped)
	}
	if err != nil {
		return nil, err // the pending delete_vm intent is settled by the next run
	}
	// The old VM goes whether or not the new one started: the instance has moved.
	if df, derr := e.deleteRecorded(ctx, del); derr != nil {
		return nil, derr
	} else if f == nil {
		f = df
	}
	if f != nil {
		return f, nil
	}
	rec.BlobstoreHash = in.blobHash
	b, _ := json.Marshal(rec)
	return nil, e.cfg.Store.SetApplied(ctx, state.Applied{InstanceID: in.cur.ID, Fingerprint: fp, Record: b})
}

// prevNetworks keeps the addresses the running VM has (dynamic ones the cloud chose).
func prevNetworks(prev *record, want cpi.Networks) cpi.Networks {
	out := cpi.Networks{}
	for name, n := range want {
		if p, ok := prev.Spec.Networks[name]; ok && n.IP == "" {
			n.IP, n.Netmask, n.Gateway = p.IP, p.Netmask, p.Gateway
		}
		out[name] = n
	}
	return out
}

// record returns the instance's stored record, or nil.
func (r *run) record(ctx context.Context, id string) *record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.records[id]
}

// inst is one instance being worked on; cur follows what the store holds.
type inst struct {
	r   *run
	cur state.Instance
	// blobHash names the blobstore settings the instance's agent holds, as far as
	// converge knows (blobstoreHash; "" when it does not).
	blobHash string
}

func (in *inst) e() *Executor { return in.r.e }

func (in *inst) save(ctx context.Context) error {
	if in.cur.ID == "" {
		return nil // a compilation VM has no instance row
	}
	cur, err := in.e().cfg.Store.PutInstance(ctx, in.cur)
	if err != nil {
		return err
	}
	in.cur = cur
	in.r.setInstance(cur)
	return nil
}

// vmExists reports whether the instance's VM is there; a VM the cloud lost is forgotten.
func (in *inst) vmExists(ctx context.Context) (bool, *Failure, error) {
	if in.cur.VMCID == "" {
		return false, nil, nil
	}
	ok, err := in.e().cfg.CPI.HasVM(ctx, cpi.VMCID(in.cur.VMCID))
	if err != nil {
		f, err := failure(ctx, "has_vm", err)
		return false, f, err
	}
	if ok {
		return true, nil, nil
	}
	in.e().cfg.Log.Warn("VM is gone; forgetting it", "instance", instanceName(in.cur), "vm_cid", in.cur.VMCID)
	if err := in.e().cfg.Store.DeleteVM(ctx, in.cur.VMCID); err != nil {
		return false, nil, err
	}
	in.cur.VMCID, in.cur.AgentID = "", ""
	return false, nil, in.save(ctx)
}

// responsive reports whether the agent answers a ping soon.
func (in *inst) responsive(ctx context.Context) bool {
	if in.cur.AgentID == "" {
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return in.e().cfg.Agents.Ping(pctx, in.cur.AgentID) == nil
}

// drainStop drains and stops the jobs, failing the instance when either fails.
func (in *inst) drainStop(ctx context.Context, kind string, next *protocol.ApplySpec) (*Failure, error) {
	a := in.e().cfg.Agents
	wait, err := a.Drain(ctx, in.cur.AgentID, kind, next)
	if err != nil {
		return failure(ctx, "drain", err)
	}
	if err := in.drainWait(ctx, wait); err != nil {
		return nil, err
	}
	if err := a.Stop(ctx, in.cur.AgentID); err != nil {
		return failure(ctx, "stop", err)
	}
	return nil, nil
}

// drainWait honours a drain script's answer: seconds to wait (negative: dynamic drain,
// which this director treats as a plain wait).
func (in *inst) drainWait(ctx context.Context, secs int) error {
	if secs < 0 {
		secs = -secs
	}
	d := min(time.Duration(secs)*time.Second, in.e().cfg.MaxDrainWait)
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// shutdown drains and stops the jobs of a VM about to go, as far as its agent answers:
// an unresponsive agent must not keep its VM from being replaced.
func (in *inst) shutdown(ctx context.Context, kind string, next *protocol.ApplySpec) {
	if !in.responsive(ctx) {
		return
	}
	if f, err := in.drainStop(ctx, kind, next); f != nil || err != nil {
		in.e().cfg.Log.Warn("jobs not stopped cleanly before the VM goes", "instance", instanceName(in.cur), "failure", f, "err", err)
	}
}

// createVM creates the instance's VM under a write-ahead intent and waits for its agent.
func (in *inst) createVM(ctx context.Context, vm VM, stemcell string, apiVersion int) (cpi.Networks, *Failure, error) {
	v, f, err := in.launchVM(ctx, vm, stemcell, apiVersion)
	if f != nil || err != nil {
		return nil, f, err
	}
	if err := in.adopt(ctx, v); err != nil {
		return nil, nil, err
	}
	if f, err := in.waitAgent(ctx, v.agentID, v.cid); f != nil || err != nil {
		return nil, f, err
	}
	return v.nets, nil, nil
}

// launched is a VM made for an instance that the instance does not name yet: its
// create_vm intent stays pending until it does (adopt), so a director that dies in
// between deletes it at restart instead of leaving a second VM for the instance.
type launched struct {
	cid, agentID string
	nets         cpi.Networks
	intent       state.Intent
}

// launchVM creates a VM for the instance under a write-ahead intent and records it.
// The agent id doubles as the intent's request id, so Recover can find the VM by it even
// if the director dies before tagging it.
func (in *inst) launchVM(ctx context.Context, vm VM, stemcell string, apiVersion int) (*launched, *Failure, error) {
	e := in.e()
	agentID := e.cfg.NewID()
	settings, err := e.cfg.Settings(agentID)
	if err != nil {
		return nil, nil, fmt.Errorf("agent settings for %s: %w", instanceName(in.cur), err)
	}
	settings.AgentID = agentID
	settings.Networks = vm.Networks
	in.blobHash = blobstoreHash(settings.Blobstore)
	settings.Env = mergeEnv(settings.Env, vm.Env)
	spec := cpi.VMSpec{AgentID: agentID, Stemcell: cpi.StemcellCID(stemcell), StemcellAPIVersion: apiVersion,
		CloudProperties: vm.CloudProperties, Networks: vm.Networks, Env: vm.Env, Settings: settings}
	if in.cur.DiskCID != "" {
		spec.DiskCIDs = []cpi.DiskCID{cpi.DiskCID(in.cur.DiskCID)}
	}
	intent, err := e.recordIntent(ctx, state.Intent{TaskID: in.r.task, Kind: state.IntentCreateVM,
		Deployment: in.cur.Deployment, InstanceID: in.cur.ID, RequestID: agentID})
	if err != nil {
		return nil, nil, err
	}
	cid, nets, err := e.cfg.CPI.CreateVM(ctx, spec)
	if err != nil {
		// A failed call may still have made a VM (a timeout after the cloud acted): remove
		// any VM carrying this agent id before calling the intent settled; when that
		// cannot be done now the intent stays pending for Recover.
		if serr := e.removeStray(context.WithoutCancel(ctx), agentID); serr != nil {
			e.cfg.Log.Warn("after a failed create_vm, stray VMs could not be checked; Recover will", "agent_id", agentID, "err", serr)
		} else if cerr := e.cfg.Store.CompleteIntent(context.WithoutCancel(ctx), intent.ID, "", err); cerr != nil {
			return nil, nil, cerr
		}
		f, err := failure(ctx, "create_vm", err)
		return nil, f, err
	}
	if nets == nil {
		nets = vm.Networks
	}
	md := in.metadata(agentID)
	// The VM is recorded before the intent completes: a crash in between leaves a
	// pending intent, and Recover adopts the VM if the instance names it, else deletes it.
	if err := e.cfg.Store.PutVM(ctx, state.VM{CID: string(cid), Deployment: in.cur.Deployment, InstanceID: in.cur.ID,
		AgentID: agentID, IPs: ipsOf(nets), CPI: e.cfg.CPIName, Stemcell: stemcell, Metadata: md}); err != nil {
		return nil, nil, err
	}
	if err := cpi.SetVMMetadata(ctx, e.cfg.CPI, cid, md); err != nil && !errors.Is(err, cpi.ErrNotImplemented) {
		e.cfg.Log.Warn("VM metadata not set", "vm_cid", cid, "err", err)
	}
	return &launched{cid: string(cid), agentID: agentID, nets: nets, intent: intent}, nil, nil
}

// adopt makes v the instance's VM and settles its create_vm intent.
func (in *inst) adopt(ctx context.Context, v *launched) error {
	in.cur.VMCID, in.cur.AgentID, in.cur.IPs = v.cid, v.agentID, ipsOf(v.nets)
	if err := in.save(ctx); err != nil {
		return err
	}
	return in.e().cfg.Store.CompleteIntent(ctx, v.intent.ID, v.cid, nil)
}

// discard deletes a launched VM the instance never adopted.
func (in *inst) discard(ctx context.Context, v *launched, why error) error {
	f, err := in.e().deleteVM(ctx, in.r.task, in.cur.Deployment, in.cur.ID, v.cid)
	if err != nil {
		return err
	}
	if f != nil {
		// The create_vm intent stays pending: the deployment's next run deletes the VM.
		in.e().cfg.Log.Warn("an unused new VM could not be deleted; the next run will", "vm_cid", v.cid, "failure", f.Error)
		return nil
	}
	return in.e().cfg.Store.CompleteIntent(context.WithoutCancel(ctx), v.intent.ID, v.cid, why)
}

func (in *inst) metadata(requestID string) cpi.Metadata {
	return cpi.Metadata{
		"director":         in.e().cfg.DirectorName,
		"deployment":       in.cur.Deployment,
		"instance_group":   in.cur.Group,
		"job":              in.cur.Group,
		"id":               in.cur.ID,
		"index":            fmt.Sprint(in.cur.Index),
		"name":             fmt.Sprintf("%s/%s", in.cur.Group, in.cur.ID),
		"created_at":       time.Now().UTC().Format(time.RFC3339),
		metadataRequestKey: requestID,
	}
}

// metadataRequestKey names the write-ahead intent's request id in VM metadata.
const metadataRequestKey = "bosun_request_id"

// waitAgent waits until a new VM's agent answers.
func (in *inst) waitAgent(ctx context.Context, agentID, vmCID string) (*Failure, error) {
	deadline := time.Now().Add(in.e().cfg.AgentWait)
	for {
		// Short pings: a ping sent before the agent subscribed is never answered, and
		// a booted agent answers in milliseconds.
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := in.e().cfg.Agents.Ping(pctx, agentID)
		cancel()
		if err == nil {
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return &Failure{Error: fmt.Sprintf("agent %s on VM %s did not answer within %s: %v", agentID, vmCID, in.e().cfg.AgentWait, err)}, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// deleteVM deletes the instance's VM under a write-ahead intent and forgets it.
func (in *inst) deleteVM(ctx context.Context) (*Failure, error) {
	if in.cur.VMCID == "" {
		return nil, nil
	}
	if f, err := in.e().deleteVM(ctx, in.r.task, in.cur.Deployment, in.cur.ID, in.cur.VMCID); f != nil || err != nil {
		return f, err
	}
	in.cur.VMCID, in.cur.AgentID, in.cur.IPs = "", "", nil
	return nil, in.save(ctx)
}

func (e *Executor) deleteVM(ctx context.Context, task int64, deployment, instanceID, cid string) (*Failure, error) {
	intent, err := e.recordIntent(ctx, state.Intent{TaskID: task, Kind: state.IntentDeleteVM,
		Deployment: deployment, InstanceID: instanceID, RequestID: e.cfg.NewID(), CloudCID: cid})
	if err != nil {
		return nil, err
	}
	return e.deleteRecorded(ctx, intent)
}

// deleteRecorded deletes the VM of a recorded delete_vm intent and settles it.
func (e *Executor) deleteRecorded(ctx context.Context, intent state.Intent) (*Failure, error) {
	cid := intent.CloudCID
	err := e.cfg.CPI.DeleteVM(ctx, cpi.VMCID(cid))
	if errors.Is(err, cpi.ErrVMNotFound) {
		err = nil
	}
	if cerr := e.cfg.Store.CompleteIntent(context.WithoutCancel(ctx), intent.ID, cid, err); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return failure(ctx, "delete_vm", err)
	}
	// The VM is gone from the cloud: its row goes too, even as the director stops.
	return nil, e.cfg.Store.DeleteVM(context.WithoutCancel(ctx), cid)
}

// disk makes the instance's persistent disk what want says and mounts it.
func (in *inst) disk(ctx context.Context, ip plan.InstancePlan, want Disk, newVM bool) (*Failure, error) {
	r := in.r
	if f, err := in.settleMigration(ctx); f != nil || err != nil {
		return f, err
	}
	switch {
	case want.SizeMiB <= 0 && in.cur.DiskCID == "":
		return nil, nil
	case want.SizeMiB <= 0:
		if !newVM {
			if f, err := in.detachDisk(ctx, in.cur.DiskCID, false); f != nil || err != nil {
				return f, err
			}
		}
		return in.deleteDisk(ctx, in.cur.DiskCID)
	case in.cur.DiskCID == "":
		cid, f, err := in.createDisk(ctx, want)
		if f != nil || err != nil {
			return f, err
		}
		if err := in.activate(ctx, cid); err != nil {
			return nil, err
		}
		return in.attachDisk(ctx, cid)
	}
	r.mu.Lock()
	d, known := r.disks[in.cur.DiskCID]
	r.mu.Unlock()
	if ip.Disk == plan.DiskMigrate || known && d.SizeMB > want.SizeMiB {
		if newVM || !in.attached(ctx) {
			if f, err := in.attachDisk(ctx, in.cur.DiskCID); f != nil || err != nil {
				return f, err
			}
		}
		return in.migrateDisk(ctx, want)
	}
	if (known && d.SizeMB != want.SizeMiB) || ip.Disk == plan.DiskResize {
		if !newVM {
			if f, err := in.detachDisk(ctx, in.cur.DiskCID, false); f != nil || err != nil {
				return f, err
			}
		}
		if err := cpi.ResizeDisk(ctx, in.e().cfg.CPI, cpi.DiskCID(in.cur.DiskCID), want.SizeMiB); err != nil {
			if ctx.Err() == nil && errors.Is(err, cpi.ErrNotSupported) {
				// As BOSH does: a cloud that cannot grow a disk gets a bigger one, copied.
				if f, err := in.attachDisk(ctx, in.cur.DiskCID); f != nil || err != nil {
					return f, err
				}
				return in.migrateDisk(ctx, want)
			}
			if f, ferr := failure(ctx, "resize_disk", err); f != nil || ferr != nil {
				return f, ferr
			}
		}
		d.CID, d.Deployment, d.InstanceID, d.SizeMB, d.CPI, d.Active = in.cur.DiskCID, in.cur.Deployment, in.cur.ID, want.SizeMiB, in.e().cfg.CPIName, true
		if err := in.e().cfg.Store.PutDisk(ctx, d); err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.disks[d.CID] = d
		r.mu.Unlock()
		return in.attachDisk(ctx, in.cur.DiskCID)
	}
	if newVM || !in.attached(ctx) {
		return in.attachDisk(ctx, in.cur.DiskCID)
	}
	if !in.mounted(ctx) {
		// Attached but never mounted: a director stopped between attach_disk and
		// mount_disk. Attaching again tells the agent the disk's hint as well.
		if f, err := in.detachDisk(ctx, in.cur.DiskCID, true); f != nil || err != nil {
			return f, err
		}
		return in.attachDisk(ctx, in.cur.DiskCID)
	}
	return nil, nil
}

// mounted reports whether the agent has the instance's disk mounted; an agent that
// cannot say is taken to have it (the jobs' start will tell).
func (in *inst) mounted(ctx context.Context) bool {
	raw, err := in.e().cfg.Agents.Run(ctx, in.cur.AgentID, protocol.MethodListDisk)
	var cids []string
	if err != nil || json.Unmarshal(raw, &cids) != nil {
		return true
	}
	return slices.Contains(cids, in.cur.DiskCID)
}

// migrateDisk moves the instance's data to a new disk as BOSH does: the new disk is
// attached beside the old one and mounted as the migration target, the agent copies the
// store onto it and mounts it in the store's place, and the old disk goes. The jobs are
// stopped throughout.
//
// The new disk is recorded inactive until the agent has copied the data; the switch is
// one row each. A director stopped half-way leaves an inactive disk that
// settleMigration finishes with or deletes, so the data is never in two live places.
func (in *inst) migrateDisk(ctx context.Context, want Disk) (*Failure, error) {
	e, old := in.e(), in.cur.DiskCID
	if in.cur.AgentID == "" {
		return &Failure{Error: fmt.Sprintf("persistent disk %s: migrating it needs the instance's agent, and it has no VM", old)}, nil
	}
	// The data is copied from the store: the old disk must be what is mounted there, or
	// the new disk would take the store's place empty.
	if at, ok := in.atStore(ctx); ok && at != old {
		if f, err := in.detachDisk(ctx, old, true); f != nil || err != nil {
			return f, err
		}
		if f, err := in.attachDisk(ctx, old); f != nil || err != nil {
			return f, err
		}
		if at, ok := in.atStore(ctx); ok && at != old {
			return &Failure{Error: fmt.Sprintf("persistent disk %s: the agent mounts %q at the store, not the disk to migrate from; nothing was copied", old, at)}, nil
		}
	}
	cid, f, err := in.createDisk(ctx, want)
	if f != nil || err != nil {
		return f, err
	}
	if f, err := in.attachDisk(ctx, cid); f != nil || err != nil {
		return f, err
	}
	if _, err := e.cfg.Agents.Run(ctx, in.cur.AgentID, protocol.MethodMigrateDisk); err != nil {
		return failure(ctx, fmt.Sprintf("migrate_disk %s → %s", old, cid), err)
	}
	return in.finishMigration(ctx, old, cid)
}

// finishMigration makes cid the instance's disk once the agent holds the data there,
// then detaches and deletes the old disk.
func (in *inst) finishMigration(ctx context.Context, old, cid string) (*Failure, error) {
	if err := in.activate(ctx, cid); err != nil {
		return nil, err
	}
	if f, err := in.detachDisk(ctx, old, false); f != nil || err != nil {
		return f, err
	}
	// The old disk may have sat at the store itself (the local CPI puts the first disk
	// there); with it gone, the new one is mounted in its place.
	if err := in.e().cfg.Agents.MountDisk(ctx, in.cur.AgentID, cid); err != nil {
		return failure(ctx, "mount_disk", err)
	}
	return in.deleteDisk(ctx, old)
}

// settleMigration finishes what an interrupted migration left: another disk of the
// instance than its own. If the agent reports it mounted, the data was copied there and
// it becomes the instance's disk; otherwise it is a partial copy (or the old disk after
// the switch) and is deleted.
func (in *inst) settleMigration(ctx context.Context) (*Failure, error) {
	in.r.mu.Lock()
	var left []string
	for cid, d := range in.r.disks {
		if d.InstanceID == in.cur.ID && cid != in.cur.DiskCID {
			left = append(left, cid)
		}
	}
	in.r.mu.Unlock()
	if len(left) == 0 {
		return nil, nil
	}
	slices.Sort(left)
	mounted := ""
	if in.cur.AgentID != "" && in.responsive(ctx) {
		mounted, _ = in.atStore(ctx)
	}
	for _, cid := range left {
		// At the store is not proof enough: a new disk mounted there in the old one's
		// stead holds nothing. migrate_disk again proves the copy (it answers success
		// only for the disk it finished a migration on, and finishes one cut short).
		if cid == mounted && in.cur.DiskCID != "" && in.migrated(ctx) {
			in.e().cfg.Log.Info("finishing an interrupted disk migration", "instance", instanceName(in.cur), "from", in.cur.DiskCID, "to", cid)
			if f, err := in.finishMigration(ctx, in.cur.DiskCID, cid); f != nil || err != nil {
				return f, err
			}
			continue
		}
		in.e().cfg.Log.Info("deleting a disk an interrupted migration left", "instance", instanceName(in.cur), "disk_cid", cid)
		if f, err := in.detachDisk(ctx, cid, true); f != nil || err != nil {
			return f, err
		}
		if f, err := in.deleteDisk(ctx, cid); f != nil || err != nil {
			return f, err
		}
		if in.cur.DiskCID != "" && in.cur.AgentID != "" && in.responsive(ctx) {
			// Detaching a disk the local CPI placed at the store leaves the store empty.
			if err := in.e().cfg.Agents.MountDisk(ctx, in.cur.AgentID, in.cur.DiskCID); err != nil {
				return failure(ctx, "mount_disk", err)
			}
		}
	}
	return nil, nil
}

// atStore returns the disk the agent mounts at the store, and whether it could say.
func (in *inst) atStore(ctx context.Context) (string, bool) {
	raw, err := in.e().cfg.Agents.Run(ctx, in.cur.AgentID, protocol.MethodListDisk)
	var cids []string
	if err != nil || json.Unmarshal(raw, &cids) != nil {
		return "", false
	}
	if len(cids) == 0 {
		return "", true
	}
	return cids[0], true
}

// migrated reports whether the agent's last migration ended on the disk at its store.
func (in *inst) migrated(ctx context.Context) bool {
	_, err := in.e().cfg.Agents.Run(ctx, in.cur.AgentID, protocol.MethodMigrateDisk)
	return err == nil
}

// activate makes cid the instance's one active disk.
func (in *inst) activate(ctx context.Context, cid string) error {
	st := in.e().cfg.Store
	in.r.mu.Lock()
	var rows []state.Disk
	for c, d := range in.r.disks {
		if d.InstanceID == in.cur.ID && d.Active != (c == cid) {
			d.Active = c == cid
			rows = append(rows, d)
		}
	}
	in.r.mu.Unlock()
	for _, d := range rows {
		if err := st.PutDisk(ctx, d); err != nil {
			return err
		}
		in.r.mu.Lock()
		in.r.disks[d.CID] = d
		in.r.mu.Unlock()
	}
	in.cur.DiskCID = cid
	return in.save(ctx)
}

// attached reports whether the instance's disk is attached to its VM, as far as the CPI
// can tell; without get_disks an existing VM is taken to hold it.
func (in *inst) attached(ctx context.Context) bool {
	disks, err := cpi.GetDisks(ctx, in.e().cfg.CPI, cpi.VMCID(in.cur.VMCID))
	if err != nil {
		return true
	}
	return slices.Contains(disks, cpi.DiskCID(in.cur.DiskCID))
}

// createDisk creates a disk for the instance under a write-ahead intent and records it,
// inactive: the caller activates it when the instance is to use it.
func (in *inst) createDisk(ctx context.Context, want Disk) (string, *Failure, error) {
	e := in.e()
	intent, err := e.recordIntent(ctx, state.Intent{TaskID: in.r.task, Kind: state.IntentCreateDisk,
		Deployment: in.cur.Deployment, InstanceID: in.cur.ID, RequestID: e.cfg.NewID()})
	if err != nil {
		return "", nil, err
	}
	cid, err := e.cfg.CPI.CreateDisk(ctx, want.SizeMiB, want.CloudProperties, cpi.VMCID(in.cur.VMCID))
	if err != nil {
		if cerr := e.cfg.Store.CompleteIntent(context.WithoutCancel(ctx), intent.ID, "", err); cerr != nil {
			return "", nil, cerr
		}
		f, err := failure(ctx, "create_disk", err)
		return "", f, err
	}
	d := state.Disk{CID: string(cid), Deployment: in.cur.Deployment, InstanceID: in.cur.ID, SizeMB: want.SizeMiB, CPI: e.cfg.CPIName}
	if err := e.cfg.Store.PutDisk(context.WithoutCancel(ctx), d); err != nil {
		return "", nil, err
	}
	in.r.mu.Lock()
	in.r.disks[d.CID] = d
	in.r.mu.Unlock()
	if err := e.cfg.Store.CompleteIntent(context.WithoutCancel(ctx), intent.ID, string(cid), nil); err != nil {
		return "", nil, err
	}
	md := in.metadata(intent.RequestID)
	delete(md, "index")
	if err := cpi.SetDiskMetadata(ctx, e.cfg.CPI, cid, md); err != nil && !errors.Is(err, cpi.ErrNotImplemented) {
		e.cfg.Log.Warn("disk metadata not set", "disk_cid", cid, "err", err)
	}
	return string(cid), nil, nil
}

// attachDisk attaches one of the instance's disks to its VM, tells the agent and mounts
// it (at the store, or as the migration target while another disk is there).
func (in *inst) attachDisk(ctx context.Context, cid string) (*Failure, error) {
	e := in.e()
	intent, err := e.recordIntent(ctx, state.Intent{TaskID: in.r.task, Kind: state.IntentAttachDisk,
		Deployment: in.cur.Deployment, InstanceID: in.cur.ID, RequestID: e.cfg.NewID(), CloudCID: cid})
	if err != nil {
		return nil, err
	}
	hint, err := e.cfg.CPI.AttachDisk(ctx, cpi.VMCID(in.cur.VMCID), cpi.DiskCID(cid))
	if cerr := e.cfg.Store.CompleteIntent(context.WithoutCancel(ctx), intent.ID, cid, err); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return failure(ctx, "attach_disk", err)
	}
	if _, err := e.cfg.Agents.Run(ctx, in.cur.AgentID, protocol.MethodAddPersistentDisk, cid, hint); err != nil && !protocol.IsUnknownMethod(err) {
		return failure(ctx, "add_persistent_disk", err)
	}
	if err := e.cfg.Agents.MountDisk(ctx, in.cur.AgentID, cid); err != nil {
		return failure(ctx, "mount_disk", err)
	}
	return nil, nil
}

// detachDisk unmounts and detaches one of the instance's disks. bestEffort skips the
// agent when it does not answer (a VM about to be replaced).
func (in *inst) detachDisk(ctx context.Context, cid string, bestEffort bool) (*Failure, error) {
	if cid == "" || in.cur.VMCID == "" {
		return nil, nil
	}
	e := in.e()
	if !bestEffort || in.responsive(ctx) {
		if err := e.cfg.Agents.UnmountDisk(ctx, in.cur.AgentID, cid); err != nil && !bestEffort {
			return failure(ctx, "unmount_disk", err)
		}
	}
	intent, err := e.recordIntent(ctx, state.Intent{TaskID: in.r.task, Kind: state.IntentDetachDisk,
		Deployment: in.cur.Deployment, InstanceID: in.cur.ID, RequestID: e.cfg.NewID(), CloudCID: cid})
	if err != nil {
		return nil, err
	}
	err = e.cfg.CPI.DetachDisk(ctx, cpi.VMCID(in.cur.VMCID), cpi.DiskCID(cid))
	if errors.Is(err, cpi.ErrDiskNotAttached) || errors.Is(err, cpi.ErrVMNotFound) || errors.Is(err, cpi.ErrDiskNotFound) {
		err = nil
	}
	if cerr := e.cfg.Store.CompleteIntent(context.WithoutCancel(ctx), intent.ID, cid, err); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return failure(ctx, "detach_disk", err)
	}
	if !bestEffort || in.responsive(ctx) {
		if _, err := e.cfg.Agents.Run(ctx, in.cur.AgentID, protocol.MethodRemovePersistentDisk, cid); err != nil && !protocol.IsUnknownMethod(err) {
			e.cfg.Log.Warn("agent not told of the detached disk", "instance", instanceName(in.cur), "err", err)
		}
	}
	return nil, nil
}

// deleteDisk deletes a detached disk of the instance under a write-ahead intent.
func (in *inst) deleteDisk(ctx context.Context, cid string) (*Failure, error) {
	if f, err := in.e().deleteDisk(ctx, in.r.task, in.cur.Deployment, in.cur.ID, cid); f != nil || err != nil {
		return f, err
	}
	in.r.mu.Lock()
	delete(in.r.disks, cid)
	in.r.mu.Unlock()
	if in.cur.DiskCID == cid {
		in.cur.DiskCID = ""
		return nil, in.save(ctx)
	}
	return nil, nil
}

func (e *Executor) deleteDisk(ctx context.Context, task int64, deployment, instanceID, cid string) (*Failure, error) {
	intent, err := e.recordIntent(ctx, state.Intent{TaskID: task, Kind: state.IntentDeleteDisk,
		Deployment: deployment, InstanceID: instanceID, RequestID: e.cfg.NewID(), CloudCID: cid})
	if err != nil {
		return nil, err
	}
	err = e.cfg.CPI.DeleteDisk(ctx, cpi.DiskCID(cid))
	if errors.Is(err, cpi.ErrDiskNotFound) {
		err = nil
	}
	if cerr := e.cfg.Store.CompleteIntent(context.WithoutCancel(ctx), intent.ID, cid, err); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return failure(ctx, "delete_disk", err)
	}
	return nil, e.cfg.Store.DeleteDisk(context.WithoutCancel(ctx), cid)
}

// applyStart applies spec and, when start is set, runs pre-start, starts the jobs, waits
// for them to run within the watch time and runs post-start; the instance is recorded
// as it ends up.
func (in *inst) applyStart(ctx context.Context, spec protocol.ApplySpec, watch plan.WatchTime, start bool) (*Failure, error) {
	if f, err := in.syncBlobstore(ctx); f != nil || err != nil {
		return f, err
	}
	a := in.e().cfg.Agents
	id := in.cur.AgentID
	if err := a.Apply(ctx, id, in.e().signed(spec)); err != nil {
		return failure(ctx, "apply", err)
	}
	if !start {
		in.r.setState(in.cur.ID, "stopped")
		return nil, in.save(ctx)
	}
	if err := a.RunScript(ctx, id, "pre-start", nil); err != nil {
		f, ferr := failure(ctx, "pre-start", err)
		if f != nil {
			f.Process = "pre-start"
		}
		return f, ferr
	}
	if err := a.Start(ctx, id); err != nil {
		return failure(ctx, "start", err)
	}
	if f, err := in.waitRunning(ctx, watch); f != nil || err != nil {
		return f, err
	}
	if err := a.RunScript(ctx, id, "post-start", nil); err != nil {
		f, ferr := failure(ctx, "post-start", err)
		if f != nil {
			f.Process = "post-start"
		}
		return f, ferr
	}
	in.cur.State = state.InstanceStarted
	in.r.setState(in.cur.ID, "running")
	return nil, in.save(ctx)
}

// waitRunning waits the watch time's minimum, then polls until every process runs or
// the maximum passes.
func (in *inst) waitRunning(ctx context.Context, watch plan.WatchTime) (*Failure, error) {
	start := time.Now()
	minWait, maxWait := time.Duration(watch.Min)*time.Millisecond, time.Duration(watch.Max)*time.Millisecond
	maxWait = max(maxWait, minWait)
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(minWait):
	}
	var last protocol.State
	var lastErr error
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := in.e().cfg.Agents.GetState(sctx, in.cur.AgentID, false)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil && st.JobState == protocol.JobRunning {
			return nil, nil
		}
		if err == nil {
			last = st
		}
		lastErr = err
		if time.Since(start) >= maxWait {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(in.e().cfg.PollInterval):
		}
	}
	f := &Failure{}
	if lastErr != nil && last.JobState == "" {
		f.Error = fmt.Sprintf("get_state: %v", lastErr)
		return f, nil
	}
	f.Error = fmt.Sprintf("jobs are %s, not running, after %s", last.JobState, maxWait)
	for _, p := range last.Processes {
		if p.State != protocol.JobRunning {
			f.Process = p.Name
			if p.Job != "" && p.Job != p.Name {
				f.Process = p.Job + "/" + p.Name
			}
			f.Error = fmt.Sprintf("process %s is %s, not running, after %s", f.Process, p.State, maxWait)
			f.LogTail = p.LogTail
			break
		}
	}
	return f, nil
}

// deleteInstance stops an instance's jobs, deletes its VM and disks and forgets it.
func (r *run) deleteInstance(ctx context.Context, id string) (*Failure, error) {
	cur, ok := r.instanceRow(id)
	if !ok {
		return nil, nil
	}
	ctx = cpi.WithInstance(ctx, instanceName(cur))
	in := &inst{r: r, cur: cur}
	if cur.VMCID != "" {
		in.shutdown(ctx, "shutdown", nil)
		if f, err := in.deleteVM(ctx); f != nil || err != nil {
			return f, err
		}
	}
	r.mu.Lock()
	var disks []string
	for cid, d := range r.disks {
		if d.InstanceID == id || cid == in.cur.DiskCID {
			disks = append(disks, cid)
		}
	}
	r.mu.Unlock()
	slices.Sort(disks)
	for _, cid := range disks {
		if f, err := in.deleteDisk(ctx, cid); f != nil || err != nil {
			return f, err
		}
	}
	if err := r.e.cfg.Store.DeleteInstance(ctx, id); err != nil {
		return nil, err
	}
	r.mu.Lock()
	delete(r.current, id)
	r.mu.Unlock()
	return nil, nil
}

// removeStray deletes every VM the CPI lists under agentID.
func (e *Executor) removeStray(ctx context.Context, agentID string) error {
	vms, err := cpi.ListVMs(ctx, e.cfg.CPI)
	if errors.Is(err, cpi.ErrNotImplemented) {
		return nil // nothing more can be known
	}
	if err != nil {
		return err
	}
	for _, vm := range vms {
		if vm.AgentID == agentID || vm.Metadata[metadataRequestKey] == agentID {
			if err := e.cfg.CPI.DeleteVM(ctx, vm.CID); err != nil && !errors.Is(err, cpi.ErrVMNotFound) {
				return err
			}
		}
	}
	return nil
}

// mergeEnv lays the instance group's env over the director's (both JSON objects), key by
// top-level key, so a manifest's env keeps the director's agent settings it does not name.
func mergeEnv(base, over json.RawMessage) json.RawMessage {
	if len(over) == 0 {
		return base
	}
	if len(base) == 0 {
		return over
	}
	var b, o map[string]json.RawMessage
	if json.Unmarshal(base, &b) != nil || json.Unmarshal(over, &o) != nil {
		return over
	}
	if b == nil {
		b = map[string]json.RawMessage{}
	}
	maps.Copy(b, o)
	out, err := json.Marshal(b)
	if err != nil {
		return over
	}
	return out
}
