package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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

func (a *Agent) mountedDisk() string {
	b, _ := os.ReadFile(filepath.Join(a.paths.boshDir(), "mounted_disk"))
	return strings.TrimSpace(string(b))
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
	if m := a.mountedDisk(); m != "" && m != cid {
		return nil, protocol.Errorf(protocol.CodeDisk, "mount_disk %s: disk %s is mounted at store; unmount it first", cid, m)
	}
	store := a.paths.store()
	if filepath.Clean(path) == filepath.Clean(store) {
		// The CPI put the disk at store itself: it is mounted already.
		if err := writeFileAtomic(filepath.Join(a.paths.boshDir(), "mounted_disk"), []byte(cid)); err != nil {
			return nil, err
		}
		return map[string]any{}, nil
	}
	if st, err := os.Lstat(store); err == nil && st.IsDir() {
		// An empty store directory left from before any disk is replaced; a full one is
		// data we must not hide.
		if err := os.Remove(store); err != nil {
			return nil, protocol.Errorf(protocol.CodeDisk, "mount_disk %s: %s holds data outside any disk: %v", cid, store, err)
		}
	}
	if err := relinkOne(filepath.Dir(store), filepath.Base(store), path); err != nil {
		return nil, protocol.Errorf(protocol.CodeDisk, "mount_disk %s: %v", cid, err)
	}
	if err := writeFileAtomic(filepath.Join(a.paths.boshDir(), "mounted_disk"), []byte(cid)); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

func (a *Agent) unmountDisk(_ context.Context, args []json.RawMessage) (any, error) {
	var cid string
	if err := arg("unmount_disk", args, 0, &cid, true); err != nil {
		return nil, err
	}
	if a.mountedDisk() != cid {
		return map[string]string{"message": fmt.Sprintf("Partition of %s is not mounted", cid)}, nil
	}
	if st, err := os.Lstat(a.paths.store()); err == nil && st.IsDir() {
		// A disk the CPI placed at store itself: the CPI takes it away on detach.
	} else if err := os.Remove(a.paths.store()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, protocol.Errorf(protocol.CodeDisk, "unmount_disk %s: %v", cid, err)
	}
	if err := os.Remove(filepath.Join(a.paths.boshDir(), "mounted_disk")); err != nil {
		return nil, err
	}
	return map[string]string{"message": fmt.Sprintf("Unmounted partition of %s", cid)}, nil
}

func (a *Agent) listDisk(context.Context, []json.RawMessage) (any, error) {
	if m := a.mountedDisk(); m != "" {
		return []string{m}, nil
	}
	return []string{}, nil
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

// update_settings records trusted certs, disk associations, mbus and blobstores; a new
// mbus takes effect when the agent next starts.
func (a *Agent) updateSettings(_ context.Context, args []json.RawMessage) (any, error) {
	var in settingsOverride
	if err := arg("update_settings", args, 0, &in, true); err != nil {
		return nil, err
	}
	err := a.changeSettings(func(o *settingsOverride) {
		o.TrustedCerts, o.DiskAssociations = in.TrustedCerts, in.DiskAssociations
		if in.Mbus != nil {
			o.Mbus = in.Mbus
		}
		if in.Blobstores != nil {
			o.Blobstores = in.Blobstores
		}
	})
	if err != nil {
		return nil, fmt.Errorf("update_settings: %w", err)
	}
	return "ok", nil
}
