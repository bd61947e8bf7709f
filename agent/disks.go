package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/bosun-gitops/bosun/agent/protocol"
)

// Disks on this agent are directories named by the CPI's hint (the local CPI's disks);
// mounting points store/ at the directory, so jobs see /var/vcap/store as on a VM.

func (a *Agent) diskPath(cid string) (string, error) {
	a.settingsMu.Lock()
	raw, ok := a.settings.Disks.Persistent[cid]
	a.settingsMu.Unlock()
	if !ok {
		return "", protocol.Errorf(protocol.CodeDisk, "disk %s is not in the agent's settings (disks.persistent)", cid)
	}
	var path string
	if json.Unmarshal(raw, &path) != nil {
		var h struct {
			Path string `json:"path"`
		}
		json.Unmarshal(raw, &h)
		path = h.Path
	}
	if path == "" {
		return "", protocol.Errorf(protocol.CodeDisk, "disk %s: hint %s names no directory; this agent mounts directory-backed disks", cid, raw)
	}
	// A CPI that moves the disk into the VM (the local CPI) hints with the path as the
	// VM sees it, beneath this agent's root.
	path = a.paths.host(path)
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		return "", protocol.Errorf(protocol.CodeDisk, "disk %s: %s is not a directory", cid, path)
	}
	return path, nil
}

// A disk mounted beside the one at store (to migrate onto) is reached through
// store_migration_target, as BOSH's agent mounts it at /var/vcap/store_migration_target.
func (p paths) migrationTarget() string { return filepath.Join(p.vcap, "store_migration_target") }

// The disk records in bosh/: the disk at store, the disk at the migration target, and
// the disk the last migrate_disk moved onto (so a repeated migrate_disk after success
// is answered, not refused).
func (a *Agent) mountedDiskFile() string { return filepath.Join(a.paths.boshDir(), "mounted_disk") }
func (a *Agent) migrationDiskFile() string {
	return filepath.Join(a.paths.boshDir(), "migration_target_disk")
}
func (a *Agent) lastMigratedDiskFile() string {
	return filepath.Join(a.paths.boshDir(), "migrated_disk")
}

func readCID(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func (a *Agent) mountedDisk() string   { return readCID(a.mountedDiskFile()) }
func (a *Agent) migrationDisk() string { return readCID(a.migrationDiskFile()) }

// otherDiskAt names a disk in the settings, other than cid, whose directory is path.
func (a *Agent) otherDiskAt(path, cid string) string {
	a.settingsMu.Lock()
	cids := sortedKeys(a.settings.Disks.Persistent)
	a.settingsMu.Unlock()
	for _, c := range cids {
		if c == cid {
			continue
		}
		if p, err := a.diskPath(c); err == nil && filepath.Clean(p) == filepath.Clean(path) {
			return c
		}
	}
	return ""
}

func (a *Agent) mountDisk(_ context.Context, args []json.RawMessage) (any, error) {
	var cid string
	if err := arg("mount_disk", args, 0, &cid, true); err != nil {
		return nil, err
	}
	path, err := a.diskPath(cid)
	if err != nil {
		return nil, err
	}
	a.disksMu.Lock()
	defer a.disksMu.Unlock()
	m, t := a.mountedDisk(), a.migrationDisk()
	if m != cid && (t == cid || m != "") {
		// Another disk holds store: this one is the destination of a migration, as
		// BOSH's agent mounts a second disk before migrate_disk.
		if t != "" && t != cid {
			return nil, protocol.Errorf(protocol.CodeDisk, "mount_disk %s: disk %s is mounted at store and disk %s as the migration target; migrate or unmount one first", cid, m, t)
		}
		// The link first: a crash before the record leaves a link the next mount replaces.
		if err := relinkOne(filepath.Dir(a.paths.migrationTarget()), filepath.Base(a.paths.migrationTarget()), path); err != nil {
			return nil, protocol.Errorf(protocol.CodeDisk, "mount_disk %s as the migration target: %v", cid, err)
		}
		if err := writeFileAtomic(a.migrationDiskFile(), []byte(cid)); err != nil {
			return nil, fmt.Errorf("mount_disk %s: record the migration target: %w", cid, err)
		}
		return map[string]any{}, nil
	}
	store := a.paths.store()
	if filepath.Clean(path) == filepath.Clean(store) {
		// The CPI put the disk at store itself: it is mounted already.
		if err := writeFileAtomic(a.mountedDiskFile(), []byte(cid)); err != nil {
			return nil, err
		}
		return map[string]any{}, nil
	}
	if st, err := os.Lstat(store); err == nil && st.IsDir() {
		// An empty store directory (left from before any disk, or by a CPI that took
		// its disk away) is replaced; a full one is data we must not hide.
		if err := os.Remove(store); err != nil {
			if other := a.otherDiskAt(store, cid); other != "" {
				return nil, protocol.Errorf(protocol.CodeDisk, "mount_disk %s: %s is still disk %s's directory; detach %s first", cid, store, other, other)
			}
			return nil, protocol.Errorf(protocol.CodeDisk, "mount_disk %s: %s holds data outside any disk: %v", cid, store, err)
		}
	}
	if err := relinkOne(filepath.Dir(store), filepath.Base(store), path); err != nil {
		return nil, protocol.Errorf(protocol.CodeDisk, "mount_disk %s: %v", cid, err)
	}
	if err := writeFileAtomic(a.mountedDiskFile(), []byte(cid)); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

func (a *Agent) unmountDisk(_ context.Context, args []json.RawMessage) (any, error) {
	var cid string
	if err := arg("unmount_disk", args, 0, &cid, true); err != nil {
		return nil, err
	}
	a.disksMu.Lock()
	defer a.disksMu.Unlock()
	if a.migrationDisk() == cid && a.mountedDisk() != cid {
		// A migration abandoned before migrate_disk: the director takes the new disk away.
		if err := a.clearMigrationTarget(); err != nil {
			return nil, protocol.Errorf(protocol.CodeDisk, "unmount_disk %s: %v", cid, err)
		}
		return map[string]string{"message": fmt.Sprintf("Unmounted partition of %s", cid)}, nil
	}
	if a.mountedDisk() != cid {
		return map[string]string{"message": fmt.Sprintf("Partition of %s is not mounted", cid)}, nil
	}
	if st, err := os.Lstat(a.paths.store()); err == nil && st.IsDir() {
		// A disk the CPI placed at store itself: the CPI takes it away on detach.
	} else if err := os.Remove(a.paths.store()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, protocol.Errorf(protocol.CodeDisk, "unmount_disk %s: %v", cid, err)
	}
	if err := os.Remove(a.mountedDiskFile()); err != nil {
		return nil, err
	}
	return map[string]string{"message": fmt.Sprintf("Unmounted partition of %s", cid)}, nil
}

// clearMigrationTarget removes the link, then the record: a crash between leaves a
// record whose link the next mount_disk or migrate_disk puts back or ignores.
func (a *Agent) clearMigrationTarget() error {
	if err := os.Remove(a.paths.migrationTarget()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(a.migrationDiskFile()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// migrateDisk copies the disk at store onto the migration target, then makes the
// target the disk at store. BOSH's director sends the old and new cids as arguments
// (its agent ignores them); so does this one, as the records say which disks they are.
// Every step can be repeated, so a migrate_disk retried after a crash finishes the job.
func (a *Agent) migrateDisk(ctx context.Context, _ []json.RawMessage) (any, error) {
	a.disksMu.Lock()
	defer a.disksMu.Unlock()
	m, t := a.mountedDisk(), a.migrationDisk()
	if t == "" {
		if m != "" && m == readCID(a.lastMigratedDiskFile()) {
			return map[string]any{}, nil // done already, and the reply was lost
		}
		return nil, protocol.Errorf(protocol.CodeDisk, "migrate_disk: no disk is mounted as a migration target")
	}
	if m == "" {
		return nil, protocol.Errorf(protocol.CodeDisk, "migrate_disk: no disk is mounted at store to migrate onto disk %s", t)
	}
	to, err := a.diskPath(t)
	if err != nil {
		return nil, err
	}
	store := a.paths.store()
	if m != t {
		// The old disk's own directory, not store's target: a CPI may have placed the new
		// disk at store itself (then store is no longer the old disk).
		from, err := a.diskPath(m)
		if err != nil {
			if from, err = filepath.EvalSymlinks(store); err != nil {
				return nil, protocol.Errorf(protocol.CodeDisk, "migrate_disk %s to %s: the old disk's directory: %v", m, t, err)
			}
		}
		if err := copyTree(ctx, from, to); err != nil {
			return nil, protocol.Errorf(protocol.CodeDisk, "migrate_disk %s to %s: %v", m, t, err)
		}
		if filepath.Clean(to) != filepath.Clean(store) {
			if st, err := os.Lstat(store); err == nil && st.IsDir() {
				// The old disk sits at store itself, placed by the CPI, which moves it out on
				// detach; mount_disk of the new disk then links store to it.
			} else if err := relinkOne(filepath.Dir(store), filepath.Base(store), to); err != nil {
				return nil, protocol.Errorf(protocol.CodeDisk, "migrate_disk %s to %s: link store: %v", m, t, err)
			}
		}
		if err := writeFileAtomic(a.mountedDiskFile(), []byte(t)); err != nil {
			return nil, fmt.Errorf("migrate_disk %s to %s: %w", m, t, err)
		}
	}
	if err := writeFileAtomic(a.lastMigratedDiskFile(), []byte(t)); err != nil {
		return nil, fmt.Errorf("migrate_disk to %s: %w", t, err)
	}
	if err := a.clearMigrationTarget(); err != nil {
		return nil, protocol.Errorf(protocol.CodeDisk, "migrate_disk to %s: %v", t, err)
	}
	return map[string]any{}, nil
}

// listDisk names the disk at store, then any at the migration target (BOSH lists every
// mounted disk).
// It takes no lock, so it answers during a long migrate_disk; each record is written
// whole.
func (a *Agent) listDisk(context.Context, []json.RawMessage) (any, error) {
	out := []string{}
	m, t := a.mountedDisk(), a.migrationDisk()
	if m != "" {
		out = append(out, m)
	}
	if t != "" && t != m {
		out = append(out, t)
	}
	return out, nil
}

func (a *Agent) addPersistentDisk(_ context.Context, args []json.RawMessage) (any, error) {
	var cid string
	var hint json.RawMessage
	if err := arg("add_persistent_disk", args, 0, &cid, true); err != nil {
		return nil, err
	}
	if err := arg("add_persistent_disk", args, 1, &hint, true); err != nil {
		return nil, err
	}
	return map[string]any{}, a.changeSettings(func(o *settingsOverride) { o.Persistent[cid] = hint })
}

func (a *Agent) removePersistentDisk(_ context.Context, args []json.RawMessage) (any, error) {
	var cid string
	if err := arg("remove_persistent_disk", args, 0, &cid, true); err != nil {
		return nil, err
	}
	return map[string]any{}, a.changeSettings(func(o *settingsOverride) { o.Persistent[cid] = nil })
}

// settingsOverride is what the director changed after boot, kept in
// bosh/update_settings.json and laid over settings.json at every start.
type settingsOverride struct {
	Persistent       map[string]json.RawMessage `json:"persistent_disks"`
	TrustedCerts     string                     `json:"trusted_certs,omitempty"`
	DiskAssociations []struct {
		Name string `json:"name"`
		CID  string `json:"cid"`
	} `json:"disk_associations,omitempty"`
	Mbus       json.RawMessage `json:"mbus,omitempty"`
	Blobstores json.RawMessage `json:"blobstores,omitempty"`
}

func (a *Agent) overridePath() string {
	return filepath.Join(a.paths.boshDir(), "update_settings.json")
}

func (a *Agent) loadOverride() (settingsOverride, error) {
	o := settingsOverride{Persistent: map[string]json.RawMessage{}}
	b, err := os.ReadFile(a.overridePath())
	if errors.Is(err, fs.ErrNotExist) {
		return o, nil
	}
	if err != nil {
		return o, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return o, fmt.Errorf("%s: %w", a.overridePath(), err)
	}
	if o.Persistent == nil {
		o.Persistent = map[string]json.RawMessage{}
	}
	return o, nil
}

// applyOverride lays the override over the settings (a null hint removes a disk).
func (a *Agent) applyOverride(o settingsOverride) {
	a.settingsMu.Lock()
	defer a.settingsMu.Unlock()
	if a.settings.Disks.Persistent == nil {
		a.settings.Disks.Persistent = map[string]json.RawMessage{}
	}
	for cid, hint := range o.Persistent {
		if hint == nil || string(hint) == "null" {
			delete(a.settings.Disks.Persistent, cid)
		} else {
			a.settings.Disks.Persistent[cid] = hint
		}
	}
}

func (a *Agent) changeSettings(f func(*settingsOverride)) error {
	a.overrideMu.Lock()
	defer a.overrideMu.Unlock()
	return a.changeSettingsLocked(f)
}

// changeSettingsLocked is changeSettings with overrideMu held.
func (a *Agent) changeSettingsLocked(f func(*settingsOverride)) error {
	o, err := a.loadOverride()
	if err != nil {
		return err
	}
	f(&o)
	b, _ := json.MarshalIndent(o, "", "  ")
	if err := writeFileAtomic(a.overridePath(), b); err != nil {
		return fmt.Errorf("save settings: %w", err)
	}
	a.applyOverride(o)
	return nil
}

// parseBlobstores reads update_settings' blobstores, BOSH's list of {provider, options},
// each checked as settings.json's blobstore section is. The first is the one used, as
// BOSH's agent does; nil when the list is absent or empty.
func parseBlobstores(raw json.RawMessage) (*BlobstoreSettings, error) {
	if !given(raw) {
		return nil, nil
	}
	var list []BlobstoreSettings
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("blobstores: want a list of {\"provider\": …, \"options\": {…}}: %w", err)
	}
	for i, b := range list {
		if err := b.check(fmt.Sprintf("blobstores[%d]", i)); err != nil {
			return nil, err
		}
	}
	if len(list) == 0 {
		return nil, nil
	}
	return &list[0], nil
}

// given reports whether a JSON value was sent (not absent, not null).
func given(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// update_settings records trusted certs, disk associations, mbus and blobstores; a new
// mbus takes effect when the agent next starts. Blobstores take effect at once: a
// director whose blobstore moved or whose CA changed tells running VMs this way rather
// than recreating them. Bad blobstores (a CA that is no PEM certificate, say) fail the
// call and change nothing; an empty list goes back to settings.json's blobstore.
func (a *Agent) updateSettings(_ context.Context, args []json.RawMessage) (any, error) {
	var in settingsOverride
	if err := arg("update_settings", args, 0, &in, true); err != nil {
		return nil, err
	}
	var next *blobAccess
	blobstore := a.bootBlobstore
	if given(in.Blobstores) {
		b, err := parseBlobstores(in.Blobstores)
		if err != nil {
			return nil, protocol.Errorf(protocol.CodeBadArguments, "update_settings: %v", err)
		}
		if b != nil {
			blobstore = *b
		}
		acc, err := openBlobAccess(blobstore)
		if err != nil {
			return nil, fmt.Errorf("update_settings: blobstore: %w", err)
		}
		next = &acc
	}
	a.overrideMu.Lock()
	defer a.overrideMu.Unlock()
	err := a.changeSettingsLocked(func(o *settingsOverride) {
		o.TrustedCerts, o.DiskAssociations = in.TrustedCerts, in.DiskAssociations
		if in.Mbus != nil {
			o.Mbus = in.Mbus
		}
		if given(in.Blobstores) {
			o.Blobstores = in.Blobstores
		}
	})
	if err != nil {
		return nil, fmt.Errorf("update_settings: %w", err)
	}
	if next != nil {
		a.settingsMu.Lock()
		a.settings.Blobstore, a.blob = blobstore, *next
		a.settingsMu.Unlock()
		endpoint, _ := blobstore.Options["endpoint"].(string)
		a.log.Info("blobstore settings updated", "provider", blobstore.Provider, "endpoint", endpoint, "ca", blobstore.CA() != "")
	}
	return "ok", nil
}

// copyTree copies everything beneath from into to, keeping directories, file modes,
// symlinks, named pipes and mtimes (and owners, when running as root). What to
// already holds is overwritten, so a copy cut short is completed by copying again;
// entries only in to are left. Sockets are skipped: they mean nothing without their
// server. Hard links become separate files.
func copyTree(ctx context.Context, from, to string) error {
	// Both ends resolved: WalkDir would not descend a linked root, and a linked target
	// must not be replaced by a directory.
	var err error
	if from, err = filepath.EvalSymlinks(from); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if to, err = filepath.EvalSymlinks(to); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if from == to {
		return nil
	}
	if strings.HasPrefix(to, from+string(filepath.Separator)) || strings.HasPrefix(from, to+string(filepath.Separator)) {
		return fmt.Errorf("copy %s to %s: one lies inside the other", from, to)
	}
	// Directory modes and times are set last, deepest first: filling a directory
	// changes its mtime, and a read-only one could not be filled.
	type dirTime struct {
		path string
		info fs.FileInfo
	}
	var dirs []dirTime
	err = filepath.WalkDir(from, func(src string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, src)
		dst := filepath.Join(to, rel)
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		if err := copyEntry(src, dst, info); err != nil {
			return fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
		if info.IsDir() {
			dirs = append(dirs, dirTime{dst, info})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		d := dirs[i]
		if err := os.Chmod(d.path, fileMode(d.info.Mode())); err != nil {
			return fmt.Errorf("copy: set the mode of %s: %w", d.path, err)
		}
		if err := os.Chtimes(d.path, d.info.ModTime(), d.info.ModTime()); err != nil {
			return fmt.Errorf("copy: set the time of %s: %w", d.path, err)
		}
	}
	// One sync for the whole copy (a sync per file is slow on many small ones): the old
	// disk is deleted once the director hears success.
	syscall.Sync()
	return nil
}

func fileMode(m fs.FileMode) fs.FileMode {
	return m.Perm() | m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
}

// copyEntry copies one entry (a directory without its contents) from src to dst.
func copyEntry(src, dst string, info fs.FileInfo) error {
	mode := info.Mode()
	if mode.Type() == fs.ModeSocket {
		return nil
	}
	// Whatever a cut-short copy left at dst that is not of src's kind goes; a directory
	// stays a directory, so what is already copied beneath it is kept.
	if old, err := os.Lstat(dst); err == nil && (old.Mode().Type() != mode.Type() || !mode.IsDir()) {
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
	}
	switch {
	case mode.IsDir():
		if err := os.Mkdir(dst, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// Writable until its contents are in; copyTree sets its own mode after.
		if err := os.Chmod(dst, 0o700); err != nil {
			return err
		}
	case mode.IsRegular():
		if err := copyFile(src, dst); err != nil {
			return err
		}
	case mode.Type() == fs.ModeSymlink:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case mode.Type() == fs.ModeNamedPipe:
		if err := syscall.Mkfifo(dst, 0o600); err != nil {
			return err
		}
	default:
		return fmt.Errorf("cannot copy a device or other special file (mode %s)", mode)
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if mode.Type() == fs.ModeSymlink {
		t := unix.NsecToTimeval(info.ModTime().UnixNano())
		return unix.Lutimes(dst, []unix.Timeval{t, t})
	}
	if mode.IsDir() {
		return nil
	}
	// After chown, which clears setuid and setgid bits.
	if err := os.Chmod(dst, fileMode(mode)); err != nil {
		return err
	}
	return os.Chtimes(dst, info.ModTime(), info.ModTime())
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
