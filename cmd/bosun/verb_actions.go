package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/api"
)

func init() {
	register(&command{name: "reconcile", summary: "look for new commits now instead of at the next poll (flux reconcile)", run: runReconcile})
	register(&command{name: "suspend", summary: "stop reconciling a deployment until `bosun resume` (flux suspend); running tasks finish", run: runSuspend})
	register(&command{name: "resume", summary: "reconcile a suspended deployment again", run: runResume})
	for _, a := range []struct{ verb, summary string }{
		{"recreate", "recreate the VMs of a deployment, an instance group or one instance, then follow the task"},
		{"restart", "restart the jobs of a deployment, an instance group or one instance, then follow the task"},
		{"stop", "stop the jobs (--hard: delete the VMs, keep the disks) of a deployment, group or instance"},
		{"start", "start the jobs of a stopped deployment, instance group or instance, then follow the task"},
	} {
		register(&command{name: a.verb, summary: a.summary, run: func(ctx context.Context, c *cli, args []string) error { return runAction(ctx, c, a.verb, args) }})
	}
	register(&command{name: "cck", aliases: []string{"cloud-check"}, summary: "scan a deployment for VMs, agents and disks out of step with what the director recorded", run: runCCK})
	register(&command{name: "logs", summary: "download an instance's (or a group's) job logs and unpack them", run: runLogs})
}

func runReconcile(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "reconcile", "")
	rf := addRemoteFlags(fs, false)
	cl, err := remoteVerb(fs, rf, "reconcile", args)
	if err != nil {
		return err
	}
	if err := cl.Reconcile(ctx); err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, map[string]string{"reconcile": "requested"})
	}
	fmt.Fprintln(c.stdout, "Reconciliation requested: the director looks for new commits now. `bosun tasks` shows what it starts.")
	return nil
}

func runSuspend(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "suspend", "-d DEPLOYMENT")
	rf := addRemoteFlags(fs, true)
	reason := fs.String("reason", "", "why, for the audit trail and `bosun deployments`")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	d, rest, err := deploymentArg(rf, pos, "suspend", true)
	if err != nil {
		return err
	}
	if err := noArgs("suspend", rest); err != nil {
		return err
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	su, err := cl.Suspend(ctx, d, *reason)
	if err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, su)
	}
	fmt.Fprintf(c.stdout, "Deployment %s is suspended (by %s since %s): new commits are not applied to it until `bosun resume -d %s`.\n", d, su.User, when(su.Since), d)
	return nil
}

func runResume(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "resume", "-d DEPLOYMENT")
	rf := addRemoteFlags(fs, true)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	d, rest, err := deploymentArg(rf, pos, "resume", true)
	if err != nil {
		return err
	}
	if err := noArgs("resume", rest); err != nil {
		return err
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	was, err := cl.Resume(ctx, d)
	if err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, map[string]any{"deployment": d, "was_suspended": was})
	}
	if !was {
		fmt.Fprintf(c.stdout, "Deployment %s was not suspended; nothing changed.\n", d)
		return nil
	}
	fmt.Fprintf(c.stdout, "Deployment %s is reconciled again from its next commit (`bosun reconcile` looks now).\n", d)
	return nil
}

// splitTarget reads GROUP or GROUP/ID|INDEX.
func splitTarget(s string) (group, instance string, err error) {
	group, instance, _ = strings.Cut(s, "/")
	if group == "" || strings.Contains(instance, "/") || strings.HasSuffix(s, "/") {
		return "", "", usageError("%q: want GROUP or GROUP/INDEX or GROUP/ID, like web or web/0", s)
	}
	return group, instance, nil
}

func runAction(ctx context.Context, c *cli, verb string, args []string) error {
	fs := newFlagSet(c, verb, "-d DEPLOYMENT [GROUP[/ID|INDEX]]")
	rf := addRemoteFlags(fs, true)
	noFollow := fs.Bool("no-follow", false, "return once the task is queued instead of following it")
	var hard *bool
	if verb == "stop" {
		hard = fs.Bool("hard", false, "delete the VMs and keep their persistent disks (bosh stop --hard)")
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	d, rest, err := deploymentArg(rf, pos, verb, true)
	if err != nil {
		return err
	}
	req := api.ActionRequest{Action: verb}
	if hard != nil {
		req.Hard = *hard
	}
	switch len(rest) {
	case 0:
	case 1:
		if req.Group, req.Instance, err = splitTarget(rest[0]); err != nil {
			return err
		}
	default:
		return usageError("want at most one GROUP[/ID|INDEX] after the deployment, got %q", strings.Join(rest, " "))
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	t, err := cl.Act(ctx, d, req)
	if err != nil {
		return remoteError(err)
	}
	if rf.json && *noFollow {
		return printJSON(c.stdout, t)
	}
	if !rf.json {
		fmt.Fprintf(c.stdout, "Task %d queued: %s\n", t.ID, t.Description)
	}
	if *noFollow {
		fmt.Fprintf(c.stdout, "`bosun task %d --follow` shows its progress.\n", t.ID)
		return nil
	}
	if !rf.json {
		fmt.Fprintln(c.stdout)
	}
	return showTask(ctx, c, cl, t.ID, true, false, rf.json)
}

func runLogs(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "logs", "-d DEPLOYMENT GROUP[/ID|INDEX]")
	rf := addRemoteFlags(fs, true)
	dir := fs.String("dir", ".", "where to put the logs: one directory per instance")
	keepTgz := fs.Bool("tgz", false, "save the gzipped tarball as it came instead of unpacking it")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	d, rest, err := deploymentArg(rf, pos, "logs", true)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return usageError("want GROUP or GROUP/INDEX after the deployment, like `bosun logs -d %s web/0`", d)
	}
	group, inst, err := splitTarget(rest[0])
	if err != nil {
		return err
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	is, err := cl.Instances(ctx, d, false)
	if err != nil {
		return remoteError(err)
	}
	var targets []api.Instance
	for _, i := range is {
		if i.Group == group && (inst == "" || inst == strconv.Itoa(i.Index) || inst == i.ID || len(inst) >= 4 && strings.HasPrefix(i.ID, inst)) {
			targets = append(targets, i)
		}
	}
	if len(targets) == 0 {
		return fmt.Errorf("deployment %s has no instance %s: `bosun instances -d %s` lists them", d, rest[0], d)
	}
	stamp := time.Now().UTC().Format("20060102-150405")
	type result struct {
		Instance string `json:"instance"`
		Path     string `json:"path"`
		Files    int    `json:"files,omitempty"`
	}
	var out []result
	for _, i := range targets {
		name := fmt.Sprintf("%s.%s.%d.%s", d, i.Group, i.Index, stamp)
		var buf bytes.Buffer
		if err := cl.Logs(ctx, d, i.Group, i.ID, &buf); err != nil {
			return remoteError(err)
		}
		var path string
		var files int
		if *keepTgz {
			path = filepath.Join(*dir, name+".tgz")
			if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
				return fmt.Errorf("save logs of %s/%d: %w", i.Group, i.Index, err)
			}
		} else {
			path = filepath.Join(*dir, name)
			if files, err = untarGz(&buf, path); err != nil {
				return fmt.Errorf("unpack logs of %s/%d: %w", i.Group, i.Index, err)
			}
		}
		out = append(out, result{Instance: i.Group + "/" + strconv.Itoa(i.Index), Path: path, Files: files})
		if !rf.json {
			if *keepTgz {
				fmt.Fprintf(c.stdout, "%s/%d: logs saved to %s\n", i.Group, i.Index, path)
			} else {
				fmt.Fprintf(c.stdout, "%s/%d: %d log files unpacked into %s\n", i.Group, i.Index, files, path)
			}
		}
	}
	if rf.json {
		return printJSON(c.stdout, out)
	}
	return nil
}

// untarGz unpacks a gzipped tar into dir (created, private: logs may hold secrets),
// refusing entries that would land outside it. Only files and directories are made.
func untarGz(r io.Reader, dir string) (int, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return 0, fmt.Errorf("not a gzipped tarball: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	tr := tar.NewReader(zr)
	files := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return files, fmt.Errorf("read tarball: %w", err)
		}
		name := filepath.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return files, fmt.Errorf("tarball entry %q points outside the log directory", h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return files, err
			}
		case tar.TypeReg:
			if d := filepath.Dir(name); d != "." {
				if err := root.MkdirAll(d, 0o700); err != nil {
					return files, err
				}
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return files, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return files, fmt.Errorf("write %s: %w", name, err)
			}
			files++
		}
	}
}
