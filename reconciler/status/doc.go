// Package status owns the status branch: it renders outcomes and commits them to git.
package status
