// Package local stores blobs as files named by their sha256 digest.
package local
