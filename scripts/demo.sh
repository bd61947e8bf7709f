#!/usr/bin/env bash
# make demo: a director on the embedded default, with its data under $1.
set -euo pipefail
dir=${1:?usage: demo.sh DATA_DIR}
mkdir -p "$dir"
exec ./bin/bosun director --dev --data-dir "$dir/data"
