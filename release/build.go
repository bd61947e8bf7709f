package release

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// DevVersionPrefix starts every version Build derives. BOSH's dev versions ("0+dev.N")
// count builds in local state; Bosun's are "0+dev." followed by the first 12 hex digits of
// a hash of every job, package and license fingerprint, so the same tree always gets the
// same version and any change to what would be deployed gets a new one.
const DevVersionPrefix = "0+dev."

// CommitHashNonGit is release.MF's commit_hash for releases Build creates. bosh-cli
// writes it for trees outside git; Bosun always does, so that a tarball depends on the
// tree's content alone and not on the commit it happens to sit in.
const CommitHashNonGit = "non-git"

// Build builds a release from a BOSH release directory: jobs/<name>/{spec,monit,
// templates/}, packages/<name>/{spec,packaging}, src/ and blobs/, optional
// config/{final,dev,blobs}.yml, LICENSE and NOTICE. The name comes from config/final.yml
// (final_name or name), then config/dev.yml (dev_name), then the directory's base name.
func Build(ctx context.Context, dir string) (*Release, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build release from %s: %w", dir, err)
	}
	// os.Root keeps symlinks from reaching outside the release directory: a release taken
	// from a pull request must not pull the director's own files into a job.
	root, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("build release: %w", err)
	}
	defer root.Close()
	return BuildFS(ctx, root.FS(), filepath.Base(abs))
}

// BuildFS is Build over any file system (a git tree, an fs.FS in tests); defaultName is
// the name used when the config files give none.
func BuildFS(ctx context.Context, fsys fs.FS, defaultName string) (*Release, error) {
	name, err := releaseName(fsys, defaultName)
	if err != nil {
		return nil, fmt.Errorf("build release: %w", err)
	}
	r := &Release{Manifest: Manifest{Name: name, CommitHash: CommitHashNonGit}}
	if err := checkBlobs(fsys); err != nil {
		return nil, fmt.Errorf("build release %q: %w", name, err)
	}
	srcFiles, err := listFiles(fsys, "src")
	if err != nil {
		return nil, fmt.Errorf("build release %q: list src: %w", name, err)
	}
	blobFiles, err := listFiles(fsys, "blobs")
	if err != nil {
		return nil, fmt.Errorf("build release %q: list blobs: %w", name, err)
	}
	pkgDirs, err := subdirs(fsys, "packages")
	if err != nil {
		return nil, fmt.Errorf("build release %q: %w", name, err)
	}
	for _, d := range pkgDirs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := buildPackage(fsys, d, srcFiles, blobFiles)
		if err != nil {
			return nil, fmt.Errorf("build release %q: package %q: %w", name, d, err)
		}
		r.Packages = append(r.Packages, p)
	}
	if err := checkGraph(name, r.depGraph()); err != nil {
		return nil, fmt.Errorf("build release: %w", err)
	}
	jobDirs, err := subdirs(fsys, "jobs")
	if err != nil {
		return nil, fmt.Errorf("build release %q: %w", name, err)
	}
	for _, d := range jobDirs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		j, err := buildJob(fsys, d)
		if err != nil {
			return nil, fmt.Errorf("build release %q: job %q: %w", name, d, err)
		}
		for _, p := range j.Spec.Packages {
			if r.Package(p) == nil {
				return nil, fmt.Errorf("build release %q: job %q needs package %q, which the release does not have", name, d, p)
			}
		}
		r.Jobs = append(r.Jobs, j)
	}
	var lic *LicenseRef
	if r.License, lic, err = buildLicense(fsys); err != nil {
		return nil, fmt.Errorf("build release %q: license: %w", name, err)
	}
	r.Manifest.License = lic
	r.Manifest.Version = devVersion(r)
	r.fillManifest()
	return r, nil
}

// fillManifest sets the manifest's job and package lists from r's jobs and packages.
func (r *Release) fillManifest() {
	r.Manifest.Jobs = r.Manifest.Jobs[:0]
	for _, j := range r.Jobs {
		r.Manifest.Jobs = append(r.Manifest.Jobs, JobRef{Name: j.Spec.Name, Version: j.Fingerprint, Fingerprint: j.Fingerprint, SHA1: j.SHA1, Packages: j.Spec.Packages})
	}
	r.Manifest.Packages = r.Manifest.Packages[:0]
	for _, p := range r.Packages {
		deps := p.Dependencies
		if deps == nil {
			deps = []string{}
		}
		r.Manifest.Packages = append(r.Manifest.Packages, PackageRef{Name: p.Name, Version: p.Fingerprint, Fingerprint: p.Fingerprint, SHA1: p.SHA1, Dependencies: deps})
	}
}

func devVersion(r *Release) string {
	var b strings.Builder
	for _, j := range r.Jobs {
		fmt.Fprintf(&b, "job %s %s\n", j.Spec.Name, j.Fingerprint)
	}
	for _, p := range r.Packages {
		fmt.Fprintf(&b, "package %s %s\n", p.Name, p.Fingerprint)
	}
	if r.Manifest.License != nil {
		fmt.Fprintf(&b, "license %s\n", r.Manifest.License.Fingerprint)
	}
	return DevVersionPrefix + strings.TrimPrefix(digestString([]byte(b.String())), "sha256:")[:12]
}

func releaseName(fsys fs.FS, def string) (string, error) {
	var final struct {
		Name      string `yaml:"name"`
		FinalName string `yaml:"final_name"`
	}
	var dev struct {
		DevName string `yaml:"dev_name"`
	}
	for _, c := range []struct {
		file string
		v    any
	}{{"config/final.yml", &final}, {"config/dev.yml", &dev}} {
		data, err := fs.ReadFile(fsys, c.file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if _, err := decodeYAML(c.file, data, c.v); err != nil {
			return "", err
		}
	}
	for _, n := range []string{final.FinalName, final.Name, dev.DevName, def} {
		if n != "" {
			if !nameRE.MatchString(n) {
				return "", fmt.Errorf("release name %q: want letters, digits, '.', '-' or '_'", n)
			}
			return n, nil
		}
	}
	return "", errors.New("release has no name")
}

// checkBlobs makes sure every blob config/blobs.yml lists is present in blobs/: Bosun
// does not download blobs from a release's blobstore.
func checkBlobs(fsys fs.FS) error {
	data, err := fs.ReadFile(fsys, "config/blobs.yml")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var blobs map[string]struct {
		Size int64  `yaml:"size"`
		SHA  string `yaml:"sha"`
	}
	if err := yaml.Unmarshal(data, &blobs); err != nil {
		return fmt.Errorf("config/blobs.yml: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	names := make([]string, 0, len(blobs))
	for n := range blobs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if relPath(n) != nil {
			return fmt.Errorf("config/blobs.yml: blob path %q must be relative without '..'", n)
		}
		if _, err := fs.Stat(fsys, path.Join("blobs", n)); err != nil {
			return fmt.Errorf("config/blobs.yml lists blob %q but blobs/%s is missing (fetch it with `bosh sync-blobs`; bosun does not download blobs)", n, n)
		}
	}
	return nil
}

func subdirs(fsys fs.FS, dir string) ([]string, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func buildPackage(fsys fs.FS, name string, srcFiles, blobFiles []string) (*Package, error) {
	dir := path.Join("packages", name)
	specFile := path.Join(dir, "spec")
	data, err := fs.ReadFile(fsys, specFile)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	if _, err := fs.Stat(fsys, path.Join(dir, "spec.lock")); err == nil {
		return nil, fmt.Errorf("%s/spec.lock: vendored packages are not supported; vendor the package's sources instead", dir)
	}
	spec, err := ParsePackageSpec(specFile, data)
	if err != nil {
		return nil, err
	}
	if spec.Name != name {
		return nil, fmt.Errorf("%s: name %q does not match the directory name", specFile, spec.Name)
	}
	var files []file
	for _, special := range []string{"packaging", "pre_packaging"} {
		f, err := readFile(fsys, path.Join(dir, special), special, false)
		if errors.Is(err, fs.ErrNotExist) {
			if special == "packaging" {
				return nil, fmt.Errorf("%s/packaging is missing; every package needs a packaging script", dir)
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", special, err)
		}
		f.ExcludeMode = true
		files = append(files, f)
	}
	matched := map[string]string{} // archive path → path in fsys
	for _, g := range spec.Files {
		found := false
		for _, root := range []struct {
			dir   string
			files []string
		}{{"src", srcFiles}, {"blobs", blobFiles}} {
			for _, rel := range globFiles(root.files, g) {
				found = true
				if _, dup := matched[rel]; !dup {
					matched[rel] = path.Join(root.dir, rel)
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("%s: files pattern %q matches nothing in src/ or blobs/", specFile, g)
		}
	}
	for _, g := range spec.ExcludedFiles {
		for _, rel := range append(globFiles(srcFiles, g), globFiles(blobFiles, g)...) {
			delete(matched, rel)
		}
	}
	rels := make([]string, 0, len(matched))
	for rel := range matched {
		if rel == "packaging" || rel == "pre_packaging" {
			return nil, fmt.Errorf("%s: files must not include %q; it is the package's own script", specFile, rel)
		}
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	for _, rel := range rels {
		f, err := readFile(fsys, matched[rel], rel, false)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", matched[rel], err)
		}
		files = append(files, f)
	}
	archive, err := tgz(files)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	return &Package{
		Name:         name,
		Fingerprint:  fingerprint(files, spec.Dependencies),
		SHA1:         sha1Hex(archive),
		Dependencies: spec.Dependencies,
		Archive:      archive,
	}, nil
}

func buildJob(fsys fs.FS, name string) (*Job, error) {
	dir := path.Join("jobs", name)
	specFile := path.Join(dir, "spec")
	specData, err := readFile(fsys, specFile, "job.MF", true)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	spec, err := ParseJobSpec(specFile, specData.Data)
	if err != nil {
		return nil, err
	}
	if spec.Name != name {
		return nil, fmt.Errorf("%s: name %q does not match the directory name", specFile, spec.Name)
	}
	j := &Job{Spec: *spec, Templates: map[string][]byte{}}
	files := []file{specData}
	for _, opt := range []string{"monit", "properties_schema.json"} {
		f, err := readFile(fsys, path.Join(dir, opt), opt, true)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", opt, err)
		}
		if opt == "monit" {
			j.Monit = f.Data
		}
		files = append(files, f)
	}
	srcs := make([]string, 0, len(spec.Templates))
	for src := range spec.Templates {
		srcs = append(srcs, src)
	}
	sort.Strings(srcs)
	for _, src := range srcs {
		f, err := readFile(fsys, path.Join(dir, "templates", src), "templates/"+src, true)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("template %q (for %s) is missing: no file %s/templates/%s", src, spec.Templates[src], dir, src)
		}
		if err != nil {
			return nil, fmt.Errorf("read template %q: %w", src, err)
		}
		j.Templates[src] = f.Data
		files = append(files, f)
	}
	sort.Slice(files, func(a, b int) bool { return files[a].Path < files[b].Path })
	if j.Archive, err = tgz(files); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	j.Fingerprint = fingerprint(files, nil)
	j.SHA1 = sha1Hex(j.Archive)
	return j, nil
}

func buildLicense(fsys fs.FS) ([]byte, *LicenseRef, error) {
	var files []file
	for _, n := range []string{"LICENSE", "NOTICE"} {
		f, err := readFile(fsys, n, n, true)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		f.ExcludeMode = true
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, nil, nil
	}
	archive, err := tgz(files)
	if err != nil {
		return nil, nil, err
	}
	fp := fingerprint(files, nil)
	return archive, &LicenseRef{Version: fp, Fingerprint: fp, SHA1: sha1Hex(archive)}, nil
}
