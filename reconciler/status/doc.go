// Package status owns the status branch: it renders outcomes and commits them to git.
//
// Each outcome becomes one commit on an orphan branch (default bosun/status) of the
// manifest repository, touching only deployments/<name>.yml, with trailers linking the
// source commit. Callers must never pass secrets in an Outcome: the branch is readable by
// everyone who can read the repository. Config.Redact is a last line of defence applied to
// free text (errors, log tails, policy messages), not a licence to pass secrets.
package status
