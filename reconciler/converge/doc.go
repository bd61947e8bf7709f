// Package converge owns executing a plan: CPI and agent calls in BOSH's update order,
// with write-ahead intents around every side effect.
package converge
