package source

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// FS returns the commit's tree as a read-only file system served straight from the object
// store: no checkout (a checkout of a 500-file tree costs ten times more). Modification
// times are the commit time. Symlinks read as their target path; submodules cannot be
// opened. It is safe for concurrent use.
func (r Revision) FS() fs.FS {
	return &treeFS{src: r.src, root: r.tree, when: r.Committer.When, trees: map[plumbing.Hash]*object.Tree{}}
}

type treeFS struct {
	src   *Source
	root  plumbing.Hash
	when  time.Time
	trees map[plumbing.Hash]*object.Tree // decoded trees; guarded by src.mu
}

var (
	_ fs.ReadFileFS = (*treeFS)(nil)
	_ fs.ReadDirFS  = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
)

// node is a resolved path: a tree entry, or the root.
type node struct {
	name string
	mode filemode.FileMode
	hash plumbing.Hash
	size int64
}

func (n node) isDir() bool { return n.mode == filemode.Dir }

// tree and the other helpers below expect src.mu to be held.
func (f *treeFS) tree(h plumbing.Hash) (*object.Tree, error) {
	if t, ok := f.trees[h]; ok {
		return t, nil
	}
	t, err := object.GetTree(f.src.repo.Storer, h)
	if err != nil {
		return nil, err
	}
	f.trees[h] = t
	return t, nil
}

func (f *treeFS) lookup(op, name string) (node, error) {
	if !fs.ValidPath(name) {
		return node{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	n := node{name: ".", mode: filemode.Dir, hash: f.root}
	if name == "." {
		return n, nil
	}
	for _, part := range strings.Split(name, "/") {
		if !n.isDir() {
			return node{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		t, err := f.tree(n.hash)
		if err != nil {
			return node{}, &fs.PathError{Op: op, Path: name, Err: err}
		}
		i, found := slices.BinarySearchFunc(t.Entries, part, compareEntry)
		if !found {
			// git sorts directories as if their name ended in "/", so a binary search by
			// plain name can miss; fall back to a scan.
			i = slices.IndexFunc(t.Entries, func(e object.TreeEntry) bool { return e.Name == part })
			if i < 0 {
				return node{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
			}
		}
		e := t.Entries[i]
		n = node{name: e.Name, mode: e.Mode, hash: e.Hash}
	}
	return n, nil
}

func compareEntry(e object.TreeEntry, name string) int { return strings.Compare(e.Name, name) }

func (f *treeFS) info(n node) (fileInfo, error) {
	fi := fileInfo{name: n.name, when: f.when}
	switch n.mode {
	case filemode.Dir:
		fi.mode = fs.ModeDir | 0o555
	case filemode.Executable:
		fi.mode = 0o555
	case filemode.Symlink:
		fi.mode = fs.ModeSymlink | 0o777
	case filemode.Submodule:
		fi.mode = fs.ModeIrregular
		return fi, nil
	default:
		fi.mode = 0o444
	}
	if n.mode != filemode.Dir {
		size, err := f.src.repo.Storer.EncodedObjectSize(n.hash)
		if err != nil {
			return fileInfo{}, err
		}
		fi.size = size
	}
	return fi, nil
}

func (f *treeFS) blob(n node) ([]byte, error) {
	if n.mode == filemode.Submodule {
		return nil, errors.New("is a submodule, which this tree does not contain")
	}
	o, err := f.src.repo.Storer.EncodedObject(plumbing.BlobObject, n.hash)
	if err != nil {
		return nil, err
	}
	rd, err := o.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

func (f *treeFS) entries(n node) ([]fs.DirEntry, error) {
	t, err := f.tree(n.hash)
	if err != nil {
		return nil, err
	}
	out := make([]fs.DirEntry, 0, len(t.Entries))
	for _, e := range t.Entries {
		out = append(out, dirEntry{fs: f, n: node{name: e.Name, mode: e.Mode, hash: e.Hash}})
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// dirEntry looks up its size only when asked: fs.WalkDir never asks, and a size costs an
// object lookup.
type dirEntry struct {
	fs *treeFS
	n  node
}

func (d dirEntry) Name() string { return d.n.name }
func (d dirEntry) IsDir() bool  { return d.n.isDir() }
func (d dirEntry) Type() fs.FileMode {
	switch d.n.mode {
	case filemode.Dir:
		return fs.ModeDir
	case filemode.Symlink:
		return fs.ModeSymlink
	case filemode.Submodule:
		return fs.ModeIrregular
	}
	return 0
}
func (d dirEntry) Info() (fs.FileInfo, error) {
	d.fs.src.mu.Lock()
	defer d.fs.src.mu.Unlock()
	return d.fs.info(d.n)
}
func (d dirEntry) String() string { return fs.FormatDirEntry(d) }

func (f *treeFS) Open(name string) (fs.File, error) {
	f.src.mu.Lock()
	defer f.src.mu.Unlock()
	n, err := f.lookup("open", name)
	if err != nil {
		return nil, err
	}
	fi, err := f.info(n)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	if n.isDir() {
		ents, err := f.entries(n)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &dir{info: fi, entries: ents, path: name}, nil
	}
	data, err := f.blob(n)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &file{info: fi, Reader: bytes.NewReader(data)}, nil
}

func (f *treeFS) ReadFile(name string) ([]byte, error) {
	f.src.mu.Lock()
	defer f.src.mu.Unlock()
	n, err := f.lookup("read", name)
	if err != nil {
		return nil, err
	}
	if n.isDir() {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	}
	data, err := f.blob(n)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return data, nil
}

func (f *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	f.src.mu.Lock()
	defer f.src.mu.Unlock()
	n, err := f.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	ents, err := f.entries(n)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return ents, nil
}

func (f *treeFS) Stat(name string) (fs.FileInfo, error) {
	f.src.mu.Lock()
	defer f.src.mu.Unlock()
	n, err := f.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	fi, err := f.info(n)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return fi, nil
}

type fileInfo struct {
	name string
	size int64
	mode fs.FileMode
	when time.Time
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() fs.FileMode  { return i.mode }
func (i fileInfo) ModTime() time.Time { return i.when }
func (i fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i fileInfo) Sys() any           { return nil }

type file struct {
	info fileInfo
	*bytes.Reader
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *file) Close() error               { return nil }

type dir struct {
	info    fileInfo
	path    string
	entries []fs.DirEntry
	off     int
}

func (d *dir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dir) Close() error               { return nil }
func (d *dir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: errors.New("is a directory")}
}

func (d *dir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return rest[:n], nil
}
