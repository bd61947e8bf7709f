package agent

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bosun-gitops/bosun/agent/protocol"
)

// compileLogTail is how much of a failing packaging script's output the error keeps.
const compileLogTail = 4096

func (a *Agent) compilePackage(ctx context.Context, args []json.RawMessage) (any, error) {
	var blobID, sha1, name, version string
	var deps map[string]protocol.CompileDependency
	for i, p := range []*string{&blobID, &sha1, &name, &version} {
		if err := arg("compile_package", args, i, p, true); err != nil {
			return nil, err
		}
	}
	if err := arg("compile_package", args, 4, &deps, false); err != nil {
		return nil, err
	}
	return a.compile(ctx, name, version, protocol.BlobRef{BlobstoreID: blobID, SHA1: sha1}, deps, "", nil)
}

func (a *Agent) compilePackageWithSignedURL(ctx context.Context, args []json.RawMessage) (any, error) {
	var req protocol.CompileWithSignedURL
	if err := arg("compile_package_with_signed_url", args, 0, &req, true); err != nil {
		return nil, err
	}
	if req.PackageGetSignedURL == "" || req.UploadSignedURL == "" {
		return nil, protocol.Errorf(protocol.CodeBadArguments, "compile_package_with_signed_url: package_get_signed_url and upload_signed_url are required")
	}
	src := protocol.BlobRef{SHA1: req.Digest, SignedURL: req.PackageGetSignedURL, BlobstoreHeaders: req.BlobstoreHeaders}
	return a.compile(ctx, req.Name, req.Version, src, req.Deps, req.UploadSignedURL, req.BlobstoreHeaders)
}

// compile runs a source package's packaging script with its dependencies installed under
// packages/, then uploads the installed result as a gzipped tarball.
func (a *Agent) compile(ctx context.Context, name, version string, src protocol.BlobRef, deps map[string]protocol.CompileDependency, uploadURL string, headers map[string]string) (protocol.CompileResult, error) {
	a.compileMu.Lock()
	defer a.compileMu.Unlock()
	var res protocol.CompileResult
	what := fmt.Sprintf("compile package %s/%s", name, version)
	if !validToken(name) || !validToken(version) {
		return res, protocol.Errorf(protocol.CodeBadArguments, "%s: name and version must be letters, digits, '-', '_' and '.'", what)
	}
	links := map[string]string{}
	for _, dep := range sortedKeys(deps) {
		d := deps[dep]
		dir, err := a.installPackage(ctx, protocol.PackageSpec{Name: d.Name, Version: d.Version, BlobRef: protocol.BlobRef{
			BlobstoreID: d.BlobstoreID, SHA1: d.SHA1, SignedURL: d.PackageGetSignedURL, BlobstoreHeaders: d.BlobstoreHeaders,
		}})
		if err != nil {
			return res, fmt.Errorf("%s: dependency %s: %w", what, dep, err)
		}
		links[d.Name] = dir
	}
	compileDir := filepath.Join(a.paths.dataDir("compile"), name)
	installDir := filepath.Join(a.paths.dataDir("packages"), name, version+".compiling")
	for _, d := range []string{compileDir, installDir} {
		os.RemoveAll(d)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return res, fmt.Errorf("%s: %w", what, err)
		}
	}
	defer os.RemoveAll(compileDir)
	defer os.RemoveAll(installDir)
	links[name] = installDir
	for l, target := range links {
		if err := relinkOne(a.paths.packagesDir(), l, target); err != nil {
			return res, fmt.Errorf("%s: link %s: %w", what, l, err)
		}
	}
	defer os.Remove(filepath.Join(a.paths.packagesDir(), name))

	tmp, err := a.fetch(ctx, "source of package "+name, src)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	err = extract(tmp, compileDir)
	os.Remove(tmp)
	if err != nil {
		return res, protocol.Errorf(protocol.CodeBlobFetch, "%s: unpack source: %v", what, err)
	}
	if _, err := os.Stat(filepath.Join(compileDir, "packaging")); err != nil {
		return res, protocol.Errorf(protocol.CodeCompileFailed, "%s: the source has no packaging script", what)
	}
	shell := "/bin/bash"
	if _, err := os.Stat(shell); err != nil {
		shell = "/bin/sh"
	}
	logPath := filepath.Join(a.paths.dataDir("compile"), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	cmd := exec.CommandContext(ctx, shell, "-x", "packaging")
	cmd.Dir = compileDir
	cmd.Env = append(os.Environ(),
		"BOSH_COMPILE_TARGET="+compileDir,
		"BOSH_INSTALL_TARGET="+filepath.Join(a.paths.packagesDir(), name),
		"BOSH_PACKAGES_DIR="+a.paths.packagesDir(),
		"BOSH_PACKAGE_NAME="+name,
		"BOSH_PACKAGE_VERSION="+version,
	)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	runErr := cmd.Run()
	logFile.Close()
	if runErr != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		return res, protocol.Errorf(protocol.CodeCompileFailed, "%s: packaging %v; last output:\n%s", what, runErr, tailFile(logPath, compileLogTail))
	}
	out, err := os.CreateTemp(a.paths.dataDir("tmp"), "compiled-*.tgz")
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	defer os.Remove(out.Name())
	err = tarGz(out, installDir, func(string) bool { return true })
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, fmt.Errorf("%s: archive result: %w", what, err)
	}
	res.Result, err = a.put(ctx, "compiled package "+name, out.Name(), uploadURL, headers)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	return res, nil
}

func relinkOne(dir, name, target string) error {
	tmp := filepath.Join(dir, "."+name+".new")
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// tarGz writes dir's files (those keep accepts, by slash path) as a gzipped tarball in
// a stable order with normalised owners and times, so equal trees give equal blobs.
func tarGz(w io.Writer, dir string, keep func(rel string) bool) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if !d.IsDir() && !keep(rel) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = rel
		if d.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.ModTime, h.AccessTime, h.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, io.LimitReader(f, h.Size))
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// fetch_logs: job logs (sys/log) or the agent's own (bosh/log), filtered by glob.

func (a *Agent) fetchLogs(ctx context.Context, args []json.RawMessage) (any, error) {
	var logType string
	var filters []string
	if err := arg("fetch_logs", args, 0, &logType, true); err != nil {
		return nil, err
	}
	if err := arg("fetch_logs", args, 1, &filters, false); err != nil {
		return nil, err
	}
	return a.bundleLogs(ctx, logType, filters, "", nil)
}

func (a *Agent) fetchLogsWithSignedURL(ctx context.Context, args []json.RawMessage) (any, error) {
	var req protocol.FetchLogsWithSignedURL
	if err := arg("fetch_logs_with_signed_url", args, 0, &req, true); err != nil {
		return nil, err
	}
	if req.SignedURL == "" {
		return nil, protocol.Errorf(protocol.CodeBadArguments, "fetch_logs_with_signed_url: signed_url is required")
	}
	return a.bundleLogs(ctx, req.LogType, req.Filters, req.SignedURL, req.BlobstoreHeaders)
}

func (a *Agent) bundleLogs(ctx context.Context, logType string, filters []string, uploadURL string, headers map[string]string) (protocol.BlobResult, error) {
	var dir string
	switch logType {
	case "job":
		dir = a.paths.sysLog("")
	case "agent":
		dir = filepath.Join(a.paths.boshDir(), "log")
	default:
		return protocol.BlobResult{}, protocol.Errorf(protocol.CodeBadArguments, "fetch_logs: log type %q: want job or agent", logType)
	}
	for _, f := range filters {
		if _, err := filepath.Match(strings.ReplaceAll(f, "**/", ""), ""); err != nil {
			return protocol.BlobResult{}, protocol.Errorf(protocol.CodeBadArguments, "fetch_logs: filter %q: %v", f, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return protocol.BlobResult{}, fmt.Errorf("fetch_logs: %w", err)
	}
	out, err := os.CreateTemp(a.paths.dataDir("tmp"), "logs-*.tgz")
	if err != nil {
		return protocol.BlobResult{}, fmt.Errorf("fetch_logs: %w", err)
	}
	defer os.Remove(out.Name())
	err = tarGz(out, dir, func(rel string) bool { return matchLogFilter(filters, rel) })
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return protocol.BlobResult{}, fmt.Errorf("fetch_logs: %w", err)
	}
	return a.put(ctx, logType+" logs", out.Name(), uploadURL, headers)
}

// matchLogFilter applies BOSH's filters: globs over the path below the log directory,
// where a leading "**/" matches any depth. No filters means everything.
func matchLogFilter(filters []string, rel string) bool {
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if deep, ok := strings.CutPrefix(f, "**/"); ok {
			parts := strings.Split(rel, "/")
			for i := range parts {
				if m, _ := filepath.Match(deep, strings.Join(parts[i:], "/")); m {
					return true
				}
			}
			continue
		}
		if m, _ := filepath.Match(f, rel); m {
			return true
		}
	}
	return false
}
