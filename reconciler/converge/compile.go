package converge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/bosun-gitops/bosun/agent/protocol"
	"github.com/bosun-gitops/bosun/blobstore"
	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/state"
)

// compiledPackage is a package compiled for the task's stemcell.
type compiledPackage struct {
	version string // the compiled-package key: what the agent installs it under
	blob    blobstore.Digest
}

// prepare uploads the stemcell (once per CPI) and compiles the packages not compiled
// for it yet.
func (r *run) prepare(ctx context.Context) error {
	if err := r.uploadStemcell(ctx); err != nil {
		return err
	}
	return r.compile(ctx)
}

func (r *run) uploadStemcell(ctx context.Context) error {
	e := r.e
	sc := r.t.Stemcell
	name := sc.Name
	if name == "" {
		name = sc.OS
	}
	cid, err := e.cfg.Store.StemcellCID(ctx, e.cfg.CPIName, name, sc.Version)
	if err == nil {
		r.stemcell = cid
		return nil
	}
	if !errors.Is(err, state.ErrNotFound) {
		return err
	}
	ev := state.TaskEvent{Stage: "Uploading stemcell", Task: name + "/" + sc.Version, Index: 1, Total: 1, State: "started"}
	if err := r.event(ev); err != nil {
		return err
	}
	made, err := e.cfg.CPI.CreateStemcell(ctx, sc.ImagePath, sc.CloudProperties)
	if err != nil {
		if ctx.Err() == nil {
			// The cloud refused the stemcell: the rollout's failure, not the director's.
			r.fail(&Failure{Instance: "stemcell " + name + "/" + sc.Version, Error: "create_stemcell: " + err.Error()})
		}
		ev.State, ev.Error = "failed", err.Error()
		r.event(ev) //nolint:errcheck // the run ends with err
		return fmt.Errorf("upload stemcell %s/%s: %w", name, sc.Version, err)
	}
	got, err := e.cfg.Store.PutStemcell(ctx, e.cfg.CPIName, name, sc.Version, string(made))
	if err != nil {
		return err
	}
	if got != string(made) {
		// Another director uploaded it at the same time; keep one.
		if err := e.cfg.CPI.DeleteStemcell(ctx, made); err != nil {
			e.cfg.Log.Warn("duplicate stemcell not deleted", "stemcell_cid", made, "err", err)
		}
	}
	r.stemcell = got
	ev.State, ev.Progress = "finished", 100
	return r.event(ev)
}

// compiledKey is the compiled-package key: the package's fingerprint, those of all it
// depends on and the stemcell, as BOSH keys compiled packages (the same recipe as
// release.CompiledPackageKey).
func compiledKey(p Package, deps []Package, os, version string) string {
	sorted := slices.Clone(deps)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	h := sha256.New()
	fmt.Fprintf(h, "bosun compiled package v1\n%s %s\n", p.Name, p.Version)
	for _, d := range sorted {
		fmt.Fprintf(h, "dep %s %s\n", d.Name, d.Version)
	}
	fmt.Fprintf(h, "stemcell %s/%s\n", os, version)
	return hex.EncodeToString(h.Sum(nil))
}

// pkgID names a package across releases.
func pkgID(p Package) string { return p.Release + "/" + p.Name }

// compileOrder returns the task's packages with each after its dependencies, and each
// package's transitive dependencies.
func compileOrder(pkgs []Package) ([]Package, map[string][]Package, error) {
	byID := map[string]Package{}
	for _, p := range pkgs {
		byID[pkgID(p)] = p
	}
	var order []Package
	deps := map[string][]Package{}
	mark := map[string]int{} // 1 visiting, 2 done
	var visit func(id, from string) error
	visit = func(id, from string) error {
		p, ok := byID[id]
		if !ok {
			return fmt.Errorf("package %s needs %s, which the task does not carry", from, id)
		}
		switch mark[id] {
		case 1:
			return fmt.Errorf("package %s depends on itself through %s", id, from)
		case 2:
			return nil
		}
		mark[id] = 1
		seen := map[string]bool{}
		var all []Package
		for _, d := range slices.Sorted(slices.Values(p.Dependencies)) {
			did := p.Release + "/" + d
			if err := visit(did, id); err != nil {
				return err
			}
			for _, dd := range append([]Package{byID[did]}, deps[did]...) {
				if !seen[pkgID(dd)] {
					seen[pkgID(dd)] = true
					all = append(all, dd)
				}
			}
		}
		deps[id] = all
		mark[id] = 2
		order = append(order, p)
		return nil
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := visit(id, id); err != nil {
			return nil, nil, err
		}
	}
	return order, deps, nil
}

// compile compiles, on compilation VMs, every package without a compiled copy for the
// task's stemcell, dependencies first, and records the results.
func (r *run) compile(ctx context.Context) error {
	e := r.e
	order, deps, err := compileOrder(r.t.Packages)
	if err != nil {
		return err
	}
	sc := r.t.Stemcell
	keys := map[string]string{}
	var todo []Package
	for _, p := range order {
		key := compiledKey(p, deps[pkgID(p)], sc.OS, sc.Version)
		keys[pkgID(p)] = key
		c, err := e.cfg.Store.CompiledPackage(ctx, key)
		if err == nil {
			d, perr := blobstore.ParseDigest(c.Blob)
			ok := perr == nil
			if ok && e.cfg.Blobs != nil {
				ok, err = e.cfg.Blobs.Exists(ctx, d)
				if err != nil {
					return fmt.Errorf("compiled package %s: %w", pkgID(p), err)
				}
			}
			if ok {
				r.compiled[pkgID(p)] = compiledPackage{version: key, blob: d}
				continue
			}
		} else if !errors.Is(err, state.ErrNotFound) {
			return err
		}
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return nil
	}
	workers := max(1, min(r.t.Compilation.Workers, len(todo)))
	vms := make(chan *inst, workers)
	var made []*inst
	defer func() {
		for _, vm := range made {
			if vm.cur.VMCID == "" {
				continue
			}
			if f, err := e.deleteVM(context.WithoutCancel(ctx), r.task, r.t.Deployment, "", vm.cur.VMCID); f != nil || err != nil {
				e.cfg.Log.Warn("compilation VM not deleted", "vm_cid", vm.cur.VMCID, "failure", f, "err", err)
			}
		}
	}()
	for w := range workers {
		in := &inst{r: r, cur: state.Instance{ID: "", Deployment: r.t.Deployment, Group: "compilation", Index: w}}
		nets := cpi.Networks{"compilation": {Type: "dynamic"}}
		if len(r.t.Compilation.Networks) > w {
			nets = r.t.Compilation.Networks[w]
		} else if len(r.t.Compilation.Networks) > 0 {
			nets = r.t.Compilation.Networks[0]
		}
		vm := VM{CloudProperties: r.t.Compilation.CloudProperties, Env: r.t.Compilation.Env, Networks: nets}
		made = append(made, in)
		_, f, err := in.createCompilationVM(ctx, vm)
		if err != nil {
			return err
		}
		if f != nil {
			f.Instance = "compilation"
			r.fail(f)
			return fmt.Errorf("create compilation VM: %s", f.Error)
		}
		vms <- in
	}
	// Packages compile as soon as their dependencies are done, on any free VM.
	done := map[string]chan struct{}{}
	for _, p := range todo {
		done[pkgID(p)] = make(chan struct{})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, p := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(done[pkgID(p)])
			for _, d := range deps[pkgID(p)] {
				if ch, ok := done[pkgID(d)]; ok {
					select {
					case <-ch:
					case <-cctx.Done():
						return
					}
				}
			}
			var vm *inst
			select {
			case vm = <-vms:
			case <-cctx.Done():
				return
			}
			defer func() { vms <- vm }()
			if err := r.compileOne(cctx, vm, p, deps[pkgID(p)], keys, i+1, len(todo)); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func (in *inst) createCompilationVM(ctx context.Context, vm VM) (cpi.Networks, *Failure, error) {
	return in.createVM(ctx, vm, in.r.stemcell, in.r.t.Stemcell.APIVersion)
}

func (r *run) compileOne(ctx context.Context, vm *inst, p Package, deps []Package, keys map[string]string, index, total int) error {
	e := r.e
	ev := state.TaskEvent{Stage: "Compiling packages", Task: p.Name + "/" + p.Version, Index: index, Total: total, State: "started"}
	if err := r.event(ev); err != nil {
		return err
	}
	depArgs := map[string]protocol.CompileDependency{}
	r.mu.Lock()
	for _, d := range deps {
		c := r.compiled[pkgID(d)]
		dep := protocol.CompileDependency{Name: d.Name, Version: c.version, SHA1: string(c.blob), BlobstoreID: c.blob.Hex()}
		if e.cfg.Signer != nil {
			dep.PackageGetSignedURL = e.cfg.Signer.SignGet(c.blob)
		}
		depArgs[d.Name] = dep
	}
	r.mu.Unlock()
	key := keys[pkgID(p)]
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CompileTimeout)
	defer cancel()
	var res protocol.BlobResult
	var err error
	if e.cfg.Signer != nil {
		res, err = e.cfg.Agents.CompilePackageWithSignedURL(cctx, vm.cur.AgentID, protocol.CompileWithSignedURL{
			PackageGetSignedURL: e.cfg.Signer.SignGet(p.Source), UploadSignedURL: e.cfg.Signer.SignPut(""),
			Digest: string(p.Source), Name: p.Name, Version: key, Deps: depArgs})
	} else {
		res, err = e.cfg.Agents.CompilePackage(cctx, vm.cur.AgentID, blobRef(p.Source), p.Name, key, depArgs)
	}
	if err != nil {
		r.fail(&Failure{Instance: "compilation", Process: "package " + p.Name, Error: fmt.Sprintf("compile package %s/%s: %v", p.Release, p.Name, err), LogTail: tail(errMessage(err))})
		ev.State, ev.Error = "failed", err.Error()
		r.event(ev) //nolint:errcheck // the failure is what the run reports
		return fmt.Errorf("compile package %s/%s: %w", p.Release, p.Name, err)
	}
	d, err := blobstore.ParseDigest(res.SHA1)
	if err != nil {
		if d, err = blobstore.ParseDigest("sha256:" + res.BlobstoreID); err != nil {
			return fmt.Errorf("compile package %s: agent answered with no sha256 digest: %w", p.Name, err)
		}
	}
	if err := e.cfg.Store.PutCompiledPackage(ctx, state.CompiledPackage{Key: key, Name: p.Name, Version: p.Version,
		Stemcell: r.t.Stemcell.OS + "/" + r.t.Stemcell.Version, Blob: string(d)}); err != nil {
		return err
	}
	r.mu.Lock()
	r.compiled[pkgID(p)] = compiledPackage{version: key, blob: d}
	r.mu.Unlock()
	ev.State, ev.Progress = "finished", 100
	return r.event(ev)
}

func errMessage(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe.Message
	}
	return err.Error()
}
