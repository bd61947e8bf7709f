package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// memBus is an in-memory Transport with NATS-style wildcard subjects.
type memBus struct {
	mu   sync.Mutex
	subs map[int]sub
	next int
}

type sub struct {
	pattern string
	handle  func(string, []byte)
}

func match(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}

func (b *memBus) Publish(subject string, data []byte) error {
	b.mu.Lock()
	var hs []func(string, []byte)
	for _, s := range b.subs {
		if match(s.pattern, subject) {
			hs = append(hs, s.handle)
		}
	}
	b.mu.Unlock()
	for _, h := range hs {
		go h(subject, data)
	}
	return nil
}

func (b *memBus) Subscribe(subject string, h func(string, []byte)) (func() error, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs == nil {
		b.subs = map[int]sub{}
	}
	b.next++
	id := b.next
	b.subs[id] = sub{subject, h}
	return func() error { b.mu.Lock(); delete(b.subs, id); b.mu.Unlock(); return nil }, nil
}

// fakeAgent answers with f's value or exception; f returning (nil, nil) stays silent.
func fakeAgent(t *testing.T, b *memBus, id string, f func(Request) (any, *Exception)) *[]Request {
	var mu sync.Mutex
	var seen []Request
	b.Subscribe(AgentSubject(id), func(_ string, data []byte) {
		var req Request
		if err := json.Unmarshal(data, &req); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		v, exc := f(req)
		if v == nil && exc == nil {
			return
		}
		var resp Response
		if exc != nil {
			resp.Exception = exc
		} else {
			resp.Value, _ = json.Marshal(v)
		}
		out, _ := json.Marshal(resp)
		b.Publish(req.ReplyTo, out)
	})
	return &seen
}

func newTestClient(t *testing.T, b *memBus) *Client {
	c, err := NewClient(b, "dir-1", ClientOptions{Timeout: 2 * time.Second, Timeouts: map[string]time.Duration{MethodPing: 50 * time.Millisecond, MethodGetTask: 100 * time.Millisecond}, PollInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCallShapesAndErrors(t *testing.T) {
	b := &memBus{}
	c := newTestClient(t, b)
	seen := fakeAgent(t, b, "a1", func(r Request) (any, *Exception) {
		switch r.Method {
		case MethodInfo:
			return Info{APIVersion: 1}, nil
		case "old":
			return nil, &Exception{Message: "unknown message old"}
		case MethodApply:
			return nil, &Exception{Message: "fetch package x: boom", Code: CodeBlobFetch}
		}
		return nil, nil
	})
	ctx := context.Background()
	info, err := c.Info(ctx, "a1")
	if err != nil || info.APIVersion != 1 {
		t.Fatalf("info = %+v, %v", info, err)
	}
	req := (*seen)[0]
	if req.Protocol != Version || !strings.HasPrefix(req.ReplyTo, "director.dir-1.a1.") || len(strings.Split(req.ReplyTo, ".")) != 4 {
		t.Fatalf("request envelope %+v", req)
	}
	if _, err := c.Call(ctx, "a1", "old"); !IsUnknownMethod(err) {
		t.Fatalf("stock unknown-method exception: %v", err)
	}
	if _, err := c.Call(ctx, "a1", MethodApply, ApplySpec{}); CodeOf(err) != CodeBlobFetch || !strings.Contains(err.Error(), "apply on agent a1: fetch package x: boom") {
		t.Fatalf("apply error: %v", err)
	}
	if err := c.Ping(ctx, "a1"); !errors.Is(err, ErrTimeout) {
		t.Fatalf("silent ping: %v, want ErrTimeout", err)
	}
}

func TestRunPollsTask(t *testing.T) {
	b := &memBus{}
	c := newTestClient(t, b)
	var mu sync.Mutex
	polls, silent := 0, 1
	seen := fakeAgent(t, b, "a1", func(r Request) (any, *Exception) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case MethodDrain:
			return TaskHandle{AgentTaskID: "t1", State: TaskRunning}, nil
		case MethodGetTask:
			if silent > 0 { // one lost reply: the client retries get_task
				silent--
				return nil, nil
			}
			polls++
			if polls < 3 {
				return TaskHandle{AgentTaskID: "t1", State: TaskRunning}, nil
			}
			return 0, nil
		case MethodStart:
			return "started", nil // old-style bare answer
		}
		return nil, nil
	})
	ctx := context.Background()
	n, err := c.Drain(ctx, "a1", "shutdown", nil)
	if err != nil || n != 0 {
		t.Fatalf("drain = %d, %v", n, err)
	}
	if err := c.Start(ctx, "a1"); err != nil {
		t.Fatal(err)
	}
	var methods []string
	for _, r := range *seen {
		methods = append(methods, r.Method)
	}
	want := []string{"drain", "get_task", "get_task", "get_task", "get_task", "start"}
	if diff := cmp.Diff(want, methods); diff != "" {
		t.Fatalf("calls (-want +got)\n%s", diff)
	}
}

func TestRunCancelsTaskWhenContextEnds(t *testing.T) {
	b := &memBus{}
	c := newTestClient(t, b)
	cancelled := make(chan string, 1)
	fakeAgent(t, b, "a1", func(r Request) (any, *Exception) {
		switch r.Method {
		case MethodCancelTask:
			var id string
			json.Unmarshal(r.Arguments[0], &id)
			cancelled <- id
			return "canceled", nil
		default:
			return TaskHandle{AgentTaskID: "t9", State: TaskRunning}, nil
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Stop(ctx, "a1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("stop = %v", err)
	}
	select {
	case id := <-cancelled:
		if id != "t9" {
			t.Fatalf("cancelled %s", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel_task not sent")
	}
}

func TestNewClientRejectsBadUUID(t *testing.T) {
	if _, err := NewClient(&memBus{}, "a.b", ClientOptions{}); err == nil {
		t.Fatal("accepted a director uuid with a dot")
	}
}

func FuzzTaskHandle(f *testing.F) {
	f.Add(`{"agent_task_id":"x","state":"running"}`)
	f.Add(`"pong"`)
	f.Add(`{"agent_task_id":"x","state":"done"}`)
	f.Fuzz(func(t *testing.T, in string) {
		h, ok := taskHandle(json.RawMessage(in))
		if ok && (h.AgentTaskID == "" || h.State != TaskRunning) {
			t.Fatalf("taskHandle(%q) = %+v, true", in, h)
		}
	})
}
