// Package reconciler owns the loop that turns a new commit of the manifest repository
// into a converged fleet: source, render, policy, plan, persist, converge, status.
// It reaches storage, CPIs and agents only through interfaces it declares itself.
package reconciler
