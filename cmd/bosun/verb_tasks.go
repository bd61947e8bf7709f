package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/state"
)

func init() {
	register(&command{name: "tasks", aliases: []string{"ts"}, summary: "list running and queued tasks; --recent [N] the last N (30) in any state", run: runTasks})
	register(&command{name: "task", aliases: []string{"t"}, summary: "show a task's progress (stage, instance, n/total, duration); --follow streams it to the end", run: runTask})
	register(&command{name: "cancel-task", aliases: []string{"ct"}, summary: "cancel a queued task, or ask a running one to stop", run: runCancelTask})
}

// recentFlag is --recent alone (30) or --recent=N; `--recent N` is taken from the
// positional arguments, as bosh accepts it.
type recentFlag struct {
	n   int
	set bool
}

func (r *recentFlag) String() string   { return strconv.Itoa(r.n) }
func (r *recentFlag) IsBoolFlag() bool { return true }
func (r *recentFlag) Set(v string) error {
	r.set = true
	switch v {
	case "true":
		r.n = 30
		return nil
	case "false":
		r.set, r.n = false, 0
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a number of tasks, got %q", v)
	}
	r.n = n
	return nil
}

func runTasks(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "tasks", "")
	rf := addRemoteFlags(fs, true)
	var recent recentFlag
	fs.Var(&recent, "recent", "show the last N tasks in any state (30 when N is not given; also -r)")
	fs.Var(&recent, "r", "show the last N tasks in any state")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if recent.set && len(pos) == 1 {
		if n, err := strconv.Atoi(pos[0]); err == nil && n > 0 {
			recent.n, pos = n, nil
		}
	}
	if err := noArgs("tasks", pos); err != nil {
		return err
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	q := api.TaskQuery{Deployment: rf.deployment, Limit: 1000}
	if recent.set {
		q.Limit = recent.n
	} else {
		q.States = []string{state.TaskQueued, state.TaskProcessing, state.TaskCancelling}
	}
	ts, err := cl.Tasks(ctx, q)
	if err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, ts)
	}
	var rows [][]string
	for _, t := range ts {
		rows = append(rows, []string{strconv.FormatInt(t.ID, 10), t.State, whenPtr(t.StartedAt), taskEnded(t), dash(t.User), dash(t.Deployment), t.Description, dash(oneLine(t.Result))})
	}
	if err := printTable(c.stdout, []string{"ID", "State", "Started At", "Finished At", "User", "Deployment", "Description", "Result"}, rows); err != nil {
		return err
	}
	what := "running or queued"
	if recent.set {
		what = "recent"
	}
	fmt.Fprintf(c.stdout, "\n%d %s tasks\n", len(ts), what)
	return nil
}

func taskEnded(t state.Task) string {
	if t.FinishedAt != nil {
		return when(*t.FinishedAt)
	}
	return "-"
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func parseTaskID(s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usageError("task id %q: want a task number (`bosun tasks --recent` lists them)", s)
	}
	return id, nil
}

// taskFailed is a task that ended other than done: the verb exits 1.
type taskFailed struct{ t state.Task }

func (e taskFailed) Error() string {
	msg := fmt.Sprintf("task %d %s", e.t.ID, e.t.State)
	if e.t.Result != "" {
		msg += ": " + e.t.Result
	}
	return msg
}

func runTask(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "task", "[ID]")
	rf := addRemoteFlags(fs, false)
	follow := fs.Bool("follow", false, "stream the task's progress until it ends (also -f)")
	fs.BoolVar(follow, "f", false, "stream the task's progress until it ends")
	debug := fs.Bool("debug", false, "print every event, in-progress ones too, with its raw fields")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	var id int64
	switch len(pos) {
	case 0:
		// As bosh task: the latest task.
		ts, err := cl.Tasks(ctx, api.TaskQuery{Limit: 1})
		if err != nil {
			return remoteError(err)
		}
		if len(ts) == 0 {
			return errors.New("no tasks yet")
		}
		id = ts[0].ID
	case 1:
		if id, err = parseTaskID(pos[0]); err != nil {
			return err
		}
	default:
		return usageError("want one task id, got %d arguments", len(pos))
	}
	return showTask(ctx, c, cl, id, *follow, *debug, rf.json)
}

// showTask prints task id's events and how it ended (or stands); following, it returns
// when the task ends, with an error if it did not end done.
func showTask(ctx context.Context, c *cli, cl *api.Client, id int64, follow, debug, asJSON bool) error {
	p := &taskPrinter{w: c.stdout, id: id, debug: debug, started: map[string]time.Time{}}
	if !asJSON {
		fmt.Fprintf(c.stdout, "Task %d\n\n", id)
	}
	var last state.Task
	err := cl.TaskOutput(ctx, id, 0, follow, func(l api.OutputLine) error {
		if asJSON {
			b, err := json.Marshal(l)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.stdout, "%s\n", b)
			if l.Task != nil {
				last = *l.Task
			}
			return err
		}
		if l.Event != nil {
			p.event(*l.Event)
		}
		if l.Task != nil {
			last = *l.Task
			p.summary(last)
		}
		return nil
	})
	if err != nil {
		return remoteError(err)
	}
	if state.TaskFinal(last.State) && last.State != state.TaskDone {
		return taskFailed{last}
	}
	return nil
}

// taskPrinter writes task events as bosh prints them.
type taskPrinter struct {
	w       io.Writer
	id      int64
	debug   bool
	started map[string]time.Time
}

func (p *taskPrinter) event(e state.TaskEvent) {
	if p.debug {
		b, _ := json.Marshal(e)
		fmt.Fprintf(p.w, "Task %d | %s | %s\n", p.id, e.Time.Local().Format("15:04:05"), b)
		return
	}
	if e.State == "in_progress" {
		return
	}
	what := e.Stage
	if len(e.Tags) > 0 {
		what += " " + strings.Join(e.Tags, ", ")
	}
	if e.Task != "" {
		what += ": " + e.Task
	}
	if e.Total > 1 {
		what += fmt.Sprintf(" (%d/%d)", e.Index, e.Total)
	}
	key := e.Stage + "\x00" + strings.Join(e.Tags, ",") + "\x00" + e.Task + "\x00" + strconv.Itoa(e.Index)
	switch e.State {
	case "started":
		p.started[key] = e.Time
	case "finished", "failed":
		if t0, ok := p.started[key]; ok {
			what += " (" + hms(e.Time.Sub(t0)) + ")"
		}
	}
	fmt.Fprintf(p.w, "Task %d | %s | %s", p.id, e.Time.Local().Format("15:04:05"), what)
	if e.State == "failed" {
		fmt.Fprintf(p.w, "\n            L Error: %s", e.Error)
	}
	fmt.Fprintln(p.w)
}

func (p *taskPrinter) summary(t state.Task) {
	fmt.Fprintln(p.w)
	if t.StartedAt != nil {
		fmt.Fprintf(p.w, "Task %d Started  %s\n", t.ID, when(*t.StartedAt))
	}
	if t.FinishedAt != nil {
		fmt.Fprintf(p.w, "Task %d Finished %s\n", t.ID, when(*t.FinishedAt))
		if t.StartedAt != nil {
			fmt.Fprintf(p.w, "Task %d Duration %s\n", t.ID, hms(t.FinishedAt.Sub(*t.StartedAt)))
		}
	}
	fmt.Fprintf(p.w, "Task %d %s\n", t.ID, t.State)
	if t.Result != "" {
		fmt.Fprintf(p.w, "\n%s\n", t.Result)
	}
}

func runCancelTask(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "cancel-task", "ID")
	rf := addRemoteFlags(fs, false)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError("want one task id (`bosun tasks` lists running ones)")
	}
	id, err := parseTaskID(pos[0])
	if err != nil {
		return err
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	t, err := cl.CancelTask(ctx, id)
	if err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, t)
	}
	switch t.State {
	case state.TaskCancelled:
		fmt.Fprintf(c.stdout, "Task %d cancelled before it started.\n", t.ID)
	default:
		fmt.Fprintf(c.stdout, "Task %d is %s: its worker stops at its next checkpoint. `bosun task %d --follow` shows when.\n", t.ID, t.State, t.ID)
	}
	return nil
}
