package fakeopenstack

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/cpi/internal/fakecloud"
)

const cinder = "/volume/v3"

func (c *Cloud) cinderRoutes(m *http.ServeMux) {
	m.HandleFunc("POST "+cinder+"/volumes", c.createVolume)
	m.HandleFunc("GET "+cinder+"/volumes/{id}", c.getVolume)
	m.HandleFunc("PUT "+cinder+"/volumes/{id}", c.updateVolume)
	m.HandleFunc("DELETE "+cinder+"/volumes/{id}", c.deleteVolume)
	m.HandleFunc("POST "+cinder+"/volumes/{id}/action", c.volumeAction)
	m.HandleFunc("POST "+cinder+"/snapshots", c.createSnapshot)
	m.HandleFunc("GET "+cinder+"/snapshots/{id}", c.getSnapshot)
	m.HandleFunc("DELETE "+cinder+"/snapshots/{id}", c.deleteSnapshot)
}

const cinderTime = "2006-01-02T15:04:05.000000"

func (v *Volume) view() map[string]any {
	atts := []any{}
	if v.Server != "" && !(v.Status == "available") {
		atts = append(atts, map[string]any{"id": v.ID, "attachment_id": "att-" + v.ID, "server_id": v.Server, "volume_id": v.ID, "device": v.Device})
	}
	return map[string]any{"id": v.ID, "name": v.Name, "status": v.Status, "size": v.Size, "availability_zone": v.AZ,
		"volume_type": v.Type, "metadata": v.Metadata, "attachments": atts, "bootable": fmt.Sprint(v.bootOf != ""),
		"created_at": time.Now().UTC().Format(cinderTime)}
}

// volume returns the volume, advancing its state by one poll when advance is set;
// the caller holds c.mu. A volume whose deletion completed is removed and nil.
func (c *Cloud) volume(id string, advance bool) *Volume {
	v, ok := c.volumes[id]
	if !ok || !advance || v.next == "" {
		return v
	}
	v.polls++
	if v.polls < c.opts.Polls {
		return v
	}
	switch v.next {
	case "gone":
		delete(c.volumes, id)
		return nil
	case "available":
		v.Server, v.Device = "", ""
	}
	if v.nextSize > 0 {
		v.Size, v.nextSize = v.nextSize, 0
	}
	v.Status, v.next, v.polls = v.next, "", 0
	return v
}

func (c *Cloud) createVolume(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Volume struct {
			Size     int               `json:"size"`
			Name     string            `json:"name"`
			AZ       string            `json:"availability_zone"`
			Type     string            `json:"volume_type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"volume"`
	}
	if !decode(w, r, &req) {
		return
	}
	in := req.Volume
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case in.Size <= 0:
		fail(w, r, http.StatusBadRequest, "Invalid input received: size must be a positive integer")
	case in.AZ != "" && !slices.Contains(c.azs, in.AZ):
		fail(w, r, http.StatusBadRequest, "Invalid input received: Availability zone '%s' is invalid.", in.AZ)
	case in.Type != "" && !slices.Contains(c.volTypes, in.Type):
		fail(w, r, http.StatusNotFound, "Volume type with name %s could not be found.", in.Type)
	case len(c.volumes) >= c.opts.MaxVolumes:
		fail(w, r, http.StatusRequestEntityTooLarge, "VolumeLimitExceeded: Maximum number of volumes allowed (%d) exceeded for quota 'volumes'.", c.opts.MaxVolumes)
	default:
		v := &Volume{ID: newID(), Name: in.Name, Status: "creating", next: "available", AZ: in.AZ, Type: in.Type, Size: in.Size, Metadata: fakecloud.CloneMap(in.Metadata)}
		if v.AZ == "" {
			v.AZ = c.azs[0]
		}
		if v.Type == "" {
			v.Type = c.volTypes[0]
		}
		c.volumes[v.ID] = v
		writeJSON(w, http.StatusAccepted, map[string]any{"volume": v.view()})
	}
}

func (c *Cloud) getVolume(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.volume(r.PathValue("id"), true)
	if v == nil {
		fail(w, r, http.StatusNotFound, "Volume %s could not be found.", r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"volume": v.view()})
}

func (c *Cloud) withVolume(w http.ResponseWriter, r *http.Request, f func(v *Volume)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.volume(r.PathValue("id"), false)
	if v == nil || v.next == "gone" {
		fail(w, r, http.StatusNotFound, "Volume %s could not be found.", r.PathValue("id"))
		return
	}
	f(v)
}

func (c *Cloud) updateVolume(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Volume struct {
			Metadata map[string]string `json:"metadata"`
		} `json:"volume"`
	}
	if !decode(w, r, &req) {
		return
	}
	c.withVolume(w, r, func(v *Volume) {
		if req.Volume.Metadata != nil {
			v.Metadata = fakecloud.CloneMap(req.Volume.Metadata)
		}
		writeJSON(w, http.StatusOK, map[string]any{"volume": v.view()})
	})
}

func (c *Cloud) deleteVolume(w http.ResponseWriter, r *http.Request) {
	c.withVolume(w, r, func(v *Volume) {
		if v.Status != "available" && !strings.HasPrefix(v.Status, "error") {
			fail(w, r, http.StatusBadRequest, "Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or be disassociated from snapshots after volume transfer.")
			return
		}
		for _, s := range c.snapshots {
			if s.VolumeID == v.ID {
				fail(w, r, http.StatusBadRequest, "Invalid volume: Volume %s has snapshots.", v.ID)
				return
			}
		}
		v.Status, v.next, v.polls = "deleting", "gone", 0
		w.WriteHeader(http.StatusAccepted)
	})
}

func (c *Cloud) volumeAction(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Extend *struct {
			NewSize int `json:"new_size"`
		} `json:"os-extend"`
	}
	if !decode(w, r, &req) {
		return
	}
	c.withVolume(w, r, func(v *Volume) {
		switch {
		case req.Extend == nil:
			fail(w, r, http.StatusBadRequest, "Invalid action")
		case v.Status != "available":
			fail(w, r, http.StatusBadRequest, "Invalid volume: Volume %s status must be available to extend, but current status is: %s.", v.ID, v.Status)
		case req.Extend.NewSize <= v.Size:
			fail(w, r, http.StatusBadRequest, "Invalid input received: New size for extend must be greater than current size. (current: %d, extended: %d).", v.Size, req.Extend.NewSize)
		default:
			v.Status, v.next, v.nextSize, v.polls = "extending", "available", req.Extend.NewSize, 0
			w.WriteHeader(http.StatusAccepted)
		}
	})
}

func (s *snapshot) view() map[string]any {
	return map[string]any{"id": s.ID, "volume_id": s.VolumeID, "name": s.Name, "status": s.Status, "metadata": s.Metadata,
		"created_at": time.Now().UTC().Format(cinderTime)}
}

func (c *Cloud) createSnapshot(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Snapshot struct {
			VolumeID string            `json:"volume_id"`
			Name     string            `json:"name"`
			Force    bool              `json:"force"`
			Metadata map[string]string `json:"metadata"`
		} `json:"snapshot"`
	}
	if !decode(w, r, &req) {
		return
	}
	in := req.Snapshot
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.volume(in.VolumeID, false)
	if v == nil {
		fail(w, r, http.StatusNotFound, "Volume %s could not be found.", in.VolumeID)
		return
	}
	if v.Status == "in-use" && !in.Force {
		fail(w, r, http.StatusBadRequest, "Invalid volume: Volume %s status must be available, but current status is: in-use.", v.ID)
		return
	}
	s := &snapshot{ID: newID(), VolumeID: v.ID, Name: in.Name, Status: "creating", Metadata: fakecloud.CloneMap(in.Metadata)}
	c.snapshots[s.ID] = s
	writeJSON(w, http.StatusAccepted, map[string]any{"snapshot": s.view()})
}

func (c *Cloud) getSnapshot(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.snapshots[r.PathValue("id")]
	if ok {
		s.polls++
		if s.polls >= c.opts.Polls {
			if s.deleting {
				delete(c.snapshots, s.ID)
				ok = false
			} else if s.Status == "creating" {
				s.Status = "available"
			}
		}
	}
	if !ok {
		fail(w, r, http.StatusNotFound, "Snapshot %s could not be found.", r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"snapshot": s.view()})
}

func (c *Cloud) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.snapshots[r.PathValue("id")]
	if !ok || s.deleting {
		fail(w, r, http.StatusNotFound, "Snapshot %s could not be found.", r.PathValue("id"))
		return
	}
	s.Status, s.deleting, s.polls = "deleting", true, 0
	w.WriteHeader(http.StatusAccepted)
}
