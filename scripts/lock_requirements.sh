#!/usr/bin/env bash
# Compile the requirements*.in files into the hashed lock files requirements*.txt: every
# package pinned with == and the sha256 hash of each of its files on the package index, so
# that `pip install --require-hashes` installs exactly those bytes or nothing.
#
#   scripts/lock_requirements.sh [--dry-run]      (make lock)
#
# Needs uv (pinned in requirements-tools.in: `make tools-venv`; UV=... to use another) and
# the package index. Versions already in a lock are kept unless the .in file changes them.
# requirements-dev.txt is compiled against requirements.txt (-c), so the app's packages have
# the same versions in both. requirements-vllm.in is a complete freeze: it gets its hashes
# without a new resolution (--no-deps), and torch stays out of it (see that file).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$repo_root/scripts/lib/common.sh"

usage() {
  cat <<'USAGE'
Usage: scripts/lock_requirements.sh [--dry-run]

Environment:
  UV   the uv binary [.venv-tools/bin/uv]
USAGE
}

parse_common_flags "$@"
UV="${UV:-$repo_root/.venv-tools/bin/uv}"
[[ "$DRY_RUN" == "1" || -x "$UV" ]] || die "$UV not found: run \`make tools-venv\` or set UV"
cd "$repo_root"

# The Python of the image and the venvs (python:3.11 / python3.11).
compile_lock() {
  run "$UV" pip compile --quiet --python-version=3.11 --generate-hashes \
    --custom-compile-command="make lock" "$@"
}

compile_lock requirements.in --output-file=requirements.txt
compile_lock requirements-dev.in --output-file=requirements-dev.txt
compile_lock requirements-tools.in --output-file=requirements-tools.txt
compile_lock --no-deps requirements-vllm.in --output-file=requirements-vllm.txt
log "locks written; install with: pip install --require-hashes -r requirements*.txt"
