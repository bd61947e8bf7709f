package main

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

// A --dev director restarted after a crash (SIGKILL, OOM, power loss) finds the tasks its
// previous process held still "processing". The reaper would take them back once their
// heartbeat is a worker TTL old (30 s); a task whose owner is a process of this host
// that no longer exists is released at once instead. Only with --dev: there every
// director sharing the database runs on this machine, in one pid namespace, so a pid
// that does not exist is a director that is gone. A shared database may have directors
// in other pid namespaces under the same host name; those wait for the TTL.

func init() { directorPlugins = append(directorPlugins, releaseDeadOwners) }

func releaseDeadOwners(d *director) error {
	if !d.dev {
		return nil
	}
	host, err := os.Hostname()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tasks, err := d.store.Tasks(ctx, state.TaskFilter{States: []string{"processing", "cancelling"}, Limit: 1000})
	if err != nil {
		d.log.Warn("tasks of a previous director not checked; the reaper takes them back after the worker TTL", "err", err)
		return nil
	}
	for _, t := range tasks {
		if !deadOwner(t.Owner, host, os.Getpid()) {
			continue
		}
		if err := d.store.Release(ctx, t.ID, t.Owner); err != nil {
			d.log.Warn("task of a director that is gone not released; the reaper takes it back after the worker TTL", "task", t.ID, "owner", t.Owner, "err", err)
			continue
		}
		d.log.Info("released the task of a director that is gone", "task", t.ID, "owner", t.Owner)
	}
	return nil
}

// deadOwner reports whether a task owner ("host:pid/worker", as the worker pool names
// them) is a process of host, other than self, that no longer exists.
func deadOwner(owner, host string, self int) bool {
	prefix, _, _ := strings.Cut(owner, "/")
	i := strings.LastIndexByte(prefix, ':')
	if i <= 0 || prefix[:i] != host {
		return false
	}
	pid, err := strconv.Atoi(prefix[i+1:])
	if err != nil || pid <= 1 || pid == self {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
