#!/usr/bin/env bash
# Deploy (or redeploy) everything in k8s/ to the cluster: writes a small kustomization on top
# of the chosen overlay with this project's values (web app image, namespace, GKE names,
# Workload Identity service account), applies it, waits for the web apps and prints the
# external IP. With DOMAIN (or --domain) it also adds the HTTPS component (k8s/components/https:
# managed certificate for DOMAIN, HTTP -> HTTPS redirect), which IAP on /admin needs.
# Idempotent (kubectl apply). `--dry-run` prints every command, runs none.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

usage() {
  cat <<'USAGE'
Usage: PROJECT_ID=my-project scripts/deploy.sh [--dry-run] [--domain NAME]

Environment (defaults in brackets):
  PROJECT_ID       GCP project (required)
  REGION           [us-central1]
  CLUSTER_NAME     [vllm-cluster]
  NAMESPACE        [vllm]
  OVERLAY          k8s/overlays/<OVERLAY>: l4 | t4 | a100 | h100 | pools (model pools behind
                   GKE Inference Gateway; scripts/setup_gke.sh --gateway first) [l4]
  IMAGE            web app image with tag or digest
                   [REGION-docker.pkg.dev/PROJECT_ID/AR_REPO/webapp:latest]
  AR_REPO          [llm-console]
  GPU_POOL         GPU node pool the admin page resizes [gpu-pool]
  ADMIN_GSA        Google service account of the admin page [llm-console-admin]
  STATIC_IP_NAME   global address of the Ingress [llm-chat-ip]
  SECURITY_POLICY  Cloud Armor policy of the chat backend, made by setup_gke.sh
                   [llm-chat-rate-limit]
  ADMIN_EMAILS     comma-separated admin allowlist (optional)
  IAP_AUDIENCE     IAP JWT audience of the admin backend (optional)
  DOMAIN           serve HTTPS for this DNS name (or --domain NAME; optional): adds
                   k8s/components/https with a Google-managed certificate for it. Its DNS
                   A record must point at STATIC_IP_NAME's address.
  DATABASE_CIDR    the PostgreSQL server's address range, e.g. Cloud SQL's private IP
                   10.20.0.3/32 (optional): both web apps may connect to it (egress
                   NetworkPolicy). Not needed for SQLite, an in-cluster server or a proxy
                   sidecar
  DATABASE_PORT    its port [5432]
  KUBE_API_CIDR    the Kubernetes API server when it has a private address, e.g.
                   172.16.0.2/32 from `kubectl get endpoints kubernetes -n default`
                   (optional): the admin console may connect to it on 443
  WAIT_FOR_VLLM    1: also wait for the model server (can take 30+ min) [0]
  SKIP_CREDENTIALS 1: use the current kubectl context [0]
  OVERLAY_DIR      where to write the generated kustomization [a temporary directory]
USAGE
}

ACCEPTS_DOMAIN=1 parse_common_flags "$@"
# PROJECT_ID, REGION, CLUSTER_NAME, NAMESPACE, GPU_POOL, STATIC_IP_NAME, AR_REPO, ADMIN_GSA,
# SECURITY_POLICY
gke_defaults
OVERLAY="${OVERLAY:-l4}"
IMAGE="${IMAGE:-${REGION}-docker.pkg.dev/${PROJECT_ID}/${AR_REPO}/webapp:latest}"
ADMIN_EMAILS="${ADMIN_EMAILS:-}"
IAP_AUDIENCE="${IAP_AUDIENCE:-}"
WAIT_FOR_VLLM="${WAIT_FOR_VLLM:-0}"
DATABASE_CIDR="${DATABASE_CIDR:-}"
DATABASE_PORT="${DATABASE_PORT:-5432}"
KUBE_API_CIDR="${KUBE_API_CIDR:-}"

# One IPv4 range (a.b.c.d/n), as a NetworkPolicy ipBlock takes it.
valid_cidr() {
  local ip="${1%/*}" bits="${1##*/}" octet
  [[ "$1" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ ]] || return 1
  ((10#$bits <= 32)) || return 1
  for octet in ${ip//./ }; do
    ((10#$octet <= 255)) || return 1
  done
}
for name in DATABASE_CIDR KUBE_API_CIDR; do
  value="${!name}"
  [[ -z "$value" ]] || valid_cidr "$value" ||
    die "$name is not an IPv4 range like 10.20.0.3/32: $(shell_quote "$value")"
done
if [[ ! "$DATABASE_PORT" =~ ^[1-9][0-9]{0,4}$ ]] || ((DATABASE_PORT > 65535)); then
  die "DATABASE_PORT is not a port number: $(shell_quote "$DATABASE_PORT")"
fi
SKIP_CREDENTIALS="${SKIP_CREDENTIALS:-0}"

OVERLAY_PATH="$REPO_DIR/k8s/overlays/$OVERLAY"
[[ -f "$OVERLAY_PATH/kustomization.yaml" ]] || die "no overlay $OVERLAY_PATH"

# Image reference -> kustomize images entry (name + tag, or name + digest).
if [[ "$IMAGE" == *@* ]]; then
  IMAGE_NAME="${IMAGE%@*}"
  IMAGE_FIELD="digest: \"${IMAGE#*@}\""
elif [[ "${IMAGE##*/}" == *:* ]]; then
  IMAGE_NAME="${IMAGE%:*}"
  IMAGE_FIELD="newTag: \"${IMAGE##*:}\""
else
  die "IMAGE needs a tag or digest: $IMAGE"
fi

# A YAML double-quoted scalar.
yaml_str() {
  local s="${1//\\/\\\\}"
  printf '"%s"' "${s//\"/\\\"}"
}

# A patch letting the egress NetworkPolicy $1 reach range $2 on TCP port $3.
egress_patch() {
  cat <<YAML
  - target:
      kind: NetworkPolicy
      name: $1
    patch: |-
      - op: add
        path: /spec/egress/-
        value:
          to: [{ipBlock: {cidr: $(yaml_str "$2")}}]
          ports: [{port: $3, protocol: TCP}]
YAML
}

if [[ -z "${OVERLAY_DIR:-}" ]]; then
  OVERLAY_DIR="$(mktemp -d "${TMPDIR:-/tmp}/llm-console-deploy.XXXXXX")"
  trap 'rm -rf "$OVERLAY_DIR"' EXIT
fi
mkdir -p "$OVERLAY_DIR"

# kustomize accepts only relative paths to other kustomizations.
relative_path() {
  realpath -m --relative-to="$2" "$1" 2>/dev/null ||
    python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$2"
}
OVERLAY_DIR_REAL="$(cd "$OVERLAY_DIR" && pwd -P)"
OVERLAY_REL="$(relative_path "$OVERLAY_PATH" "$OVERLAY_DIR_REAL")"
HTTPS_COMPONENT_REL="$(relative_path "$REPO_DIR/k8s/components/https" "$OVERLAY_DIR_REAL")"

{
  cat <<YAML
# Generated by scripts/deploy.sh: $OVERLAY with this project's values.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: $(yaml_str "$NAMESPACE")
resources:
  - $(yaml_str "$OVERLAY_REL")
YAML
  if [[ -n "$DOMAIN" ]]; then
    # Components run before this file's patches: the domain patch below finds the certificate.
    printf 'components:\n  - %s\n' "$(yaml_str "$HTTPS_COMPONENT_REL")"
  fi
  cat <<YAML
images:
  - name: llm-console-webapp
    newName: $(yaml_str "$IMAGE_NAME")
    $IMAGE_FIELD
configMapGenerator:
  - name: webapp-config
    behavior: merge
    literals:
      - $(yaml_str "K8S_NAMESPACE=$NAMESPACE")
      - $(yaml_str "GKE_PROJECT=$PROJECT_ID")
      - $(yaml_str "GKE_LOCATION=$REGION")
      - $(yaml_str "GKE_CLUSTER=$CLUSTER_NAME")
      - $(yaml_str "GKE_NODE_POOL=$GPU_POOL")
YAML
  if [[ -n "$ADMIN_EMAILS" ]]; then
    printf '      - %s\n' "$(yaml_str "ADMIN_EMAILS=$ADMIN_EMAILS")"
  fi
  if [[ -n "$IAP_AUDIENCE" ]]; then
    printf '      - %s\n' "$(yaml_str "IAP_AUDIENCE=$IAP_AUDIENCE")"
  fi
  cat <<YAML
patches:
  - target:
      kind: ServiceAccount
      name: webapp-admin
    patch: |-
      - op: replace
        path: /metadata/annotations/iam.gke.io~1gcp-service-account
        value: $(yaml_str "${ADMIN_GSA}@${PROJECT_ID}.iam.gserviceaccount.com")
  # kustomize's namespace does not reach ServiceAccount subjects of the bindings.
  - target:
      kind: RoleBinding
      name: llm-console-admin
    patch: |-
      - op: replace
        path: /subjects/0/namespace
        value: $(yaml_str "$NAMESPACE")
  - target:
      kind: ClusterRoleBinding
      name: llm-console-node-reader
    patch: |-
      - op: replace
        path: /subjects/0/namespace
        value: $(yaml_str "$NAMESPACE")
  - target:
      kind: Ingress
      name: webapp
    patch: |-
      - op: replace
        path: /metadata/annotations/kubernetes.io~1ingress.global-static-ip-name
        value: $(yaml_str "$STATIC_IP_NAME")
  - target:
      kind: BackendConfig
      name: webapp-chat
    patch: |-
      - op: replace
        path: /spec/securityPolicy/name
        value: $(yaml_str "$SECURITY_POLICY")
YAML
  if [[ -n "$DATABASE_CIDR" ]]; then
    for policy in webapp-chat-egress webapp-admin-egress; do
      egress_patch "$policy" "$DATABASE_CIDR" "$DATABASE_PORT"
    done
  fi
  if [[ -n "$KUBE_API_CIDR" ]]; then
    egress_patch webapp-admin-egress "$KUBE_API_CIDR" 443
  fi
  if [[ -n "$DOMAIN" ]]; then
    cat <<YAML
  - target:
      kind: ManagedCertificate
      name: webapp-cert
    patch: |-
      - op: replace
        path: /spec/domains
        value: [$(yaml_str "$DOMAIN")]
YAML
  fi
} >"$OVERLAY_DIR/kustomization.yaml"
log "kustomization written to $OVERLAY_DIR/kustomization.yaml"
if [[ "$DRY_RUN" == "1" ]]; then
  # The temporary directory is gone when the script ends: show what would be applied.
  sed 's/^/    /' "$OVERLAY_DIR/kustomization.yaml" >&2
fi

require_tools gcloud kubectl

if [[ "$SKIP_CREDENTIALS" != "1" ]]; then
  log "kubectl credentials for $CLUSTER_NAME"
  run gcloud container clusters get-credentials "$CLUSTER_NAME" \
    --location="$REGION" --project="$PROJECT_ID"
fi

if [[ -n "$DOMAIN" ]]; then
  log "apply $OVERLAY with HTTPS for $DOMAIN (image $IMAGE)"
else
  log "apply $OVERLAY (image $IMAGE)"
fi
run kubectl apply -k "$OVERLAY_DIR"

log "wait for the web apps"
run kubectl rollout status deployment/webapp-chat --namespace="$NAMESPACE" --timeout=10m
run kubectl rollout status deployment/webapp-admin --namespace="$NAMESPACE" --timeout=10m
if [[ "$WAIT_FOR_VLLM" == "1" ]]; then
  # GPU node scale-up + image pull + model download and load: up to the Deployment's
  # progressDeadlineSeconds (45 min).
  log "wait for the model server"
  run kubectl rollout status deployment/vllm --namespace="$NAMESPACE" --timeout=45m
else
  log "the model server starts in the background: kubectl -n $NAMESPACE rollout status deployment/vllm"
fi

log "external IP"
run gcloud compute addresses describe "$STATIC_IP_NAME" --global --project="$PROJECT_ID" \
  --format='value(address)'
if [[ -n "$DOMAIN" ]]; then
  log "chat: https://$DOMAIN/   admin: https://$DOMAIN/admin (behind IAP)"
  log "DNS: an A record $DOMAIN -> that IP must exist; the certificate becomes Active up to"
  log "     ~60 min after it resolves (until then https:// fails and http:// redirects to it):"
  log "     kubectl -n $NAMESPACE describe managedcertificate webapp-cert"
else
  log "chat: http://<that IP>/ (the load balancer needs a few minutes the first time)"
  log "admin: /admin behind IAP (needs HTTPS: DOMAIN=... or --domain, see README), or"
  log "       kubectl -n $NAMESPACE port-forward svc/webapp-admin 8501:80" \
    "-> http://localhost:8501/admin"
fi
