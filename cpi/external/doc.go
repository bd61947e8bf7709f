// Package external runs any executable that speaks BOSH's CPI JSON protocol.
package external
