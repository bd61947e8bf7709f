package fakeopenstack

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

const glance = "/image/v2"

func (c *Cloud) glanceRoutes(m *http.ServeMux) {
	m.HandleFunc("POST "+glance+"/images", c.createImage)
	m.HandleFunc("GET "+glance+"/images/{id}", c.getImage)
	m.HandleFunc("DELETE "+glance+"/images/{id}", c.deleteImage)
	m.HandleFunc("PUT "+glance+"/images/{id}/file", c.uploadImage)
}

func (i *Image) view() map[string]any {
	v := map[string]any{"id": i.ID, "name": i.Name, "status": i.Status, "disk_format": i.DiskFormat,
		"container_format": i.ContainerFormat, "visibility": i.Visibility, "size": i.Size,
		"created_at": time.Now().UTC().Format(time.RFC3339), "updated_at": time.Now().UTC().Format(time.RFC3339),
		"tags": []string{}, "self": "/v2/images/" + i.ID, "file": "/v2/images/" + i.ID + "/file", "schema": "/v2/schemas/image"}
	for k, p := range i.Properties {
		v[k] = p
	}
	return v
}

func (c *Cloud) createImage(w http.ResponseWriter, r *http.Request) {
	var in map[string]any
	if !decode(w, r, &in) {
		return
	}
	img := &Image{ID: newID(), Status: "queued", Visibility: "shared", Properties: map[string]string{}}
	for k, v := range in {
		s, _ := v.(string)
		switch k {
		case "name":
			img.Name = s
		case "disk_format":
			img.DiskFormat = s
		case "container_format":
			img.ContainerFormat = s
		case "visibility":
			img.Visibility = s
		default:
			if b, err := json.Marshal(v); err == nil && s == "" {
				s = string(b)
			}
			img.Properties[k] = s
		}
	}
	switch img.DiskFormat {
	case "qcow2", "raw", "vmdk", "vhd", "iso":
	default:
		fail(w, r, http.StatusBadRequest, "Invalid disk format '%s' for image.", img.DiskFormat)
		return
	}
	c.mu.Lock()
	c.images[img.ID] = img
	c.mu.Unlock()
	writeJSON(w, http.StatusCreated, img.view())
}

func (c *Cloud) getImage(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	img, ok := c.images[r.PathValue("id")]
	if !ok {
		fail(w, r, http.StatusNotFound, "No image found with ID %s", r.PathValue("id"))
		return
	}
	if img.Status == "saving" {
		img.polls++
		if img.polls >= c.opts.Polls {
			img.Status = "active"
			if c.imageFate != "" {
				img.Status = c.imageFate
			}
		}
	}
	writeJSON(w, http.StatusOK, img.view())
}

func (c *Cloud) deleteImage(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.images[r.PathValue("id")]; !ok {
		fail(w, r, http.StatusNotFound, "Failed to find image %s to delete", r.PathValue("id"))
		return
	}
	delete(c.images, r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

// uploadImage takes the data as it streams, keeping only its size and digest.
func (c *Cloud) uploadImage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	c.mu.Lock()
	img, ok := c.images[id]
	if ok && img.Status != "queued" {
		c.mu.Unlock()
		fail(w, r, http.StatusConflict, "Image status transition from %s to saving is not allowed", img.Status)
		return
	}
	if ok {
		img.Status = "saving"
	}
	c.mu.Unlock()
	if !ok {
		fail(w, r, http.StatusNotFound, "No image found with ID %s", id)
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		img.Status = "queued"
		fail(w, r, http.StatusBadRequest, "upload interrupted: %v", err)
		return
	}
	img.Size, img.Chunked, img.polls = n, r.ContentLength < 0, 0
	img.Properties["os_hash_value"] = hex.EncodeToString(h.Sum(nil))
	img.Properties["os_hash_algo"] = "sha256"
	w.WriteHeader(http.StatusNoContent)
}
