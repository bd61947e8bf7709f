package agent

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/blobstore"
)

// refDigest returns the sha256 digest a blob reference names: BOSH's sha1 field may be a
// multi-digest ("sha1:…;sha256:…"); blobstore_id is the hex sha256 in Bosun.
func refDigest(ref protocol.BlobRef) (blobstore.Digest, error) {
	for _, part := range strings.Split(ref.SHA1, ";") {
		if strings.HasPrefix(part, "sha256:") {
			d, err := blobstore.ParseDigest(part)
			if err != nil {
				return "", err
			}
			if ref.BlobstoreID != "" && ref.BlobstoreID != d.Hex() && ref.SignedURL == "" {
				return "", fmt.Errorf("blobstore_id %s and sha1 %s name different blobs", ref.BlobstoreID, ref.SHA1)
			}
			return d, nil
		}
	}
	if ref.SHA1 == "" && ref.BlobstoreID != "" {
		return blobstore.ParseDigest("sha256:" + ref.BlobstoreID)
	}
	return "", fmt.Errorf("sha1 %q carries no sha256 digest; this agent verifies blobs by sha256 only", ref.SHA1)
}

// fetch downloads the blob into a temporary file beneath data/tmp and returns its path
// once the content is verified. The caller removes it.
func (a *Agent) fetch(ctx context.Context, what string, ref protocol.BlobRef) (string, error) {
	d, err := refDigest(ref)
	if err != nil {
		return "", protocol.Errorf(protocol.CodeBlobFetch, "fetch %s: %v", what, err)
	}
	f, err := os.CreateTemp(a.paths.dataDir("tmp"), "blob-*")
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", what, err)
	}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			os.Remove(f.Name())
		}
	}()
	blobs := a.blobs()
	switch {
	case ref.SignedURL != "":
		err = blobs.http.Download(ctx, ref.SignedURL, ref.BlobstoreHeaders, d, f)
	case blobs.store != nil:
		var rc io.ReadCloser
		rc, err = blobs.store.Get(ctx, d)
		if err == nil {
			_, err = io.Copy(f, rc)
			rc.Close()
		}
	default:
		err = errors.New("no signed_url given and the agent has no blobstore configured")
	}
	if err != nil {
		return "", protocol.Errorf(protocol.CodeBlobFetch, "fetch %s (%s): %v", what, d, err)
	}
	ok = true
	return f.Name(), nil
}

// put stores a local file in the agent's blobstore or at a signed PUT URL.
func (a *Agent) put(ctx context.Context, what, path, signedURL string, headers map[string]string) (protocol.BlobResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return protocol.BlobResult{}, fmt.Errorf("upload %s: %w", what, err)
	}
	defer f.Close()
	var d blobstore.Digest
	blobs := a.blobs()
	switch {
	case signedURL != "":
		d, err = blobs.http.Upload(ctx, signedURL, headers, f)
	case blobs.store != nil:
		d, err = blobs.store.Put(ctx, f)
	default:
		err = errors.New("no signed upload URL given and the agent has no blobstore configured")
	}
	if err != nil {
		return protocol.BlobResult{}, protocol.Errorf(protocol.CodeBlobUpload, "upload %s: %v", what, err)
	}
	return protocol.BlobResult{BlobstoreID: d.Hex(), SHA1: string(d)}, nil
}

// extract unpacks a gzipped tarball into dir, refusing entries that escape it.
func extract(tarball, dir string) error {
	f, err := os.Open(tarball)
	if err != nil {
		return err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("not a gzipped tarball: %w", err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tarball: %w", err)
		}
		name := filepath.Clean(h.Name)
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("tarball entry %q leaves the target directory", h.Name)
		}
		dst := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fs.FileMode(h.Mode)&0o777|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extract %s: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			if filepath.IsAbs(h.Linkname) || !filepath.IsLocal(filepath.Join(filepath.Dir(name), h.Linkname)) {
				return fmt.Errorf("tarball symlink %q → %q leaves the target directory", h.Name, h.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, dst); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tarball entry %q has unsupported type %c", h.Name, h.Typeflag)
		}
	}
}

// installBlob fetches a tarball and unpacks it into dir unless dir is already complete,
// so prepare then apply downloads once.
func (a *Agent) installBlob(ctx context.Context, what string, ref protocol.BlobRef, dir string) error {
	a.installMu.Lock()
	defer a.installMu.Unlock()
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	tmp, err := a.fetch(ctx, what, ref)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	stage := dir + ".partial"
	os.RemoveAll(stage)
	if err := extract(tmp, stage); err != nil {
		os.RemoveAll(stage)
		return protocol.Errorf(protocol.CodeBlobFetch, "unpack %s: %v", what, err)
	}
	if err := os.Rename(stage, dir); err != nil {
		return fmt.Errorf("install %s: %w", what, err)
	}
	return nil
}

// installPackage puts a compiled package at data/packages/<name>/<version>.
func (a *Agent) installPackage(ctx context.Context, p protocol.PackageSpec) (string, error) {
	if p.Name == "" || !filepath.IsLocal(p.Name) || strings.ContainsRune(p.Name, '/') || !filepath.IsLocal(p.Version) || strings.ContainsRune(p.Version, '/') {
		return "", protocol.Errorf(protocol.CodeBadArguments, "package %q version %q: not a valid name", p.Name, p.Version)
	}
	dir := filepath.Join(a.paths.dataDir("packages"), p.Name, p.Version)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	return dir, a.installBlob(ctx, "package "+p.Name, p.BlobRef, dir)
}

// renderedDir is where one rendered templates archive is unpacked.
func (a *Agent) renderedDir(ref protocol.BlobRef) (string, error) {
	d, err := refDigest(ref)
	if err != nil {
		return "", protocol.Errorf(protocol.CodeBlobFetch, "rendered templates: %v", err)
	}
	return filepath.Join(a.paths.dataDir("jobs"), ".rendered", d.Hex()[:16]), nil
}

// install downloads everything the spec needs without switching to it (prepare).
func (a *Agent) install(ctx context.Context, spec protocol.ApplySpec) error {
	for _, name := range sortedKeys(spec.Packages) {
		if _, err := a.installPackage(ctx, spec.Packages[name]); err != nil {
			return err
		}
	}
	if spec.RenderedTemplatesArchive == nil {
		return nil
	}
	dir, err := a.renderedDir(*spec.RenderedTemplatesArchive)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	if err := a.installBlob(ctx, "rendered templates", *spec.RenderedTemplatesArchive, dir); err != nil {
		return err
	}
	for _, j := range spec.Job.Templates {
		if _, err := os.Stat(filepath.Join(dir, j.Name)); err != nil {
			return protocol.Errorf(protocol.CodeJobFailed, "rendered templates archive has no directory for job %s", j.Name)
		}
	}
	return nil
}

func decodeSpec(method string, args []json.RawMessage) (protocol.ApplySpec, error) {
	var spec protocol.ApplySpec
	if err := arg(method, args, 0, &spec, true); err != nil {
		return spec, err
	}
	for _, j := range spec.Job.Templates {
		if j.Name == "" || strings.ContainsAny(j.Name, "/\\") || j.Name == "." || j.Name == ".." {
			return spec, protocol.Errorf(protocol.CodeBadArguments, "%s: job name %q is not valid", method, j.Name)
		}
	}
	return spec, nil
}

func (a *Agent) prepare(ctx context.Context, args []json.RawMessage) (any, error) {
	spec, err := decodeSpec("prepare", args)
	if err != nil {
		return nil, err
	}
	if err := a.install(ctx, spec); err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	return "prepared", nil
}

// apply installs the spec's jobs and packages and points jobs/ and packages/ at them.
// Processes are not (re)started: the director calls start, as with BOSH.
func (a *Agent) apply(ctx context.Context, args []json.RawMessage) (any, error) {
	spec, err := decodeSpec("apply", args)
	if err != nil {
		return nil, err
	}
	a.jobsMu.Lock()
	defer a.jobsMu.Unlock()
	if err := a.install(ctx, spec); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	pkgLinks := map[string]string{}
	for name, p := range spec.Packages {
		pkgLinks[name] = filepath.Join(a.paths.dataDir("packages"), p.Name, p.Version)
	}
	jobLinks := map[string]string{}
	if spec.RenderedTemplatesArchive != nil {
		dir, _ := a.renderedDir(*spec.RenderedTemplatesArchive)
		for _, j := range spec.Job.Templates {
			jobLinks[j.Name] = filepath.Join(dir, j.Name)
			binDir := filepath.Join(dir, j.Name, "bin")
			entries, _ := os.ReadDir(binDir)
			for _, e := range entries {
				if e.Type().IsRegular() {
					os.Chmod(filepath.Join(binDir, e.Name()), 0o755)
				}
			}
			if err := os.MkdirAll(a.paths.sysLog(j.Name), 0o755); err != nil {
				return nil, err
			}
		}
	}
	// A partial spec (networks only, sent to learn a new VM's address) installs nothing
	// and must not remove what is installed.
	if len(spec.Job.Templates) > 0 || len(spec.Packages) > 0 {
		if err := relink(a.paths.packagesDir(), pkgLinks); err != nil {
			return nil, fmt.Errorf("apply: link packages: %w", err)
		}
		if err := relink(a.paths.jobsDir(), jobLinks); err != nil {
			return nil, fmt.Errorf("apply: link jobs: %w", err)
		}
	}
	spec = withoutCredentials(spec)
	b, _ := json.MarshalIndent(spec, "", "  ")
	if err := writeFileAtomic(a.paths.specFile(), b); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	a.specMu.Lock()
	a.spec = spec
	a.specMu.Unlock()
	if len(spec.Job.Templates) > 0 || len(spec.Packages) > 0 {
		a.removeUnused(pkgLinks, jobLinks)
	}
	return "applied", nil
}

// withoutCredentials drops signed URLs and blobstore headers: they are credentials, and
// the stored spec is echoed by get_state.
func withoutCredentials(spec protocol.ApplySpec) protocol.ApplySpec {
	strip := func(r protocol.BlobRef) protocol.BlobRef {
		r.SignedURL, r.BlobstoreHeaders = "", nil
		return r
	}
	pkgs := make(map[string]protocol.PackageSpec, len(spec.Packages))
	for k, p := range spec.Packages {
		p.BlobRef = strip(p.BlobRef)
		pkgs[k] = p
	}
	spec.Packages = pkgs
	spec.Job.Templates = append([]protocol.JobTemplate(nil), spec.Job.Templates...)
	for i := range spec.Job.Templates {
		spec.Job.Templates[i].BlobRef = strip(spec.Job.Templates[i].BlobRef)
	}
	if spec.RenderedTemplatesArchive != nil {
		r := strip(*spec.RenderedTemplatesArchive)
		spec.RenderedTemplatesArchive = &r
	}
	return spec
}

// removeUnused deletes package versions and rendered templates the applied spec no longer
// uses, so a long-lived VM does not fill its ephemeral disk one deploy at a time.
// Directories being compiled or unpacked are left alone.
func (a *Agent) removeUnused(pkgLinks, jobLinks map[string]string) {
	used := map[string]bool{}
	for _, dir := range pkgLinks {
		used[dir] = true
	}
	for _, dir := range jobLinks {
		used[filepath.Dir(dir)] = true
	}
	candidates, _ := filepath.Glob(filepath.Join(a.paths.dataDir("packages"), "*", "*"))
	rendered, _ := filepath.Glob(filepath.Join(a.paths.dataDir("jobs"), ".rendered", "*"))
	for _, dir := range append(candidates, rendered...) {
		if used[dir] || strings.HasSuffix(dir, ".compiling") || strings.HasSuffix(dir, ".partial") {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			a.log.Warn("unused package or templates not removed", "dir", dir, "err", err)
		}
	}
}

// relink makes dir hold exactly the given name → target symlinks, each swapped atomically.
func relink(dir string, links map[string]string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, keep := links[e.Name()]; !keep && e.Type()&fs.ModeSymlink != 0 {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	for name, target := range links {
		tmp := filepath.Join(dir, "."+name+".new")
		os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jobNames lists the applied spec's jobs in order.
func (a *Agent) jobNames() []string {
	spec := a.currentSpec()
	names := make([]string, 0, len(spec.Job.Templates))
	for _, j := range spec.Job.Templates {
		names = append(names, j.Name)
	}
	return names
}

// start (re)reads every job's process declarations and starts them.
func (a *Agent) start(ctx context.Context, _ []json.RawMessage) (any, error) {
	a.jobsMu.Lock()
	defer a.jobsMu.Unlock()
	var jobs []jobProcs
	for _, name := range a.jobNames() {
		if _, err := os.Stat(a.paths.jobDir(name)); err != nil {
			return nil, protocol.Errorf(protocol.CodeJobFailed, "start: job %s is not installed: the applied spec carried no rendered templates for it", name)
		}
		procs, err := loadProcesses(a.paths, name)
		if err != nil {
			return nil, protocol.Errorf(protocol.CodeJobFailed, "start: %v", err)
		}
		jobs = append(jobs, jobProcs{job: name, procs: procs})
	}
	if err := a.sup.start(ctx, jobs, a.processEnv(), installedVersion(a.currentSpec())); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	// Remembered so that a restarted agent starts the jobs again, as monit would keep them.
	if err := os.WriteFile(a.startedMarker(), nil, 0o644); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	return "started", nil
}

func (a *Agent) stop(ctx context.Context, _ []json.RawMessage) (any, error) {
	a.jobsMu.Lock()
	defer a.jobsMu.Unlock()
	a.sup.stopAll(ctx)
	if err := os.Remove(a.startedMarker()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("stop: %w", err)
	}
	return "stopped", nil
}

// installedVersion names what an applied spec installs for its processes.
func installedVersion(spec protocol.ApplySpec) string {
	var b strings.Builder
	if r := spec.RenderedTemplatesArchive; r != nil {
		b.WriteString(r.SHA1 + r.BlobstoreID)
	}
	for _, name := range sortedKeys(spec.Packages) {
		b.WriteString(" " + name + "/" + spec.Packages[name].Version)
	}
	return b.String()
}

func (a *Agent) startedMarker() string { return filepath.Join(a.paths.boshDir(), "jobs_started") }

// processEnv is the environment every job process and script gets on top of the agent's.
func (a *Agent) processEnv() []string {
	spec := a.currentSpec()
	return []string{
		"BOSUN_ROOT=" + a.opts.Root,
		"BOSUN_VCAP=" + a.paths.vcap,
		"BOSH_DEPLOYMENT=" + spec.Deployment,
		"BOSH_JOB_NAME=" + spec.Name,
		fmt.Sprintf("BOSH_JOB_INDEX=%d", spec.Index),
		"BOSH_INSTANCE_ID=" + spec.ID,
		"BOSH_INSTANCE_IP=" + a.settings.IP(),
	}
}

func (a *Agent) jobState() (string, int) {
	if len(a.jobNames()) == 0 {
		return protocol.JobRunning, 0
	}
	return a.sup.state()
}

func (a *Agent) getState(_ context.Context, args []json.RawMessage) (any, error) {
	var full string
	if err := arg("get_state", args, 0, &full, false); err != nil {
		return nil, err
	}
	st := protocol.State{ApplySpec: a.currentSpec(), AgentID: a.settings.AgentID}
	st.JobState, _ = a.jobState()
	st.Processes = a.sup.processes()
	st.VM.Name = a.settings.VM.Name
	if full == "full" {
		v := a.vitals.sample(a.paths)
		st.Vitals = &v
	}
	return st, nil
}
