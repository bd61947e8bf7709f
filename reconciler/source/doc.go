// Package source owns watching a git repository: checking the remote ref, fetching
// only when it moved, reading revisions from the object store, fsnotify and webhooks.
//
// Credentials live only in Remote; errors and logs carry Remote.String and Remote.Redact
// output, never a token, password or key.
package source
