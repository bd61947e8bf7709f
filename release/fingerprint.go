package release

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// file is one file of a job, package or license: what goes into its fingerprint and its
// tarball.
type file struct {
	// Path is the path inside the archive, and the name hashed into the fingerprint.
	Path string
	Data []byte
	// Exec reports any executable bit; BOSH normalises modes the way git does.
	Exec bool
	// Link is the target of a symlink that is kept as a link (packages do not follow them).
	Link string
	// ExcludeMode leaves the mode out of the fingerprint, as bosh-cli does for packaging,
	// pre_packaging and license files.
	ExcludeMode bool
}

// digestString is bosh-utils' digest string: "sha256:<hex>".
func digestString(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// fingerprint computes a fingerprint exactly as bosh-cli's FingerprinterImpl does: "v2",
// then per file (sorted by path) path + digest + git-like mode, then the sorted extra
// chunks joined by ","; hashed with sha256 and returned as bare hex. Equal fingerprints
// mean equal content across releases, which is what lets compiled packages be shared.
func fingerprint(files []file, extra []string) string {
	sorted := append([]file(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var b strings.Builder
	b.WriteString("v2")
	for _, f := range sorted {
		b.WriteString(f.Path)
		if f.Link != "" {
			b.WriteString(digestString([]byte(f.Link)))
		} else {
			b.WriteString(digestString(f.Data))
		}
		if f.ExcludeMode {
			continue
		}
		switch {
		case f.Link != "":
			b.WriteString("symlink")
		case f.Exec:
			b.WriteString("100755")
		default:
			b.WriteString("100644")
		}
	}
	if len(extra) > 0 {
		ex := append([]string(nil), extra...)
		sort.Strings(ex)
		b.WriteString(strings.Join(ex, ","))
	}
	return strings.TrimPrefix(digestString([]byte(b.String())), "sha256:")
}

// readFile reads name from fsys into a file stored at archive path p. With follow, a
// symlink contributes its target's content; otherwise it stays a link.
func readFile(fsys fs.FS, name, p string, follow bool) (file, error) {
	info, err := fs.Lstat(fsys, name)
	if err != nil {
		return file{}, err
	}
	if info.Mode()&fs.ModeSymlink != 0 && !follow {
		target, err := fs.ReadLink(fsys, name)
		if err != nil {
			return file{}, err
		}
		return file{Path: p, Link: target}, nil
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		if info, err = fs.Stat(fsys, name); err != nil {
			return file{}, err
		}
	}
	if !info.Mode().IsRegular() {
		return file{}, fmt.Errorf("%s: not a regular file", name)
	}
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return file{}, err
	}
	return file{Path: p, Data: data, Exec: info.Mode()&0o111 != 0}, nil
}

// globFiles returns the paths of all (files relative to a directory) that match pattern, with bosh-utils' RecursiveGlob semantics: "**" spans any number of
// directories, other segments match as path.Match does. Directories never match.
func globFiles(all []string, pattern string) []string {
	pat := strings.Split(pattern, "/")
	var out []string
	for _, rel := range all {
		if globMatch(pat, strings.Split(rel, "/")) {
			out = append(out, rel)
		}
	}
	return out
}

// listFiles lists every non-directory under dir, relative to it and sorted; a missing dir
// lists nothing.
func listFiles(fsys fs.FS, dir string) ([]string, error) {
	var out []string
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

func globMatch(pat, segs []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(segs); i++ {
				if globMatch(pat[1:], segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if ok, _ := path.Match(pat[0], segs[0]); !ok {
			return false
		}
		pat, segs = pat[1:], segs[1:]
	}
	return len(segs) == 0
}
