package agent_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/bosun-gitops/bosun/agent/protocol"
)

// entry is what a migration must keep of a file.
type entry struct {
	Mode    fs.FileMode
	ModTime time.Time
	Link    string
	Data    string
}

// tree reads everything beneath dir (not following symlinks).
func tree(t *testing.T, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := entry{Mode: info.Mode(), ModTime: info.ModTime().UTC()}
		switch {
		case info.Mode().Type() == fs.ModeSymlink:
			e.Link, err = os.Readlink(path)
		case info.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(path)
			e.Data = string(b)
		}
		out[rel] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fillDisk writes nested directories (one read-only), files of several modes and
// symlinks with whole-second times into dir.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "postgres", "base", "1"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "postgres", "base", "1", "table"), []byte("rows"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "postgres", "start.sh"), []byte("#!/bin/sh\n"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "top"), []byte("top-level"), 0o640))
	must(os.Symlink("postgres/base/1/table", filepath.Join(dir, "current")))
	must(os.Symlink("/nowhere/at/all", filepath.Join(dir, "dangling")))
	must(os.MkdirAll(filepath.Join(dir, "sealed"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "sealed", "key"), []byte("secret"), 0o400))
	must(os.Chmod(filepath.Join(dir, "sealed"), 0o555))
	t.Cleanup(func() { os.Chmod(filepath.Join(dir, "sealed"), 0o755) })
	when := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	tv := unix.NsecToTimeval(when.UnixNano())
	// Deepest first, so setting a child's time does not disturb its parent's.
	for _, rel := range []string{"postgres/base/1/table", "postgres/base/1", "postgres/base", "postgres/start.sh", "postgres", "top", "sealed/key", "sealed"} {
		must(os.Chtimes(filepath.Join(dir, rel), when, when))
	}
	for _, rel := range []string{"current", "dangling"} {
		must(unix.Lutimes(filepath.Join(dir, rel), []unix.Timeval{tv, tv}))
	}
}

func diskMessage(t *testing.T, d *director, id, method, cid string) string {
	t.Helper()
	v, err := d.client.Run(context.Background(), id, method, cid)
	if err != nil {
		t.Fatalf("%s %s: %v", method, cid, err)
	}
	var r struct{ Message string }
	if err := json.Unmarshal(v, &r); err != nil {
		t.Fatalf("%s %s reply %s: %v", method, cid, v, err)
	}
	return r.Message
}

func listDisks(t *testing.T, d *director, id string) []string {
	t.Helper()
	disks, err := d.client.ListDisk(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return disks
}

func wantDiskErr(t *testing.T, err error, what, contains string) {
	t.Helper()
	if protocol.CodeOf(err) != protocol.CodeDisk || !strings.Contains(err.Error(), contains) {
		t.Fatalf("%s: got %v, want a disk error saying %q", what, err, contains)
	}
}

// TestDiskMigration drives BOSH's disk migration through the real agent over the bus:
// mount the new disk beside the old, migrate_disk, then unmount, detach (as the local
// CPI does) and mount the new disk at store. The local CPI places a disk at store
// itself when no other disk of the VM is hinted there, so either disk may be a real
// directory at store rather than one the agent links store to.
func TestDiskMigration(t *testing.T) {
	const (
		linked   = "both disks linked at store"
		oldAt    = "old disk placed at store by the CPI"
		newAt    = "new disk placed at store by the CPI"
		storeRel = "/var/vcap/store"
	)
	for _, placement := range []string{linked, oldAt, newAt} {
		t.Run(placement, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			d := newDirector(t)
			const id = "agent-m"
			root := t.TempDir()
			vcap := filepath.Join(root, "var", "vcap")
			store := filepath.Join(vcap, "store")
			hints := map[string]string{"disk-old": storeRel + "-disk-old", "disk-new": storeRel + "-disk-new", "disk-third": storeRel + "-disk-third"}
			switch placement {
			case oldAt:
				hints["disk-old"] = storeRel
			case newAt:
				hints["disk-new"] = storeRel
			}
			dir := func(cid string) string { return filepath.Join(root, hints[cid]) }
			for _, cid := range []string{"disk-old", "disk-new", "disk-third"} {
				if err := os.MkdirAll(dir(cid), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			fillDisk(t, dir("disk-old"))
			want := tree(t, dir("disk-old"))
			kill := d.runAgent(t, id, root, map[string]string{"disk-old": hints["disk-old"]})

			if err := d.client.MountDisk(ctx, id, "disk-old"); err != nil {
				t.Fatal(err)
			}
			if placement == newAt {
				// attach_disk: the local CPI removes the link at store and moves the new
				// disk there.
				if err := os.Remove(store); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(store, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// The new disks arrive as the director attaches them, with the local CPI's hint.
			for _, cid := range []string{"disk-new", "disk-third"} {
				hint := map[string]string{"path": hints[cid], "id": cid}
				if _, err := d.client.Run(ctx, id, protocol.MethodAddPersistentDisk, cid, hint); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.client.MigrateDisk(ctx, id); err == nil {
				t.Fatal("migrate_disk without a migration target succeeded")
			} else {
				wantDiskErr(t, err, "migrate_disk without a target", "no disk is mounted as a migration target")
			}
			for range 2 { // mounting the target again changes nothing
				if err := d.client.MountDisk(ctx, id, "disk-new"); err != nil {
					t.Fatal(err)
				}
			}
			if link, err := os.Readlink(filepath.Join(vcap, "store_migration_target")); err != nil || link != dir("disk-new") {
				t.Fatalf("store_migration_target -> %q, %v; want %s", link, err, dir("disk-new"))
			}
			if diff := cmp.Diff([]string{"disk-old", "disk-new"}, listDisks(t, d, id)); diff != "" {
				t.Fatalf("list_disk with a migration target (-want +got):\n%s", diff)
			}
			wantDiskErr(t, d.client.MountDisk(ctx, id, "disk-third"), "mount of a third disk", "as the migration target")

			// A migration cut short by a crash: part of the data is on the new disk, some
			// of it stale or of the wrong kind, and the agent restarts.
			kill()
			newDir := dir("disk-new")
			os.MkdirAll(filepath.Join(newDir, "postgres", "base", "1"), 0o755)
			os.WriteFile(filepath.Join(newDir, "postgres", "base", "1", "table"), []byte("ro"), 0o644)
			os.WriteFile(filepath.Join(newDir, "current"), []byte("not yet a link"), 0o644)
			os.WriteFile(filepath.Join(newDir, "sealed"), []byte("not yet a directory"), 0o644)
			d.runAgent(t, id, root, map[string]string{"disk-old": hints["disk-old"]})

			for range 2 { // the second finds the work done
				if err := d.client.MigrateDisk(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			if diff := cmp.Diff(want, tree(t, newDir)); diff != "" {
				t.Errorf("the new disk after migrate_disk (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"disk-new"}, listDisks(t, d, id)); diff != "" {
				t.Errorf("list_disk after migrate_disk (-want +got):\n%s", diff)
			}
			for _, gone := range []string{"store_migration_target", "bosh/migration_target_disk"} {
				if _, err := os.Lstat(filepath.Join(vcap, gone)); !os.IsNotExist(err) {
					t.Errorf("%s is left after migrate_disk: %v", gone, err)
				}
			}
			switch placement {
			case oldAt:
				// Still the old disk's directory, for the CPI to take away on detach.
				if diff := cmp.Diff(want, tree(t, store)); diff != "" {
					t.Errorf("store after migrate_disk (-want +got):\n%s", diff)
				}
				wantDiskErr(t, d.client.MountDisk(ctx, id, "disk-new"), "mount_disk of the new disk before the old one is detached", "detach disk-old first")
			case linked:
				if link, err := os.Readlink(store); err != nil || link != newDir {
					t.Errorf("store -> %q, %v after migrate_disk; want %s", link, err, newDir)
				}
			}

			if msg := diskMessage(t, d, id, protocol.MethodUnmountDisk, "disk-old"); msg != "Partition of disk-old is not mounted" {
				t.Errorf("unmount_disk of the old disk: %q", msg)
			}
			// detach_disk: the local CPI moves the disk out, leaving an empty store
			// directory where the disk was store itself.
			if err := os.Rename(dir("disk-old"), filepath.Join(root, "detached-disk-old")); err != nil {
				t.Fatal(err)
			}
			if placement == oldAt {
				if err := os.Mkdir(store, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := d.client.Run(ctx, id, protocol.MethodRemovePersistentDisk, "disk-old"); err != nil {
				t.Fatal(err)
			}
			if err := d.client.MountDisk(ctx, id, "disk-new"); err != nil {
				t.Fatal(err)
			}
			if link, err := os.Readlink(store); placement != newAt && (err != nil || link != newDir) {
				t.Fatalf("store -> %q, %v after mount_disk; want %s", link, err, newDir)
			}
			if diff := cmp.Diff(want, tree(t, store+"/")); diff != "" {
				t.Errorf("store after mount_disk (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"disk-new"}, listDisks(t, d, id)); diff != "" {
				t.Errorf("list_disk at the end (-want +got):\n%s", diff)
			}
			// With no target, a third disk is mounted as the next migration's.
			if err := d.client.MountDisk(ctx, id, "disk-third"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"disk-new", "disk-third"}, listDisks(t, d, id)); diff != "" {
				t.Errorf("list_disk with the next target (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDiskMigrationAbandoned: a migration target the director gives up on is unmounted
// like any disk, and migrate_disk then has nothing to copy onto.
func TestDiskMigrationAbandoned(t *testing.T) {
	ctx := context.Background()
	d := newDirector(t)
	const id = "agent-ma"
	disks := map[string]string{}
	for _, cid := range []string{"disk-a", "disk-b", "disk-c"} {
		disks[cid] = t.TempDir()
	}
	os.WriteFile(filepath.Join(disks["disk-a"], "data"), []byte("a"), 0o644)
	root := d.startAgent(t, id, disks)
	if err := d.client.MountDisk(ctx, id, "disk-b"); err != nil {
		t.Fatal(err)
	}
	wantDiskErr(t, d.client.MigrateDisk(ctx, id), "migrate_disk with nothing mounted", "no disk is mounted as a migration target")
	if msg := diskMessage(t, d, id, protocol.MethodUnmountDisk, "disk-b"); msg != "Unmounted partition of disk-b" {
		t.Fatalf("unmount_disk of the disk at store: %q", msg)
	}
	for _, cid := range []string{"disk-a", "disk-b"} {
		if err := d.client.MountDisk(ctx, id, cid); err != nil {
			t.Fatal(err)
		}
	}
	if msg := diskMessage(t, d, id, protocol.MethodUnmountDisk, "disk-b"); msg != "Unmounted partition of disk-b" {
		t.Fatalf("unmount_disk of the migration target: %q", msg)
	}
	if _, err := os.Lstat(filepath.Join(root, "var", "vcap", "store_migration_target")); !os.IsNotExist(err) {
		t.Fatalf("store_migration_target after unmount: %v", err)
	}
	if diff := cmp.Diff([]string{"disk-a"}, listDisks(t, d, id)); diff != "" {
		t.Fatalf("list_disk (-want +got):\n%s", diff)
	}
	wantDiskErr(t, d.client.MigrateDisk(ctx, id), "migrate_disk after the target is unmounted", "no disk is mounted as a migration target")
	if err := d.client.MountDisk(ctx, id, "disk-c"); err != nil {
		t.Fatal(err)
	}
	if err := d.client.MigrateDisk(ctx, id); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "var", "vcap", "store", "data")); err != nil || string(b) != "a" {
		t.Fatalf("store/data after migrating onto disk-c: %q, %v", b, err)
	}
	if link, _ := os.Readlink(filepath.Join(root, "var", "vcap", "store")); link != disks["disk-c"] {
		t.Fatalf("store -> %q, want %s", link, disks["disk-c"])
	}
}
