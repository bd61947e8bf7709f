package release

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxTarballEntry bounds any one file read out of a tarball, so a hostile archive cannot
// exhaust memory.
const MaxTarballEntry = 2 << 30

// WriteTarball writes r as a BOSH release tarball: release.MF, license.tgz when there is
// one, jobs/<name>.tgz and packages/<name>.tgz. The same release gives the same bytes.
func (r *Release) WriteTarball(w io.Writer) error {
	r.fillManifest()
	var mfBuf bytes.Buffer
	enc := yaml.NewEncoder(&mfBuf)
	enc.SetIndent(2)
	err := enc.Encode(&r.Manifest)
	if err == nil {
		err = enc.Close()
	}
	mf := mfBuf.Bytes()
	if err != nil {
		return fmt.Errorf("write release %q tarball: encode release.MF: %w", r.Manifest.Name, err)
	}
	files := []file{{Path: "release.MF", Data: mf}}
	if r.License != nil {
		files = append(files, file{Path: "license.tgz", Data: r.License})
	}
	for _, j := range r.Jobs {
		files = append(files, file{Path: "jobs/" + j.Spec.Name + ".tgz", Data: j.Archive})
	}
	for _, p := range r.Packages {
		files = append(files, file{Path: "packages/" + p.Name + ".tgz", Data: p.Archive})
	}
	names := make([]string, 0, len(r.Compiled))
	for n := range r.Compiled {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, file{Path: "compiled_packages/" + n + ".tgz", Data: r.Compiled[n]})
	}
	if err := writeTgz(w, files); err != nil {
		return fmt.Errorf("write release %q tarball: %w", r.Manifest.Name, err)
	}
	return nil
}

// ReadTarball reads a BOSH release tarball (source or compiled). Every archive is checked
// against the sha1 release.MF gives it (plain hex or "sha256:<hex>"), and every job's
// job.MF, monit and templates are parsed so the release can be rendered.
func ReadTarball(ctx context.Context, rd io.Reader) (*Release, error) {
	entries, err := untgz(ctx, rd)
	if err != nil {
		return nil, fmt.Errorf("read release tarball: %w", err)
	}
	mfData, ok := entries["release.MF"]
	if !ok {
		return nil, errors.New("read release tarball: no release.MF in it; is this a BOSH release?")
	}
	r := &Release{}
	if _, err := decodeYAML("release.MF", mfData, &r.Manifest); err != nil {
		return nil, fmt.Errorf("read release tarball: %w", err)
	}
	m := &r.Manifest
	if !nameRE.MatchString(m.Name) || m.Version == "" {
		return nil, fmt.Errorf("read release tarball: release.MF: want a valid name and a version, got name %q version %q", m.Name, m.Version)
	}
	where := fmt.Sprintf("read release %s/%s", m.Name, m.Version)
	seen := map[string]bool{}
	get := func(kind, name, sum string) ([]byte, error) {
		if !nameRE.MatchString(name) {
			return nil, fmt.Errorf("%s: release.MF: %s name %q is not a valid name", where, kind, name)
		}
		if seen[kind+"/"+name] {
			return nil, fmt.Errorf("%s: release.MF lists %s %q twice", where, kind, name)
		}
		seen[kind+"/"+name] = true
		p := kind + "s/" + name + ".tgz"
		data, ok := entries[p]
		if !ok {
			return nil, fmt.Errorf("%s: release.MF lists %s %q but the tarball has no %s", where, kind, name, p)
		}
		if err := checkSum(data, sum); err != nil {
			return nil, fmt.Errorf("%s: %s %q: %w", where, kind, name, err)
		}
		return data, nil
	}
	for _, ref := range m.Jobs {
		data, err := get("job", ref.Name, ref.SHA1)
		if err != nil {
			return nil, err
		}
		j, err := readJobArchive(ctx, data)
		if err != nil {
			return nil, fmt.Errorf("%s: job %q: %w", where, ref.Name, err)
		}
		if j.Spec.Name != ref.Name {
			return nil, fmt.Errorf("%s: job %q: its job.MF names it %q", where, ref.Name, j.Spec.Name)
		}
		j.Fingerprint, j.SHA1 = ref.Fingerprint, ref.SHA1
		r.Jobs = append(r.Jobs, j)
	}
	for _, ref := range m.Packages {
		data, err := get("package", ref.Name, ref.SHA1)
		if err != nil {
			return nil, err
		}
		r.Packages = append(r.Packages, &Package{Name: ref.Name, Fingerprint: ref.Fingerprint, SHA1: ref.SHA1, Dependencies: ref.Dependencies, Archive: data})
	}
	for _, ref := range m.CompiledPackages {
		data, err := get("compiled_package", ref.Name, ref.SHA1)
		if err != nil {
			return nil, err
		}
		if r.Compiled == nil {
			r.Compiled = map[string][]byte{}
		}
		r.Compiled[ref.Name] = data
	}
	if m.License != nil {
		data, ok := entries["license.tgz"]
		if !ok {
			return nil, fmt.Errorf("%s: release.MF lists a license but the tarball has no license.tgz", where)
		}
		if err := checkSum(data, m.License.SHA1); err != nil {
			return nil, fmt.Errorf("%s: license: %w", where, err)
		}
		r.License = data
	}
	sort.Slice(r.Jobs, func(a, b int) bool { return r.Jobs[a].Spec.Name < r.Jobs[b].Spec.Name })
	sort.Slice(r.Packages, func(a, b int) bool { return r.Packages[a].Name < r.Packages[b].Name })
	for _, j := range r.Jobs {
		for _, p := range j.Spec.Packages {
			if r.Package(p) == nil && r.Compiled[p] == nil {
				return nil, fmt.Errorf("%s: job %q needs package %q, which the release does not have", where, j.Spec.Name, p)
			}
		}
	}
	if len(m.CompiledPackages) == 0 {
		if err := checkGraph(m.Name, r.depGraph()); err != nil {
			return nil, fmt.Errorf("read release tarball: %w", err)
		}
	}
	return r, nil
}

// checkSum checks data against a release.MF sha1 field: 40 hex digits of SHA-1, or a
// multi-digest string such as "sha256:<hex>" (bosh-cli writes those for newer releases).
func checkSum(data []byte, sum string) error {
	if sum == "" {
		return errors.New("release.MF gives no sha1")
	}
	for _, d := range strings.Split(sum, ";") {
		algo, hexSum, ok := strings.Cut(d, ":")
		if !ok {
			algo, hexSum = "sha1", d
		}
		var got string
		switch algo {
		case "sha1":
			got = sha1Hex(data)
		case "sha256":
			got = strings.TrimPrefix(digestString(data), "sha256:")
		default:
			continue
		}
		if got != strings.ToLower(hexSum) {
			return fmt.Errorf("digest mismatch: release.MF says %s:%s, the archive is %s:%s", algo, hexSum, algo, got)
		}
		return nil
	}
	return fmt.Errorf("release.MF sha1 %q uses no algorithm bosun knows (sha1, sha256)", sum)
}

func readJobArchive(ctx context.Context, data []byte) (*Job, error) {
	entries, err := untgz(ctx, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	mf, ok := entries["job.MF"]
	if !ok {
		return nil, errors.New("job archive has no job.MF")
	}
	spec, err := ParseJobSpec("job.MF", mf)
	if err != nil {
		return nil, err
	}
	j := &Job{Spec: *spec, Templates: map[string][]byte{}, Monit: entries["monit"], Archive: data}
	for src := range spec.Templates {
		t, ok := entries["templates/"+src]
		if !ok {
			return nil, fmt.Errorf("template %q is missing from the job archive", src)
		}
		j.Templates[src] = t
	}
	return j, nil
}

// untgz reads a gzipped tar into memory: regular files by cleaned path ("./a" → "a").
func untgz(ctx context.Context, rd io.Reader) (map[string][]byte, error) {
	zr, err := gzip.NewReader(rd)
	if err != nil {
		return nil, fmt.Errorf("not a gzipped tarball: %w", err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if h.Size > MaxTarballEntry {
			return nil, fmt.Errorf("tar entry %s is %d bytes, more than the %d allowed", name, h.Size, MaxTarballEntry)
		}
		data, err := io.ReadAll(io.LimitReader(tr, MaxTarballEntry))
		if err != nil {
			return nil, fmt.Errorf("read tar entry %s: %w", name, err)
		}
		out[name] = data
	}
}
