// Package source owns watching a git repository: checking the remote ref, fetching
// only when it moved, reading revisions from the object store, fsnotify and webhooks.
package source
