package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha1"
	"encoding/hex"
	"io"
	"sort"
	"sync"
	"time"
)

// Manifest is release.MF.
type Manifest struct {
	Name               string             `yaml:"name" json:"name"`
	Version            string             `yaml:"version" json:"version"`
	CommitHash         string             `yaml:"commit_hash" json:"commit_hash"`
	UncommittedChanges bool               `yaml:"uncommitted_changes" json:"uncommitted_changes"`
	Jobs               []JobRef           `yaml:"jobs" json:"jobs"`
	Packages           []PackageRef       `yaml:"packages" json:"packages"`
	CompiledPackages   []CompiledPackages `yaml:"compiled_packages,omitempty" json:"compiled_packages,omitempty"`
	License            *LicenseRef        `yaml:"license,omitempty" json:"license,omitempty"`
}

// JobRef is a job's entry in release.MF. Version equals Fingerprint (a legacy field).
type JobRef struct {
	Name        string   `yaml:"name" json:"name"`
	Version     string   `yaml:"version" json:"version"`
	Fingerprint string   `yaml:"fingerprint" json:"fingerprint"`
	SHA1        string   `yaml:"sha1" json:"sha1"`
	Packages    []string `yaml:"packages,omitempty" json:"packages,omitempty"`
}

// PackageRef is a source package's entry in release.MF.
type PackageRef struct {
	Name         string   `yaml:"name" json:"name"`
	Version      string   `yaml:"version" json:"version"`
	Fingerprint  string   `yaml:"fingerprint" json:"fingerprint"`
	SHA1         string   `yaml:"sha1" json:"sha1"`
	Dependencies []string `yaml:"dependencies" json:"dependencies"`
}

// CompiledPackages is a compiled package's entry in a compiled release's release.MF.
type CompiledPackages struct {
	Name         string   `yaml:"name" json:"name"`
	Version      string   `yaml:"version" json:"version"`
	Fingerprint  string   `yaml:"fingerprint" json:"fingerprint"`
	SHA1         string   `yaml:"sha1" json:"sha1"`
	Stemcell     string   `yaml:"stemcell" json:"stemcell"` // "<os>/<version>"
	Dependencies []string `yaml:"dependencies" json:"dependencies"`
}

// LicenseRef is the license entry of release.MF.
type LicenseRef struct {
	Version     string `yaml:"version" json:"version"`
	Fingerprint string `yaml:"fingerprint" json:"fingerprint"`
	SHA1        string `yaml:"sha1" json:"sha1"`
}

// Release is a release in memory: its manifest and the archives it is made of.
type Release struct {
	Manifest Manifest
	Jobs     []*Job     // sorted by name
	Packages []*Package // source packages, sorted by name
	// Compiled holds a compiled release's packages, keyed by package name.
	Compiled map[string][]byte
	License  []byte // license.tgz, nil when the release has none
}

// Job is a release job: its spec, the template sources and its tarball.
type Job struct {
	Spec        JobSpec
	Fingerprint string
	SHA1        string
	// Templates maps a template's source path (under templates/) to its content.
	Templates map[string][]byte
	Monit     []byte
	Archive   []byte // jobs/<name>.tgz
}

// Package is a source package: its name, dependencies and tarball.
type Package struct {
	Name         string
	Fingerprint  string
	SHA1         string
	Dependencies []string
	Archive      []byte // packages/<name>.tgz: packaging, pre_packaging and the matched files
}

// Job returns the job named name, or nil.
func (r *Release) Job(name string) *Job {
	i := sort.Search(len(r.Jobs), func(i int) bool { return r.Jobs[i].Spec.Name >= name })
	if i < len(r.Jobs) && r.Jobs[i].Spec.Name == name {
		return r.Jobs[i]
	}
	return nil
}

// Package returns the source package named name, or nil.
func (r *Release) Package(name string) *Package {
	i := sort.Search(len(r.Packages), func(i int) bool { return r.Packages[i].Name >= name })
	if i < len(r.Packages) && r.Packages[i].Name == name {
		return r.Packages[i]
	}
	return nil
}

func sha1Hex(b []byte) string {
	sum := sha1.Sum(b)
	return hex.EncodeToString(sum[:])
}

// epoch is the mtime of every tar entry Bosun writes: archives depend only on content.
var epoch = time.Unix(0, 0).UTC()

// tgz writes files into a gzipped tar in the given order, with fixed owners, mtimes and
// modes and a gzip header without name or time, so equal content gives equal bytes.
func tgz(files []file) ([]byte, error) {
	var buf bytes.Buffer
	if err := writeTgz(&buf, files); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gzipWriters are reused: a gzip writer's state is ~1 MB, which would otherwise dominate
// rendering the small archives of thousands of instances.
var gzipWriters = sync.Pool{New: func() any { return gzip.NewWriter(io.Discard) }}

func writeTgz(w io.Writer, files []file) error {
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(w)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		h := &tar.Header{Name: f.Path, ModTime: epoch, Format: tar.FormatPAX, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(f.Data))}
		if f.Exec {
			h.Mode = 0o755
		}
		if f.Link != "" {
			h.Typeflag, h.Linkname, h.Size, h.Mode = tar.TypeSymlink, f.Link, 0, 0o777
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}
