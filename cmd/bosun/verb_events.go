package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/api"
)

func init() {
	register(&command{name: "events", summary: "list the audit trail: who did what, to which deployment and instance, by which task", run: runEvents})
	register(&command{name: "locks", summary: "list deployment locks: which task holds each, on which director, for how long", run: runLocks})
	register(&command{name: "revisions", summary: "list judged source commits: verdict, policy messages, task", run: runRevisions})
	register(&command{name: "sources", summary: "list tracked repositories: branch, last seen and applied commits, next poll", run: runSources})
}

func runEvents(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "events", "")
	rf := addRemoteFlags(fs, true)
	instance := fs.String("instance", "", "only events of this instance: GROUP/INDEX or GROUP/ID (needs -d for an index)")
	task := fs.Int64("task", 0, "only events of this task")
	since := fs.String("since", "", "only events since: an RFC 3339 time or a duration back (2h)")
	until := fs.String("until", "", "only events before: an RFC 3339 time or a duration back")
	before := fs.Int64("before-id", 0, "only events older than this id (page back)")
	limit := fs.Int("limit", 200, "at most this many events (up to 1000)")
	cl, err := remoteVerb(fs, rf, "events", args)
	if err != nil {
		return err
	}
	evs, err := cl.Events(ctx, api.EventQuery{Deployment: rf.deployment, Instance: *instance, TaskID: *task, Since: *since, Until: *until, BeforeID: *before, Limit: *limit})
	if err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, evs)
	}
	var rows [][]string
	for _, e := range evs {
		task := "-"
		if e.TaskID != 0 {
			task = strconv.FormatInt(e.TaskID, 10)
		}
		ctxText := "-"
		if len(e.Context) > 0 {
			b, _ := json.Marshal(e.Context)
			ctxText = string(b)
		}
		rows = append(rows, []string{strconv.FormatInt(e.ID, 10), when(e.Time), dash(e.User), e.Action, e.ObjectType, dash(e.ObjectName),
			task, dash(e.Deployment), dash(e.Instance), ctxText, dash(oneLine(e.Error))})
	}
	if err := printTable(c.stdout, []string{"ID", "Time", "User", "Action", "Object Type", "Object Name", "Task ID", "Deployment", "Instance", "Context", "Error"}, rows); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d events\n", len(evs))
	return nil
}

func runLocks(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "locks", "")
	rf := addRemoteFlags(fs, false)
	cl, err := remoteVerb(fs, rf, "locks", args)
	if err != nil {
		return err
	}
	ls, err := cl.Locks(ctx)
	if err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, ls)
	}
	var rows [][]string
	for _, l := range ls {
		rows = append(rows, []string{"deployment", l.Deployment, strconv.FormatInt(l.TaskID, 10), l.Owner, when(l.Since), hms(l.Age)})
	}
	if err := printTable(c.stdout, []string{"Type", "Resource", "Task ID", "Held By", "Since", "Age"}, rows); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d locks\n", len(ls))
	return nil
}

func runRevisions(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "revisions", "")
	rf := addRemoteFlags(fs, false)
	limit := fs.Int("limit", 30, "at most this many revisions, newest first")
	cl, err := remoteVerb(fs, rf, "revisions", args)
	if err != nil {
		return err
	}
	vs, err := cl.Revisions(ctx, *limit)
	if err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, vs)
	}
	var rows [][]string
	for _, v := range vs {
		task := "-"
		if v.TaskID != 0 {
			task = strconv.FormatInt(v.TaskID, 10)
		}
		subject, _, _ := strings.Cut(v.Message, "\n")
		rows = append(rows, []string{short(v.SHA), when(v.Received), v.Verdict, dash(v.Author), task, dash(oneLine(subject)), dash(strings.Join(v.PolicyMessages, "; "))})
	}
	if err := printTable(c.stdout, []string{"Commit", "Received", "Verdict", "Author", "Task ID", "Subject", "Policy"}, rows); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d revisions\n", len(vs))
	return nil
}

func runSources(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "sources", "")
	rf := addRemoteFlags(fs, false)
	cl, err := remoteVerb(fs, rf, "sources", args)
	if err != nil {
		return err
	}
	ss, err := cl.Sources(ctx)
	if err != nil {
		return remoteError(err)
	}
	sort.Slice(ss, func(a, b int) bool { return ss[a].Name < ss[b].Name })
	if rf.json {
		return printJSON(c.stdout, ss)
	}
	var rows [][]string
	for _, s := range ss {
		next := "-"
		if !s.NextPoll.IsZero() {
			next = when(s.NextPoll)
			if d := time.Until(s.NextPoll); d > 0 {
				next += " (in " + d.Round(time.Second).String() + ")"
			}
		}
		last := "-"
		if !s.LastPoll.IsZero() {
			last = when(s.LastPoll)
		}
		rows = append(rows, []string{s.Name, s.Repository, s.Branch, dash(short(s.LastSeen)), dash(short(s.LastApplied)), last, next, dash(oneLine(s.Error))})
	}
	if err := printTable(c.stdout, []string{"Name", "Repository", "Branch", "Last Seen", "Last Applied", "Last Poll", "Next Poll", "Error"}, rows); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d sources\n", len(ss))
	return nil
}
