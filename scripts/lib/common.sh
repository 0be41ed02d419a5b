# shellcheck shell=bash
# Shared helpers for the set-up scripts: dry-run aware command runner and checks.
# Sourced, never executed. Every gcloud/kubectl call goes through `run` or `exists`, so
# `--dry-run` prints every command (copy-pasteable, shell-quoted) and runs none of them.

DRY_RUN="${DRY_RUN:-0}"

# Print a message on stderr.
log() {
  printf '==> %s\n' "$*" >&2
}

# Print an error and exit.
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Quote one word for a POSIX shell: as is when safe, else in single quotes.
shell_quote() {
  local word="$1"
  if [[ -n "$word" && "$word" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
    printf '%s' "$word"
  else
    printf "'%s'" "${word//\'/\'\\\'\'}"
  fi
}

# Print a command as it would be typed, shell-quoted, so that it can be copied and run.
print_cmd() {
  local prefix="$1" word
  shift
  printf '%s' "$prefix"
  for word in "$@"; do
    printf ' '
    shell_quote "$word"
  done
  printf '\n'
}

# Run a command (or, with --dry-run, only print it).
run() {
  print_cmd '+' "$@"
  if [[ "$DRY_RUN" == "1" ]]; then
    return 0
  fi
  "$@"
}

# True when a resource exists (the command succeeds). With --dry-run the check is printed
# and treated as "absent", so every create command that could run is printed as well.
exists() {
  print_cmd '?' "$@"
  if [[ "$DRY_RUN" == "1" ]]; then
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# Create a resource unless it exists: `ensure MESSAGE DESCRIBE_CMD... -- CREATE_CMD...` runs
# the describe command (through `exists`) and logs MESSAGE when it succeeds, else runs the
# create command (through `run`).
ensure() {
  local present="$1"
  local describe=()
  shift
  while (($# > 0)) && [[ "$1" != "--" ]]; do
    describe+=("$1")
    shift
  done
  (($# > 1)) || die "ensure: no create command after --"
  shift
  if exists "${describe[@]}"; then
    log "$present"
  else
    run "$@"
  fi
}

# Fail early when a tool is missing (skipped with --dry-run: nothing will run).
require_tools() {
  local tool
  [[ "$DRY_RUN" == "1" ]] && return 0
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed or not on PATH"
  done
}

# Parse the flags common to all scripts; sets DRY_RUN. Scripts that can set up HTTPS call
# `ACCEPTS_DOMAIN=1 parse_common_flags "$@"`: then DOMAIN comes from the environment or
# `--domain NAME` / `--domain=NAME` (the flag wins), checked by validate_domain. Unknown
# flags are an error.
parse_common_flags() {
  [[ "${ACCEPTS_DOMAIN:-0}" == "1" ]] && DOMAIN="${DOMAIN:-}"
  while (($# > 0)); do
    case "$1" in
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        usage
        exit 0
        ;;
      --domain | --domain=*)
        [[ "${ACCEPTS_DOMAIN:-0}" == "1" ]] || die "unknown argument: $1 (see --help)"
        if [[ "$1" == --domain=* ]]; then
          DOMAIN="${1#--domain=}"
        else
          (($# > 1)) || die "--domain needs a value, e.g. --domain chat.example.com"
          DOMAIN="$2"
          shift
        fi
        [[ -n "$DOMAIN" ]] || die "--domain needs a value, e.g. --domain chat.example.com"
        ;;
      *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
  done
  [[ "${ACCEPTS_DOMAIN:-0}" == "1" ]] && validate_domain
  return 0
}

# Check DOMAIN (when set) and normalise it to lower case: one DNS name that a Google-managed
# certificate can cover: labels of letters, digits and inner hyphens, a top-level label that
# starts with a letter (so no IP address), no wildcard, scheme, port, path or trailing dot,
# at most 63 characters (the ManagedCertificate limit).
validate_domain() {
  [[ -n "${DOMAIN:-}" ]] || return 0
  local label='[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?'
  local tld='[a-z]([-a-z0-9]{0,61}[a-z0-9])?'
  local pattern="^(${label}[.])+${tld}\$" lower
  lower="$(printf '%s' "$DOMAIN" | tr '[:upper:]' '[:lower:]')"
  if [[ ! "$lower" =~ $pattern || ${#lower} -gt 63 ]]; then
    die "DOMAIN is not a DNS name a managed certificate can cover: $(shell_quote "$DOMAIN")" \
      "(expected e.g. chat.example.com: letters, digits, hyphens and dots, at most 63" \
      "characters, no scheme, port, path or wildcard)"
  fi
  DOMAIN="$lower"
}

# The settings deploy.sh and setup_gke.sh share (they must agree on the names): PROJECT_ID
# (required) and the defaults of the GCP and Kubernetes names both scripts use (the Cloud
# Armor policy SECURITY_POLICY: setup_gke.sh creates it, the chat's BackendConfig names it).
gke_defaults() {
  PROJECT_ID="${PROJECT_ID:-}"
  [[ -n "$PROJECT_ID" ]] || die "PROJECT_ID is required (see --help)"
  REGION="${REGION:-us-central1}"
  CLUSTER_NAME="${CLUSTER_NAME:-vllm-cluster}"
  NAMESPACE="${NAMESPACE:-vllm}"
  GPU_POOL="${GPU_POOL:-gpu-pool}"
  STATIC_IP_NAME="${STATIC_IP_NAME:-llm-chat-ip}"
  AR_REPO="${AR_REPO:-llm-console}"
  ADMIN_GSA="${ADMIN_GSA:-llm-console-admin}"
  SECURITY_POLICY="${SECURITY_POLICY:-llm-chat-rate-limit}"
  # A Compute Engine resource name (RFC 1035 label): it also goes into the rendered YAML.
  [[ "$SECURITY_POLICY" =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] ||
    die "SECURITY_POLICY must be a Cloud Armor policy name (lower-case letters, digits and" \
      "inner hyphens, starting with a letter, at most 63 characters), not" \
      "$(shell_quote "$SECURITY_POLICY")"
}
