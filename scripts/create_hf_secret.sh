#!/usr/bin/env bash
# Store the Hugging Face token in Secret "huggingface" (key HF_TOKEN), which the vLLM
# Deployment reads. The token comes from $HF_TOKEN or standard input (typed without echo on a
# terminal); it is never printed, never put on a command line (where `ps` would show it) and
# never written to a file: it goes through a pipe into `kubectl create --dry-run=client`,
# whose output is piped into `kubectl apply` (create or update: idempotent).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

usage() {
  cat <<'USAGE'
Usage: HF_TOKEN=hf_... scripts/create_hf_secret.sh [--dry-run]
       scripts/create_hf_secret.sh < token-file
       scripts/create_hf_secret.sh            (asks for it, without echo)

Environment (defaults in brackets):
  HF_TOKEN     the token (else read from standard input)
  NAMESPACE    Kubernetes namespace of vLLM [vllm]
  SECRET_NAME  [huggingface]  (the Deployment reads key HF_TOKEN of this Secret)
USAGE
}

parse_common_flags "$@"

NAMESPACE="${NAMESPACE:-vllm}"
SECRET_NAME="${SECRET_NAME:-huggingface}"

token="${HF_TOKEN:-}"
unset HF_TOKEN
if [[ -z "$token" ]]; then
  if [[ -t 0 ]]; then
    read -r -s -p "Hugging Face token (input hidden): " token
    printf '\n' >&2
  else
    IFS= read -r token || true
  fi
fi
token="${token//[$'\t\r\n ']/}"
[[ -n "$token" ]] || die "no token: set HF_TOKEN or pipe it on standard input"
[[ "$token" == hf_* ]] || log "warning: the token does not start with hf_; storing it anyway"

require_tools kubectl

log "namespace $NAMESPACE"
print_cmd '+' kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml
print_cmd '  |' kubectl apply -f -
if [[ "$DRY_RUN" != "1" ]]; then
  kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
fi

log "secret $SECRET_NAME (key HF_TOKEN) in $NAMESPACE"
print_cmd '+' printf %s '<HF_TOKEN hidden>'
print_cmd '  |' kubectl create secret generic "$SECRET_NAME" --namespace="$NAMESPACE" \
  --from-file=HF_TOKEN=/dev/stdin --dry-run=client -o yaml
print_cmd '  |' kubectl apply -f -
if [[ "$DRY_RUN" != "1" ]]; then
  # printf is a shell builtin: the token never appears in any process's arguments.
  printf '%s' "$token" |
    kubectl create secret generic "$SECRET_NAME" --namespace="$NAMESPACE" \
      --from-file=HF_TOKEN=/dev/stdin --dry-run=client -o yaml |
    kubectl apply -f -
fi
token=""
log "done"
