#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, postgres) are on this machine, installing
# Debian's postgresql package when they are not. Tests and `bosun director --dev` start
# their own throwaway clusters from these binaries; nothing here starts a server.
set -euo pipefail
have() {
  local d
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && return 0
  fi
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && return 0
  done
  return 1
}
if have; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "PostgreSQL server binaries not found; install Debian's 'postgresql' package (as root: apt-get install postgresql)" >&2
  exit 1
fi
echo "installing PostgreSQL server binaries (Debian package postgresql)…" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# Debian's package starts a system cluster of its own; Bosun never uses it.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true; done
fi
have || { echo "PostgreSQL installed but initdb/postgres still not found" >&2; exit 1; }
