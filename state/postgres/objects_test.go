package postgres_test

import (
	"errors"
	"testing"

	"github.com/bosun-gitops/bosun/state"
	"github.com/bosun-gitops/bosun/state/postgres"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var ignoreTimes = cmpopts.IgnoreFields(state.Instance{}, "CreatedAt", "UpdatedAt")

func TestInstancesVMsDisks(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	if _, err := s.PutInstance(ctx, state.Instance{Deployment: "nope", Group: "web"}); err == nil {
		t.Fatal("instance of a missing deployment was saved")
	}
	if err := s.PutDeployment(ctx, state.Deployment{Name: "web", Revision: "abc", Manifest: []byte("name: web\n")}); err != nil {
		t.Fatal(err)
	}
	in, err := s.PutInstance(ctx, state.Instance{Deployment: "web", Group: "web", Index: 0, AZ: "z1", Bootstrap: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.ID) != 36 || in.State != state.InstanceStarted {
		t.Fatalf("new instance = %+v; want a uuid and state started", in)
	}
	in.VMCID, in.AgentID, in.IPs = "vm-1", "agent-1", []string{"10.0.0.5"}
	if _, err := s.PutInstance(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutInstance(ctx, state.Instance{Deployment: "web", Group: "web", Index: 0}); err == nil {
		t.Error("a second web/0 was saved")
	}
	got, err := s.Instances(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]state.Instance{in}, got, ignoreTimes); diff != "" {
		t.Errorf("instances (-want +got):\n%s", diff)
	}

	vm := state.VM{CID: "vm-1", Deployment: "web", InstanceID: in.ID, AgentID: "agent-1", IPs: []string{"10.0.0.5"}, Metadata: map[string]string{"instance": "web/0"}}
	disk := state.Disk{CID: "disk-1", Deployment: "web", InstanceID: in.ID, SizeMB: 1024, Active: true}
	if err := s.PutVM(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDisk(ctx, disk); err != nil {
		t.Fatal(err)
	}
	vms, err := s.VMs(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]state.VM{vm}, vms, cmpopts.IgnoreFields(state.VM{}, "CreatedAt")); diff != "" {
		t.Errorf("vms (-want +got):\n%s", diff)
	}
	disks, err := s.Disks(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]state.Disk{disk}, disks, cmpopts.IgnoreFields(state.Disk{}, "CreatedAt")); diff != "" {
		t.Errorf("disks (-want +got):\n%s", diff)
	}
	// Deleting the instance keeps the cloud objects on record, unattached, until they
	// are deleted from the cloud.
	if err := s.DeleteInstance(ctx, in.ID); err != nil {
		t.Fatal(err)
	}
	vms, _ = s.VMs(ctx, "web")
	if len(vms) != 1 || vms[0].InstanceID != "" {
		t.Errorf("vm after its instance was deleted = %+v", vms)
	}
	if err := s.DeleteVM(ctx, "vm-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDisk(ctx, "disk-1"); err != nil {
		t.Fatal(err)
	}
	vms, _ = s.VMs(ctx, "web")
	disks, _ = s.Disks(ctx, "web")
	if len(vms)+len(disks) != 0 {
		t.Errorf("left after delete: %v %v", vms, disks)
	}
	d, err := s.Deployment(ctx, "web")
	if err != nil || d.Revision != "abc" || string(d.Manifest) != "name: web\n" {
		t.Errorf("deployment = %+v, %v", d, err)
	}
	if err := s.DeleteDeployment(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deployment(ctx, "web"); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("deleted deployment: %v", err)
	}
}

func TestRevisionsEventsIntents(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	if _, err := s.LastAccepted(ctx); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("last accepted on an empty store: %v", err)
	}
	for _, r := range []state.Revision{
		{SHA: "a1", Author: "ann", Message: "first", Verdict: state.RevisionAccepted, TaskID: 7},
		{SHA: "b2", Author: "bob", Message: "bad", Verdict: state.RevisionRejected, PolicyMessages: []string{"deny: no latest stemcell"}},
	} {
		if err := s.RecordRevision(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordRevision(ctx, state.Revision{SHA: "c3", Verdict: "maybe"}); err == nil {
		t.Error("a revision with verdict maybe was recorded")
	}
	last, err := s.LastAccepted(ctx)
	if err != nil || last.SHA != "a1" || last.TaskID != 7 {
		t.Errorf("last accepted = %+v, %v", last, err)
	}
	b2, err := s.Revision(ctx, "b2")
	if err != nil || !cmp.Equal(b2.PolicyMessages, []string{"deny: no latest stemcell"}) {
		t.Errorf("revision b2 = %+v, %v", b2, err)
	}
	task, err := s.AcceptRevision(ctx, state.Revision{SHA: "d4", Author: "dee", Message: "scale web", PolicyMessages: []string{"warn: one az"}},
		state.Task{Type: "deploy", Deployment: "web", Description: "deploy d4"})
	if err != nil {
		t.Fatal(err)
	}
	if last, err := s.LastAccepted(ctx); err != nil || last.SHA != "d4" || last.TaskID != task.ID || task.State != state.TaskQueued {
		t.Errorf("after AcceptRevision: last accepted %+v, %v; task %+v", last, err, task)
	}
	if _, err := s.AcceptRevision(ctx, state.Revision{SHA: "e5"}, state.Task{}); err == nil {
		t.Error("accepted a revision with an untyped task")
	}
	if _, err := s.Revision(ctx, "e5"); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("a failed AcceptRevision left revision e5: %v", err)
	}
	if revs, _ := s.Revisions(ctx, 10); len(revs) != 3 {
		t.Errorf("revisions = %+v", revs)
	}

	ev := state.Event{User: "bosun", Action: "create", ObjectType: "vm", ObjectName: "vm-1", Deployment: "web", Instance: "web/0", TaskID: 3, Context: map[string]any{"az": "z1"}}
	if _, err := s.AddEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddEvent(ctx, state.Event{Action: "delete", ObjectType: "vm", Deployment: "db", Error: "cloud said no"}); err != nil {
		t.Fatal(err)
	}
	evs, err := s.Events(ctx, postgres.EventFilter{Deployment: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]state.Event{ev}, evs, cmpopts.IgnoreFields(state.Event{}, "ID", "Time")); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	i1, err := s.RecordIntent(ctx, state.Intent{TaskID: 3, Kind: state.IntentCreateVM, Deployment: "web", InstanceID: "x", RequestID: "req-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RecordIntent(ctx, state.Intent{Kind: state.IntentCreateVM, Deployment: "web", RequestID: "req-1"}); err == nil {
		t.Error("a request id was recorded twice")
	}
	i2, _ := s.RecordIntent(ctx, state.Intent{Kind: state.IntentCreateDisk, Deployment: "web", RequestID: "req-2"})
	i3, _ := s.RecordIntent(ctx, state.Intent{Kind: state.IntentDeleteVM, Deployment: "web", RequestID: "req-3", CloudCID: "vm-old"})
	if err := s.CompleteIntent(ctx, i1.ID, "vm-1", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteIntent(ctx, i3.ID, "", errors.New("cloud unreachable")); err != nil {
		t.Fatal(err)
	}
	if err := s.CompleteIntent(ctx, 99999, "", nil); !errors.Is(err, postgres.ErrNotFound) {
		t.Errorf("complete a missing intent: %v", err)
	}
	open, err := s.UnfinishedIntents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0].ID != i2.ID || open[0].State != state.IntentPending {
		t.Errorf("unfinished intents = %+v; want only %d", open, i2.ID)
	}
}
