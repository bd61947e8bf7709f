// Package release owns BOSH's release and stemcell formats: release.MF, job and package
// specs, fingerprints, tarballs, and rendering job templates.
package release
