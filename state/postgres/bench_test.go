package postgres_test

import (
	"fmt"
	"testing"

	"github.com/bosun-gitops/bosun/state"
)

// BenchmarkClaimFinish measures one task's trip through the queue: claim (with its
// deployment lock) and finish, against a backlog of queued tasks over 10 deployments.
func BenchmarkClaimFinish(b *testing.B) {
	s := openStoreB(b)
	ctx := b.Context()
	for i := range b.N {
		if _, err := s.Enqueue(ctx, state.Task{Type: "deploy", Deployment: fmt.Sprintf("d%d", i%10)}); err != nil {
			b.Fatal(err)
		}
	}
	// Statistics as autovacuum keeps them on a running director; without them the planner
	// cannot know the queued-task index is selective.
	if err := s.Analyze(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		t, err := s.Claim(ctx, "bench", nil)
		if err != nil || t == nil {
			b.Fatalf("claim: %v, %v", t, err)
		}
		if err := s.Finish(ctx, t.ID, "bench", state.TaskDone, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAddTaskEvent measures appending one progress event to a task's log.
func BenchmarkAddTaskEvent(b *testing.B) {
	s := openStoreB(b)
	ctx := b.Context()
	t, err := s.Enqueue(ctx, state.Task{Type: "deploy"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.AddTaskEvent(ctx, state.TaskEvent{TaskID: t.ID, Stage: "Updating instance", Task: "web/0", Index: i, Total: b.N, State: "started"}); err != nil {
			b.Fatal(err)
		}
	}
}
