// Package manifest owns BOSH's desired-state vocabulary: deployment manifests v2,
// cloud-configs, runtime-configs and cpi-configs, go-patch ops files and ((variable))
// interpolation. It parses, interpolates and validates, reporting every error with its
// file, line, column and key path.
package manifest
