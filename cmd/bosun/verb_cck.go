package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/bosun-gitops/bosun/api"
	"github.com/bosun-gitops/bosun/state"
)

// problemsFound makes cck exit 1 when it found something, as bosh cck --report does.
type problemsFound int

func (n problemsFound) Error() string {
	if n == 1 {
		return "1 problem found"
	}
	return fmt.Sprintf("%d problems found", int(n))
}

// resolutionsFailed makes cck exit 1 when a resolution could not be applied.
type resolutionsFailed int

func (n resolutionsFailed) Error() string {
	if n == 1 {
		return "1 resolution failed"
	}
	return fmt.Sprintf("%d resolutions failed", int(n))
}

// cckResult is what `bosun cck --json` prints when it resolves: what was done about each
// problem, and the tasks queued (as they ended, when followed).
type cckResult struct {
	Resolutions []api.Resolution `json:"resolutions"`
	Tasks       []state.Task     `json:"tasks"`
}

func runCCK(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "cck", "-d DEPLOYMENT [--auto] [--resolution TYPE|NUMBER=RESOLUTION]...")
	rf := addRemoteFlags(fs, true)
	auto := fs.Bool("auto", false, "apply each problem's default resolution (the first one listed)")
	var chosen multiFlag
	fs.Var(&chosen, "resolution", "`TYPE=RESOLUTION` or NUMBER=RESOLUTION (NUMBER as the report numbers problems), like missing_vm=recreate_vm; repeatable; problems without one are left alone unless --auto")
	noFollow := fs.Bool("no-follow", false, "return once recreate tasks are queued instead of following them")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	d, rest, err := deploymentArg(rf, pos, "cck", true)
	if err != nil {
		return err
	}
	if err := noArgs("cck", rest); err != nil {
		return err
	}
	req := api.ResolveRequest{Auto: *auto}
	for _, r := range chosen {
		k, v, ok := strings.Cut(r, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return usageError("--resolution %q: want TYPE=RESOLUTION or NUMBER=RESOLUTION, like missing_vm=recreate_vm or 2=ignore", r)
		}
		if req.Resolutions == nil {
			req.Resolutions = map[string]string{}
		}
		if prev, dup := req.Resolutions[k]; dup && prev != v {
			return usageError("--resolution %s given twice (%s and %s)", k, prev, v)
		}
		req.Resolutions[k] = v
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	if !req.Auto && len(req.Resolutions) == 0 {
		return reportProblems(ctx, c, cl, d, rf.json)
	}
	rs, err := cl.ResolveProblems(ctx, d, req)
	if err != nil {
		return remoteError(err)
	}
	var taskIDs []int64
	failed := 0
	for _, r := range rs {
		if r.Error != "" {
			failed++
		}
		if r.TaskID != 0 && !slices.Contains(taskIDs, r.TaskID) {
			taskIDs = append(taskIDs, r.TaskID)
		}
	}
	if rf.json {
		res := cckResult{Resolutions: rs, Tasks: []state.Task{}}
		for _, id := range taskIDs {
			if !*noFollow {
				// Followed quietly: the JSON is one document, with the tasks as they ended.
				if err := showTask(ctx, &cli{stdout: io.Discard, stderr: c.stderr}, cl, id, true, false, true); err != nil {
					if _, ok := err.(taskFailed); !ok {
						return err
					}
				}
			}
			t, err := cl.Task(ctx, id)
			if err != nil {
				return remoteError(err)
			}
			res.Tasks = append(res.Tasks, t)
		}
		if err := printJSON(c.stdout, res); err != nil {
			return err
		}
		for _, t := range res.Tasks {
			if state.TaskFinal(t.State) && t.State != state.TaskDone {
				return taskFailed{t}
			}
		}
		if failed > 0 {
			return resolutionsFailed(failed)
		}
		return nil
	}
	var rows [][]string
	left := 0
	for _, r := range rs {
		res, task, result := r.Resolution, "-", "done"
		switch {
		case r.Resolution == "":
			res, result = "-", "left as it is (no resolution chosen)"
			left++
		case r.Error != "":
			result = "failed: " + r.Error
		case r.TaskID != 0:
			result = "queued"
		}
		if r.TaskID != 0 {
			task = strconv.FormatInt(r.TaskID, 10)
		}
		rows = append(rows, []string{strconv.Itoa(r.Problem.ID), r.Problem.Type, dash(r.Problem.Instance), res, task, result})
	}
	if err := printTable(c.stdout, []string{"#", "Type", "Instance", "Resolution", "Task", "Result"}, rows); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d problems: %d resolved, %d failed, %d left as they are\n", len(rs), len(rs)-failed-left, failed, left)
	for _, id := range taskIDs {
		if *noFollow {
			fmt.Fprintf(c.stdout, "`bosun task %d --follow` shows the progress of task %d.\n", id, id)
			continue
		}
		fmt.Fprintln(c.stdout)
		if err := showTask(ctx, c, cl, id, true, false, false); err != nil {
			return err
		}
	}
	if failed > 0 {
		return resolutionsFailed(failed)
	}
	return nil
}

// reportProblems is cck without a resolution: the scan, exiting 1 when it found something.
func reportProblems(ctx context.Context, c *cli, cl *api.Client, d string, asJSON bool) error {
	probs, err := cl.CloudCheck(ctx, d)
	if err != nil {
		return remoteError(err)
	}
	if asJSON {
		if err := printJSON(c.stdout, probs); err != nil {
			return err
		}
	} else {
		var rows [][]string
		for _, p := range probs {
			rows = append(rows, []string{strconv.Itoa(p.ID), p.Type, dash(p.Instance), p.Description, dash(strings.Join(p.Resolutions, ", "))})
		}
		if err := printTable(c.stdout, []string{"#", "Type", "Instance", "Description", "Resolutions"}, rows); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "\n%d problems\n", len(probs))
		if len(probs) > 0 {
			fmt.Fprintf(c.stdout, "`bosun cck -d %s --auto` applies each problem's default (the first resolution); --resolution TYPE=RESOLUTION picks another.\n", d)
		}
	}
	if len(probs) > 0 {
		return problemsFound(len(probs))
	}
	return nil
}
