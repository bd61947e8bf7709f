// Package cpitest holds a fake CPI with fault injection and the conformance suite
// every CPI passes.
package cpitest
