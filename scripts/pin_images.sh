#!/usr/bin/env bash
# Pin every third-party container image to its digest: for each `image:tag` in images.lock,
# ask the registry for the digest the tag points at now, write it into images.lock and
# rewrite each reference in the repository's files to `image:tag@sha256:...` (the tag stays
# readable, the digest fixes the bytes). Run it on a machine that can reach the registries;
# `--check` only says whether something is still pending (exit 1).
#
#   scripts/pin_images.sh [--dry-run] [--check]
#
# The digest comes from `crane digest` (go-containerregistry) or, without crane, from
# `docker buildx imagetools inspect`: for a multi-platform image both give the index digest,
# which every platform's pull verifies. Idempotent: an already pinned reference is re-pinned
# to the tag's current digest.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

usage() {
  cat <<'USAGE'
Usage: scripts/pin_images.sh [--dry-run] [--check]

Environment:
  REPO_DIR   the repository to pin [the one holding this script]
USAGE
}

CHECK=0
args=()
for arg in "$@"; do
  if [[ "$arg" == "--check" ]]; then CHECK=1; else args+=("$arg"); fi
done
parse_common_flags "${args[@]}"
REPO_DIR="${REPO_DIR:-$(cd "$SCRIPT_DIR/.." && pwd)}"
LOCK="$REPO_DIR/images.lock"
# Where the images are named (README keeps tags only: it describes, it is not deployed).
FILES=(Dockerfile cloudbuild.yaml k8s/base/vllm/vllm-deployment.yaml webapp/cluster/manifests.py
  k8s/components/inference-gateway/pool-vllm.yaml k8s/components/inference-gateway/bbr.yaml
  k8s/overlays/pools/pool-mistral.yaml)
[[ -f "$LOCK" ]] || die "no $LOCK"

REF_PATTERN='^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?$'
DIGEST_PATTERN='^sha256:[0-9a-f]{64}$'

# The images of images.lock, one "image digest" line each.
lock_entries() {
  awk '!/^[[:space:]]*(#|$)/ {print $1, $2}' "$LOCK"
}

# The registry's digest for a tag (stdout), through crane or docker buildx. The command is
# printed first (on stderr: stdout is the digest); with --dry-run only printed, on stdout.
resolve_digest() {
  local ref="$1" cmd
  if command -v crane >/dev/null 2>&1 || [[ "$DRY_RUN" == "1" ]]; then
    cmd=(crane digest "$ref")
  elif command -v docker >/dev/null 2>&1; then
    cmd=(docker buildx imagetools inspect "$ref" --format '{{json .Manifest.Digest}}')
  else
    die "neither crane nor docker is installed: install one, or run this where they are"
  fi
  if [[ "$DRY_RUN" == "1" ]]; then
    print_cmd '+' "${cmd[@]}"
    return 0
  fi
  print_cmd '+' "${cmd[@]}" >&2
  "${cmd[@]}" | tr -d '"[:space:]'
}

# A string as a literal in a sed -E pattern / replacement (# is the delimiter).
sed_pattern() { printf '%s' "$1" | sed -E 's/[][\\.^$*+?(){}|#]/\\&/g'; }
sed_replacement() { printf '%s' "$1" | sed -E 's/[\\&#]/\\&/g'; }

# Rewrite every reference to $1 (bare or already pinned) in FILES as $1@$2.
rewrite_references() {
  local ref="$1" digest="$2" file pattern replacement
  pattern="$(sed_pattern "$ref")(@sha256:[0-9a-f]{64})?([^A-Za-z0-9._:@/-]|\$)"
  replacement="$(sed_replacement "$ref@$digest")\\2"
  for file in "${FILES[@]}"; do
    sed -E -i "s#${pattern}#${replacement}#g" "$REPO_DIR/$file"
  done
}

pending=()
while read -r ref digest; do
  [[ "$ref" =~ $REF_PATTERN ]] || die "images.lock: not an image reference: $(shell_quote "$ref")"
  [[ "$digest" == "pending" || "$digest" =~ $DIGEST_PATTERN ]] ||
    die "images.lock: $ref: digest must be sha256:<64 hex> or pending, not $(shell_quote "$digest")"
  [[ "$digest" == "pending" ]] && pending+=("$ref")
done < <(lock_entries)

if [[ "$CHECK" == "1" ]]; then
  if ((${#pending[@]})); then
    log "not pinned yet (run scripts/pin_images.sh where the registries can be reached):"
    printf '  %s\n' "${pending[@]}" >&2
    exit 1
  fi
  log "every image in images.lock is pinned to a digest"
  exit 0
fi

while read -r ref _; do
  log "$ref"
  if [[ "$DRY_RUN" == "1" ]]; then
    resolve_digest "$ref"
    continue
  fi
  digest="$(resolve_digest "$ref")"
  [[ "$digest" =~ $DIGEST_PATTERN ]] ||
    die "$ref: the registry answered $(shell_quote "$digest"), not a sha256 digest"
  rewrite_references "$ref" "$digest"
  awk -v ref="$ref" -v digest="$digest" \
    '$1 == ref {sub(/[^[:space:]]+$/, digest)} {print}' "$LOCK" >"$LOCK.tmp"
  mv "$LOCK.tmp" "$LOCK"
  log "  pinned to $digest"
done < <(lock_entries)
