package postgres_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

func TestJudgeStoresVerdictTasksAndRenders(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	j := state.Judgement{
		Revision: state.Revision{SHA: "aaa", Author: "Ada", Message: "m", Verdict: state.RevisionAccepted},
		Verdict:  state.Verdict{PolicyRevision: "p1", Warnings: []string{"w1"}, EvaluatedIn: 3 * time.Millisecond},
		Tasks:    []state.Task{{Type: state.TaskDeploy, Deployment: "a", Params: json.RawMessage(`{"revision":"aaa"}`)}, {Type: state.TaskDeleteDeployment, Deployment: "b"}},
		Renders:  []state.DeploymentRender{{Deployment: "a", Revision: "aaa", Digest: "d1"}},
	}
	tasks, err := s.Judge(ctx, j)
	if err != nil || len(tasks) != 2 || tasks[0].ID == 0 || tasks[1].State != state.TaskQueued {
		t.Fatalf("tasks = %+v, %v", tasks, err)
	}
	rev, err := s.Revision(ctx, "aaa")
	if err != nil || rev.Verdict != state.RevisionAccepted || rev.TaskID != tasks[0].ID || len(rev.PolicyMessages) != 1 {
		t.Fatalf("revision = %+v, %v", rev, err)
	}
	v, err := s.Verdict(ctx, "aaa")
	if err != nil || v.PolicyRevision != "p1" || v.EvaluatedIn != 3*time.Millisecond {
		t.Fatalf("verdict = %+v, %v", v, err)
	}
	if last, err := s.LastAccepted(ctx); err != nil || last.SHA != "aaa" {
		t.Fatalf("last accepted = %+v, %v", last, err)
	}
	renders, err := s.DeploymentRenders(ctx)
	if err != nil || len(renders) != 1 || renders[0].Digest != "d1" {
		t.Fatalf("renders = %+v, %v", renders, err)
	}
	// A rejected revision may not enqueue anything, and a failed one stores its error.
	if _, err := s.Judge(ctx, state.Judgement{Revision: state.Revision{SHA: "bbb", Verdict: state.RevisionRejected}, Tasks: j.Tasks}); err == nil {
		t.Error("a rejected revision enqueued tasks")
	}
	if _, err := s.Judge(ctx, state.Judgement{Revision: state.Revision{SHA: "ccc", Verdict: state.RevisionFailed}, Verdict: state.Verdict{Error: "x.yml:3: bad"}}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Verdict(ctx, "ccc"); v.Error != "x.yml:3: bad" {
		t.Errorf("failed verdict = %+v", v)
	}
	if _, err := s.Judge(ctx, state.Judgement{Revision: state.Revision{SHA: "ddd", Verdict: "maybe"}}); err == nil {
		t.Error("an unknown verdict was stored")
	}
	// Forget in a judgement, and all of a deployment's records.
	if _, err := s.Judge(ctx, state.Judgement{Revision: state.Revision{SHA: "eee", Verdict: state.RevisionAccepted}, Forget: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if renders, _ := s.DeploymentRenders(ctx); len(renders) != 0 {
		t.Errorf("renders after forget = %+v", renders)
	}
}

func TestAppliedInstancesAndVariables(t *testing.T) {
	s := openStore(t, pgtestDatabase(t))
	ctx := ctxFor(t)
	put := []state.AppliedInstance{
		{InstanceID: "i1", Deployment: "a", Data: json.RawMessage(`{"ips":{"n":"10.0.0.1"}}`)},
		{InstanceID: "i2", Deployment: "b", Data: json.RawMessage(`{}`)},
	}
	if err := s.PutAppliedInstances(ctx, put, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.AppliedInstances(ctx, "a"); err != nil || len(got) != 1 || got[0].InstanceID != "i1" {
		t.Fatalf("applied of a = %+v, %v", got, err)
	}
	if got, _ := s.AppliedInstances(ctx, ""); len(got) != 2 {
		t.Fatalf("all applied = %+v", got)
	}
	if err := s.PutAppliedInstances(ctx, nil, []string{"i1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetDeployment(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.AppliedInstances(ctx, ""); len(got) != 0 {
		t.Fatalf("applied after forgetting = %+v", got)
	}

	if err := s.AddSealedVariables(ctx, "a", map[string][]byte{"pw": []byte("one")}); err != nil {
		t.Fatal(err)
	}
	// The first value stored wins.
	if err := s.AddSealedVariables(ctx, "a", map[string][]byte{"pw": []byte("two"), "key": []byte("k")}); err != nil {
		t.Fatal(err)
	}
	vars, err := s.SealedVariables(ctx, "a")
	if err != nil || string(vars["pw"]) != "one" || string(vars["key"]) != "k" {
		t.Fatalf("vars = %q, %v", vars, err)
	}
	if ok, err := s.DeleteVariable(ctx, "a", "pw"); !ok || err != nil {
		t.Fatalf("delete = %v, %v", ok, err)
	}
	if ok, _ := s.DeleteVariable(ctx, "a", "pw"); ok {
		t.Error("deleted twice")
	}
}
