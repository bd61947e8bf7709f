package api

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of POST /plan's tarball: the working tree is hostile input until unpacked.
const (
	// MaxPlanUpload is the most a plan's gzipped tar may weigh.
	MaxPlanUpload = 32 << 20
	// MaxPlanTree is the most its files may weigh unpacked (a gzip bomb stops here).
	MaxPlanTree = 128 << 20
	// MaxPlanFiles is the most entries it may hold.
	MaxPlanFiles = 20000
	// maxPlanPath is the longest path accepted.
	maxPlanPath = 1024
	// maxPlanMessage is the longest commit message accepted.
	maxPlanMessage = 64 << 10
	// planTimeout bounds one plan's rendering, planning and judging.
	planTimeout = 2 * time.Minute
)

// Planner plans an uploaded working tree on the director (POST /plan): it renders it as
// the reconciler renders a revision, with the director's own variables read-only, plans
// against the director's observed state and judges it with the policies in force. cmd/bosun
// adapts the reconciler to it; the answer is the reconciler's Preview, which this package
// may not import, so it is handed over as a value to encode.
type Planner interface {
	Plan(ctx context.Context, tree fs.FS, req PlanRequest) (any, error)
}

// PlanRequest is what a plan is asked with, besides the tree.
type PlanRequest struct {
	// Base is a full commit sha of the tracked branch whose render the policies see as
	// "previous"; empty: the last accepted revision.
	Base string
	// Author and Message are the policies' input.commit (a working tree has no commit).
	Author, Message string
	// Visible says which deployments the caller may read; the others are not planned.
	Visible func(deployment string) bool
}

// ErrPlanInput is what a Planner wraps for a failure of the caller's making (a tree that
// does not render, a base not on the branch): answered 422 with the error's message.
var ErrPlanInput = errors.New("the tree cannot be planned")

// plan answers POST /plan: the body is a gzipped tar of a working tree.
func (s *Server) plan(w http.ResponseWriter, r *http.Request, p *Principal) (any, error) {
	if s.o.Planner == nil {
		return nil, notWired("reconciler (POST /plan renders a tree as the reconciler does)")
	}
	q := r.URL.Query()
	req := PlanRequest{Base: q.Get("base"), Author: q.Get("author"), Message: q.Get("message"),
		Visible: func(name string) bool { return s.o.Auth.CanRead(p, name) }}
	if req.Base != "" && !isSHA(req.Base) {
		return nil, errorf(http.StatusBadRequest, "base=%q: want a full commit sha (40 hex digits) of the branch the director tracks", req.Base)
	}
	if len(req.Message) > maxPlanMessage || len(req.Author) > 1024 {
		return nil, errorf(http.StatusBadRequest, "author or message too long (at most 1 KiB and %d KiB)", maxPlanMessage>>10)
	}
	// One plan at a time per director: each holds its tree in memory and renders it.
	select {
	case s.planSlot <- struct{}{}:
		defer func() { <-s.planSlot }()
	case <-r.Context().Done():
		return nil, r.Context().Err()
	case <-time.After(30 * time.Second):
		return nil, errorf(http.StatusServiceUnavailable, "the director is busy with other plans; try again")
	}
	tree, err := UnpackTree(http.MaxBytesReader(w, r.Body, MaxPlanUpload))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "the tarball is over %d MiB: plan a smaller tree (without release blobs), or without --director", MaxPlanUpload>>20)
		}
		return nil, errorf(http.StatusBadRequest, "the body is not a tree to plan: %v", err)
	}
	// The tree's own policies judge when the director has accepted nothing yet: a caller's
	// Rego may be slow, so a plan has a bound of its own.
	ctx, cancel := context.WithTimeout(r.Context(), planTimeout)
	defer cancel()
	v, err := s.o.Planner.Plan(ctx, tree, req)
	if errors.Is(err, ErrPlanInput) {
		return nil, errorf(http.StatusUnprocessableEntity, "%s", strings.TrimPrefix(err.Error(), ErrPlanInput.Error()+": "))
	}
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return v, nil
}

func isSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// UnpackTree reads a gzipped tar of a working tree into memory, refusing what a tree to
// plan has no business holding: paths that are absolute or climb out with "..", links of
// any kind (the client sends the files links point to), devices, more than MaxPlanFiles
// entries or MaxPlanTree bytes. Nothing touches the disk.
func UnpackTree(r io.Reader) (fs.FS, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, err
		}
		return nil, fmt.Errorf("not gzip (want a gzipped tar of the working tree): %w", err)
	}
	tr := tar.NewReader(zr)
	// The tree is kept as an uncompressed zip in memory: archive/zip's reader is an fs.FS.
	var tree bytes.Buffer
	zw := zip.NewWriter(&tree)
	isDir := map[string]bool{} // every entry so far: directory or file
	var total int64
	n := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a readable tar: %w", err)
		}
		if n++; n > MaxPlanFiles {
			return nil, fmt.Errorf("more than %d entries", MaxPlanFiles)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue // git archive's commit id: no file
		}
		name, err := treePath(h.Name)
		if err != nil {
			return nil, err
		}
		if name == "." && h.Typeflag == tar.TypeDir {
			continue // tar -C dir . writes the root itself
		}
		dir, seen := isDir[name]
		if seen && h.Typeflag != tar.TypeDir {
			return nil, fmt.Errorf("%s: given twice", name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if seen && !dir {
				return nil, fmt.Errorf("%s: given as a file and a directory", name)
			}
			if !seen {
				isDir[name] = true
				if _, err := zw.CreateHeader(&zip.FileHeader{Name: name + "/", Method: zip.Store}); err != nil {
					return nil, err
				}
			}
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old tars write TypeRegA
			if h.Size < 0 || total+h.Size > MaxPlanTree {
				return nil, fmt.Errorf("the files weigh over %d MiB unpacked", MaxPlanTree>>20)
			}
			isDir[name] = false
			w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store})
			if err != nil {
				return nil, err
			}
			got, err := io.Copy(w, io.LimitReader(tr, h.Size))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if got != h.Size {
				return nil, fmt.Errorf("%s: truncated", name)
			}
			total += got
		case tar.TypeSymlink, tar.TypeLink:
			return nil, fmt.Errorf("%s: a link; send the file it points to (links are not accepted, so none can point out of the tree)", name)
		default:
			return nil, fmt.Errorf("%s: entry type %q is neither a file nor a directory", name, h.Typeflag)
		}
	}
	// A path may not be both a file and the parent of others.
	for name := range isDir {
		for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
			if d, ok := isDir[dir]; ok && !d {
				return nil, fmt.Errorf("%s: a file, yet %s is under it", dir, name)
			}
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return zip.NewReader(bytes.NewReader(tree.Bytes()), int64(tree.Len()))
}

// treePath checks and cleans an entry's name: relative, inside the tree, valid UTF-8.
func treePath(raw string) (string, error) {
	if len(raw) > maxPlanPath {
		return "", fmt.Errorf("a path longer than %d bytes", maxPlanPath)
	}
	if !utf8.ValidString(raw) || strings.ContainsAny(raw, "\x00\\") {
		return "", fmt.Errorf("path %q: not a clean slash-separated UTF-8 path", raw)
	}
	if strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("path %q is absolute; want paths relative to the tree's root", raw)
	}
	for _, el := range strings.Split(raw, "/") {
		if el == ".." {
			return "", fmt.Errorf("path %q climbs out of the tree (..)", raw)
		}
	}
	name := path.Clean(raw)
	if name == "." {
		return name, nil
	}
	if !fs.ValidPath(name) {
		return "", fmt.Errorf("path %q is not a path inside the tree", raw)
	}
	return name, nil
}
