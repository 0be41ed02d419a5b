#!/usr/bin/env bash
# From an empty GCP project to a GKE cluster ready for `scripts/deploy.sh`:
# APIs, the cluster (Workload Identity, Dataplane V2 for NetworkPolicy), a spot GPU node pool
# autoscaling from 0, the static IP of the Ingress, the Cloud Armor policy that rate-limits
# each client IP on the chat backend (the Ingress names it: it must exist first), an Artifact
# Registry repository, and the least-privilege Google service account the admin page uses
# to resize the GPU pool and to read GPU telemetry (GKE's managed DCGM metrics in Managed
# Service for Prometheus: README "GPU telemetry").
# With DOMAIN (or --domain) it also prints the address the domain's DNS A record must point at
# (HTTPS itself is added by `scripts/deploy.sh --domain`).
# With --gateway it also prepares GKE Inference Gateway for model pools (k8s/overlays/pools):
# Gateway API on the cluster, the region's proxy-only subnet, the gateway's internal static IP,
# and the Inference Extension's CRDs (InferencePool, InferenceObjective); and what pool
# autoscaling needs: the Custom Metrics Stackdriver Adapter (a pool's HPA on vLLM's queue depth)
# and KEDA (a pool with min 0 replicas), each allowed to read Cloud Monitoring.
# Idempotent: what exists is left as it is. `--dry-run` prints every command, runs none.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

usage() {
  cat <<'USAGE'
Usage: PROJECT_ID=my-project scripts/setup_gke.sh [--dry-run] [--domain NAME] [--gateway]

Environment (defaults in brackets):
  PROJECT_ID          GCP project (required)
  REGION              region of the cluster, registry and IP [us-central1]
  ZONES               comma-separated zones for the nodes; the GPU type must exist there
                      [REGION-a]
  CLUSTER_NAME        [vllm-cluster]
  NAMESPACE           Kubernetes namespace of the app [vllm]
  GPU_TYPE            nvidia-l4 | nvidia-tesla-t4 | nvidia-tesla-a100 | nvidia-a100-80gb |
                      nvidia-h100-80gb [nvidia-l4]
  GPU_COUNT           GPUs per node [1]
  MACHINE_TYPE        [chosen from GPU_TYPE and GPU_COUNT]
  GPU_POOL            GPU node pool name [gpu-pool]
  GPU_POOL_MAX_NODES  autoscaling maximum (minimum is 0) [2]
  STATIC_IP_NAME      global address for the Ingress [llm-chat-ip]
  SECURITY_POLICY     Cloud Armor policy of the chat backend [llm-chat-rate-limit]
  ARMOR_RATE_LIMIT    HTTP requests one client IP may send to the chat per
                      ARMOR_RATE_INTERVAL_S; more are answered 429 [600]
  ARMOR_RATE_INTERVAL_S  10 | 30 | 60 | 120 | 180 | 240 | 300 | 600 | 900 | 1200 | 1800 |
                      2700 | 3600 [60]
  AR_REPO             Artifact Registry repository [llm-console]
  ADMIN_GSA           Google service account of the admin page [llm-console-admin]
  ADMIN_ROLE_ID       custom IAM role id [llmConsoleGpuPoolOperator]
  QUOTA_ROLE_ID       custom IAM role id that reads the region's GPU quota
                      (compute.regions.get) [llmConsoleQuotaReader]
  ADMIN_IAM_SCOPE     cluster: the role is bound with an IAM condition on this cluster (its
                      node pools and GKE operations in REGION) | project: unconditional, on
                      every cluster of the project (only if the condition refuses a call)
                      [cluster]
  DOMAIN              DNS name for HTTPS (or --domain NAME; optional): checked, and the
                      static IP its A record must point at is printed

With --gateway (GKE Inference Gateway, for k8s/overlays/pools):
  NETWORK             VPC network of the cluster [default]
  PROXY_SUBNET        proxy-only subnet of the region's internal load balancers
                      [proxy-only-subnet]; one per region and network: an existing
                      one (any name) is used as it is
  PROXY_SUBNET_RANGE  its range, unused in the VPC [10.129.0.0/23]; the same
                      range is in k8s/components/inference-gateway (network policies)
  GATEWAY_SUBNET      subnet of the gateway's internal address [default]
  GATEWAY_IP          the gateway's internal address, in GATEWAY_SUBNET [10.128.0.250];
                      the same address is LLM_URL in k8s/components/inference-gateway
  PROJECT_NUMBER      number of PROJECT_ID, for the Workload Identity principals of the
                      metrics adapter and KEDA [read with gcloud projects describe]
USAGE
}

GATEWAY=0
args=()
for arg in "$@"; do
  if [[ "$arg" == "--gateway" ]]; then GATEWAY=1; else args+=("$arg"); fi
done
ACCEPTS_DOMAIN=1 parse_common_flags "${args[@]}"
# PROJECT_ID, REGION, CLUSTER_NAME, NAMESPACE, GPU_POOL, STATIC_IP_NAME, AR_REPO, ADMIN_GSA,
# SECURITY_POLICY
gke_defaults
ZONES="${ZONES:-${REGION}-a}"
GPU_TYPE="${GPU_TYPE:-nvidia-l4}"
GPU_COUNT="${GPU_COUNT:-1}"
GPU_POOL_MAX_NODES="${GPU_POOL_MAX_NODES:-2}"
ADMIN_ROLE_ID="${ADMIN_ROLE_ID:-llmConsoleGpuPoolOperator}"
QUOTA_ROLE_ID="${QUOTA_ROLE_ID:-llmConsoleQuotaReader}"
ADMIN_KSA="webapp-admin"
ADMIN_IAM_SCOPE="${ADMIN_IAM_SCOPE:-cluster}"
# The names go into an IAM condition (CEL) below: GCP's own rules, so no quote gets in.
[[ "$PROJECT_ID" =~ ^[a-z]([-a-z0-9]{0,28}[a-z0-9])?$ ]] ||
  die "PROJECT_ID is not a GCP project id (lowercase letters, digits, hyphens):" \
    "$(shell_quote "$PROJECT_ID")"
[[ "$REGION" =~ ^[a-z]+-[a-z]+[0-9]+$ ]] ||
  die "REGION is not a GCP region (e.g. us-central1): $(shell_quote "$REGION")"
[[ "$CLUSTER_NAME" =~ ^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$ ]] ||
  die "CLUSTER_NAME is not a GKE cluster name: $(shell_quote "$CLUSTER_NAME")"
case "$ADMIN_IAM_SCOPE" in
  cluster | project) ;;
  *) die "ADMIN_IAM_SCOPE must be cluster or project, not $(shell_quote "$ADMIN_IAM_SCOPE")" ;;
esac
# GKE Inference Gateway (--gateway). The extension's release whose endpoint picker and
# body-based router images k8s/components/inference-gateway runs (its CRDs: InferencePool v1
# and the InferenceObjective / InferenceModelRewrite kinds that picker watches).
INFERENCE_EXTENSION_VERSION=v1.5.0
INFERENCE_EXTENSION_CRDS="https://github.com/kubernetes-sigs/gateway-api-inference-extension/releases/download/${INFERENCE_EXTENSION_VERSION}/manifests.yaml"
GATEWAY_IP_NAME=llm-gateway-ip
NETWORK="${NETWORK:-default}"
PROXY_SUBNET="${PROXY_SUBNET:-proxy-only-subnet}"
PROXY_SUBNET_RANGE="${PROXY_SUBNET_RANGE:-10.129.0.0/23}"
GATEWAY_SUBNET="${GATEWAY_SUBNET:-default}"
GATEWAY_IP="${GATEWAY_IP:-10.128.0.250}"
# Pool autoscaling (--gateway): the custom metrics adapter (k8s/addons: the upstream manifest
# at a release tag, minus the external metrics API) and KEDA's release manifest.
ADAPTER_ADDON="$(cd "$SCRIPT_DIR/.." && pwd)/k8s/addons/custom-metrics-stackdriver-adapter"
ADAPTER_KSA=custom-metrics/custom-metrics-stackdriver-adapter
KEDA_VERSION=v2.20.2
KEDA_MANIFEST="https://github.com/kedacore/keda/releases/download/${KEDA_VERSION}/keda-${KEDA_VERSION#v}.yaml"
KEDA_KSA=keda/keda-operator
PROJECT_NUMBER="${PROJECT_NUMBER:-}"
if [[ "$GATEWAY" == "1" ]]; then
  [[ -z "$PROJECT_NUMBER" || "$PROJECT_NUMBER" =~ ^[1-9][0-9]{0,18}$ ]] ||
    die "PROJECT_NUMBER is not a GCP project number (digits only):" \
      "$(shell_quote "$PROJECT_NUMBER")"
  octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
  [[ "$GATEWAY_IP" =~ ^($octet\.){3}$octet$ ]] ||
    die "GATEWAY_IP is not an IPv4 address: $(shell_quote "$GATEWAY_IP")"
  [[ "$PROXY_SUBNET_RANGE" =~ ^($octet\.){3}$octet/(2[0-6]|1[0-9])$ ]] ||
    die "PROXY_SUBNET_RANGE is not an IPv4 range from /10 to /26 (e.g. 10.129.0.0/23):" \
      "$(shell_quote "$PROXY_SUBNET_RANGE")"
  for name in NETWORK PROXY_SUBNET GATEWAY_SUBNET; do
    [[ "${!name}" =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] ||
      die "$name is not a GCP resource name: $(shell_quote "${!name}")"
  done
fi
ARMOR_RATE_LIMIT="${ARMOR_RATE_LIMIT:-600}"
ARMOR_RATE_INTERVAL_S="${ARMOR_RATE_INTERVAL_S:-60}"
# The rule's priority in the policy (lower runs first); the default rule (allow) stays last.
ARMOR_RULE_PRIORITY=1000

# Cloud Armor throttle thresholds: 1..1,000,000 requests over one of the intervals it offers.
validate_armor_rate() {
  [[ "$ARMOR_RATE_LIMIT" =~ ^[1-9][0-9]{0,6}$ && "$ARMOR_RATE_LIMIT" -le 1000000 ]] ||
    die "ARMOR_RATE_LIMIT must be a whole number of requests from 1 to 1000000, not" \
      "$(shell_quote "$ARMOR_RATE_LIMIT")"
  case "$ARMOR_RATE_INTERVAL_S" in
    10 | 30 | 60 | 120 | 180 | 240 | 300 | 600 | 900 | 1200 | 1800 | 2700 | 3600) ;;
    *)
      die "ARMOR_RATE_INTERVAL_S must be one of 10 30 60 120 180 240 300 600 900 1200" \
        "1800 2700 3600 (seconds), not $(shell_quote "$ARMOR_RATE_INTERVAL_S")"
      ;;
  esac
}
validate_armor_rate

# The machine family that carries GPU_COUNT GPUs of GPU_TYPE.
default_machine_type() {
  case "$GPU_TYPE:$GPU_COUNT" in
    nvidia-l4:1) echo g2-standard-8 ;;
    nvidia-l4:2) echo g2-standard-24 ;;
    nvidia-l4:4) echo g2-standard-48 ;;
    nvidia-l4:8) echo g2-standard-96 ;;
    nvidia-tesla-t4:1) echo n1-standard-8 ;;
    nvidia-tesla-t4:2) echo n1-standard-16 ;;
    nvidia-tesla-t4:4) echo n1-standard-32 ;;
    nvidia-tesla-a100:1 | nvidia-tesla-a100:2 | nvidia-tesla-a100:4 | nvidia-tesla-a100:8)
      echo "a2-highgpu-${GPU_COUNT}g"
      ;;
    nvidia-a100-80gb:1 | nvidia-a100-80gb:2 | nvidia-a100-80gb:4 | nvidia-a100-80gb:8)
      echo "a2-ultragpu-${GPU_COUNT}g"
      ;;
    nvidia-h100-80gb:1 | nvidia-h100-80gb:2 | nvidia-h100-80gb:4 | nvidia-h100-80gb:8)
      echo "a3-highgpu-${GPU_COUNT}g"
      ;;
    *) die "no default machine type for $GPU_COUNT x $GPU_TYPE; set MACHINE_TYPE" ;;
  esac
}
MACHINE_TYPE="${MACHINE_TYPE:-$(default_machine_type)}"

ADMIN_GSA_EMAIL="${ADMIN_GSA}@${PROJECT_ID}.iam.gserviceaccount.com"
# What the admin page does through the GKE API: read the cluster and its node pools,
# resize / set autoscaling of the GPU pool (nodePools.setSize and setAutoscaling require
# container.clusters.update) and follow the resulting operations. roles/container.clusterViewer
# cannot resize; roles/container.clusterAdmin can do far more (delete clusters, ...):
# a custom role holds exactly these four permissions.
ADMIN_PERMISSIONS="container.clusters.get,container.clusters.update,container.operations.get,container.operations.list"
# The capacity guard (before a deploy, scale or canary) reads the region's GPU quota: Compute
# Engine regions.get (limit and usage per metric, e.g. NVIDIA_L4_GPUS). An IAM condition on
# the cluster cannot name a region, so this one read-only permission is a role of its own,
# bound on the project (roles/compute.viewer would do too, with far more).
QUOTA_PERMISSIONS="compute.regions.get"
# Least privilege in space too: IAM grants on projects, not on single clusters, so the role is
# bound on the project with an IAM condition (CEL on the request's resource name) that holds
# only for this cluster, its node pools and the GKE operations of its location. Without it,
# the admin page's Google identity could resize or reconfigure every cluster of the project.
# No commas in it: gcloud's --condition splits on them.
CLUSTER_RESOURCE="projects/${PROJECT_ID}/locations/${REGION}/clusters/${CLUSTER_NAME}"
ADMIN_CONDITION="expression=resource.name == \"${CLUSTER_RESOURCE}\""
ADMIN_CONDITION+=" || resource.name.startsWith(\"${CLUSTER_RESOURCE}/\")"
ADMIN_CONDITION+=" || resource.name.startsWith(\"projects/${PROJECT_ID}/locations/${REGION}/operations/\")"
ADMIN_CONDITION+=" || resource.name == \"projects/${PROJECT_ID}/locations/${REGION}\""
ADMIN_CONDITION+=",title=llm-console-${CLUSTER_NAME}"
ADMIN_CONDITION+=",description=Only GKE cluster ${CLUSTER_NAME} in ${REGION} and its operations"

require_tools gcloud kubectl

# PROJECT_NUMBER (set, or read from gcloud): IAM principals of Kubernetes service accounts
# name the project by number. With --dry-run the lookup is printed and the principals show the
# placeholder PROJECT_NUMBER.
resolve_project_number() {
  [[ -n "$PROJECT_NUMBER" ]] && return 0
  print_cmd '+' gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)'
  if [[ "$DRY_RUN" == "1" ]]; then
    PROJECT_NUMBER=PROJECT_NUMBER
    log "dry run: PROJECT_NUMBER below stands for the number printed by that command"
    return 0
  fi
  PROJECT_NUMBER="$(gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)')"
  [[ "$PROJECT_NUMBER" =~ ^[1-9][0-9]{0,18}$ ]] ||
    die "could not read the number of project $PROJECT_ID; set PROJECT_NUMBER"
}

# roles/monitoring.viewer for a Kubernetes service account (NAMESPACE/NAME) through Workload
# Identity Federation for GKE: the principal is the KSA itself, no Google service account.
# Read-only; monitoring data has no per-cluster IAM resource, so it is granted on the project.
grant_monitoring_viewer() {
  local ksa="$1"
  run gcloud projects add-iam-policy-binding "$PROJECT_ID" --role=roles/monitoring.viewer \
    --member="principal://iam.googleapis.com/projects/${PROJECT_NUMBER}/locations/global/workloadIdentityPools/${PROJECT_ID}.svc.id.goog/subject/ns/${ksa%%/*}/sa/${ksa#*/}" \
    --condition=None --quiet
}

# Pool autoscaling on vLLM's queue depth (vllm:num_requests_waiting, scraped by Managed Service
# for Prometheus through k8s/components/inference-gateway/pod-monitoring.yaml). Re-running it
# re-applies the same manifests and bindings (both idempotent).
setup_pool_autoscaling() {
  log "pool autoscaling: Custom Metrics Stackdriver Adapter (HPA), KEDA (scale to zero)"
  resolve_project_number
  # The HPA's Pods metric prometheus.googleapis.com|vllm:num_requests_waiting|gauge comes
  # from Cloud Monitoring through the adapter (custom.metrics.k8s.io).
  run kubectl apply -k "$ADAPTER_ADDON"
  grant_monitoring_viewer "$ADAPTER_KSA"
  # GKE's HPA cannot go below 1 replica: KEDA scales a pool with min 0 (a ScaledObject whose
  # Prometheus trigger queries Managed Service for Prometheus) and owns the external metrics
  # API (external.metrics.k8s.io). Server-side, as KEDA documents (large CRDs);
  # --force-conflicts takes that API over from an adapter installed earlier from upstream's
  # full manifest.
  run kubectl apply --server-side --force-conflicts -f "$KEDA_MANIFEST"
  grant_monitoring_viewer "$KEDA_KSA"
}

# GKE Inference Gateway for model pools: what k8s/components/inference-gateway needs first.
setup_inference_gateway() {
  log "GKE Inference Gateway: Gateway API, proxy-only subnet, internal IP, InferencePool CRDs"
  # The routing extension (body-based routing) is a Service Extension of the load balancer.
  run gcloud services enable networkservices.googleapis.com --project="$PROJECT_ID"
  # GKE's Gateway controller and the standard-channel Gateway API CRDs, managed by GKE.
  run gcloud container clusters update "$CLUSTER_NAME" \
    --location="$REGION" --project="$PROJECT_ID" --gateway-api=standard --quiet
  # Regional internal gateways (gke-l7-rilb) run their proxies in this subnet.
  ensure "proxy-only subnet exists" \
    gcloud compute networks subnets describe "$PROXY_SUBNET" \
    --region="$REGION" --project="$PROJECT_ID" -- \
    gcloud compute networks subnets create "$PROXY_SUBNET" \
    --purpose=REGIONAL_MANAGED_PROXY --role=ACTIVE \
    --region="$REGION" --network="$NETWORK" --range="$PROXY_SUBNET_RANGE" \
    --project="$PROJECT_ID"
  # The Gateway names this address (NamedAddress); the chat's LLM_URL is GATEWAY_IP.
  ensure "internal address exists" \
    gcloud compute addresses describe "$GATEWAY_IP_NAME" \
    --region="$REGION" --project="$PROJECT_ID" -- \
    gcloud compute addresses create "$GATEWAY_IP_NAME" \
    --region="$REGION" --subnet="$GATEWAY_SUBNET" --addresses="$GATEWAY_IP" \
    --purpose=SHARED_LOADBALANCER_VIP --project="$PROJECT_ID"
  # InferencePool and friends: the extension's released manifests (server-side: large CRDs).
  run kubectl apply --server-side -f "$INFERENCE_EXTENSION_CRDS"
  log "model pools: OVERLAY=pools scripts/deploy.sh (README: Model pools behind GKE Inference Gateway)"
}

log "APIs"
run gcloud services enable \
  container.googleapis.com compute.googleapis.com artifactregistry.googleapis.com \
  cloudbuild.googleapis.com iam.googleapis.com iap.googleapis.com run.googleapis.com \
  monitoring.googleapis.com --project="$PROJECT_ID"

log "GKE cluster $CLUSTER_NAME in $REGION (nodes in $ZONES)"
# A small CPU pool runs the web apps and system pods; GPUs live in their own pool.
# GPU telemetry for the admin page: Managed Service for Prometheus with managed collection,
# and GKE's managed DCGM exporter on the GPU nodes (per-GPU utilization, memory, temperature,
# power), queried by the page with PromQL (webapp/cluster/telemetry.py).
GPU_TELEMETRY_FLAGS=(--enable-managed-prometheus "--monitoring=SYSTEM,DCGM")
if exists gcloud container clusters describe "$CLUSTER_NAME" \
  --location="$REGION" --project="$PROJECT_ID"; then
  log "cluster exists: left as it is, except that GPU telemetry is turned on"
  # One kind of change per `clusters update` call.
  for flag in "${GPU_TELEMETRY_FLAGS[@]}"; do
    run gcloud container clusters update "$CLUSTER_NAME" \
      --location="$REGION" --project="$PROJECT_ID" "$flag" --quiet
  done
else
  run gcloud container clusters create "$CLUSTER_NAME" \
    --project="$PROJECT_ID" --location="$REGION" --node-locations="$ZONES" \
    --release-channel=regular \
    --workload-pool="${PROJECT_ID}.svc.id.goog" \
    --enable-dataplane-v2 --enable-ip-alias --addons=HttpLoadBalancing \
    --machine-type=e2-standard-4 --num-nodes=1 \
    --enable-shielded-nodes --shielded-secure-boot --workload-metadata=GKE_METADATA \
    "${GPU_TELEMETRY_FLAGS[@]}"
fi

log "spot GPU node pool $GPU_POOL: $GPU_COUNT x $GPU_TYPE on $MACHINE_TYPE, 0..$GPU_POOL_MAX_NODES nodes"
# Autoscaling from 0: no GPU is paid for while no vLLM pod asks for one. GKE installs the
# NVIDIA driver (gpu-driver-version) and taints the nodes nvidia.com/gpu=present:NoSchedule.
ensure "node pool exists: left as it is" \
  gcloud container node-pools describe "$GPU_POOL" --cluster="$CLUSTER_NAME" \
  --location="$REGION" --project="$PROJECT_ID" -- \
  gcloud container node-pools create "$GPU_POOL" \
  --project="$PROJECT_ID" --cluster="$CLUSTER_NAME" --location="$REGION" \
  --node-locations="$ZONES" --machine-type="$MACHINE_TYPE" \
  --accelerator="type=${GPU_TYPE},count=${GPU_COUNT},gpu-driver-version=latest" \
  --spot --num-nodes=0 \
  --enable-autoscaling --total-min-nodes=0 --total-max-nodes="$GPU_POOL_MAX_NODES" \
  --disk-size=200 --workload-metadata=GKE_METADATA --shielded-secure-boot

log "static IP $STATIC_IP_NAME"
ensure "address exists" \
  gcloud compute addresses describe "$STATIC_IP_NAME" --global --project="$PROJECT_ID" -- \
  gcloud compute addresses create "$STATIC_IP_NAME" --global --project="$PROJECT_ID"
if [[ -n "$DOMAIN" ]]; then
  # The managed certificate is only issued once DOMAIN resolves to the load balancer: creating
  # the DNS record now gives it time to propagate before deploy.sh asks for the certificate.
  log "DNS: create an A record $DOMAIN -> this address (at your DNS provider)"
  run gcloud compute addresses describe "$STATIC_IP_NAME" --global --project="$PROJECT_ID" \
    --format='value(address)'
fi

log "Cloud Armor policy $SECURITY_POLICY: $ARMOR_RATE_LIMIT requests per $ARMOR_RATE_INTERVAL_S s per client IP"
# Attached to the chat backend by its BackendConfig (k8s/base/backendconfig.yaml names it; GKE
# does not sync the Ingress while a named policy is missing). It counts HTTP requests per
# client IP as the load balancer sees it (not X-Forwarded-For, which a client can forge):
# page loads, static files and websocket connections; a client above the limit gets 429 until
# its rate falls. Chat messages travel inside a websocket: the app limits those itself.
ensure "security policy exists" \
  gcloud compute security-policies describe "$SECURITY_POLICY" --project="$PROJECT_ID" -- \
  gcloud compute security-policies create "$SECURITY_POLICY" --project="$PROJECT_ID" \
  --description="llm-console chat: requests per client IP (scripts/setup_gke.sh)"
ARMOR_RULE=(
  --security-policy="$SECURITY_POLICY" --project="$PROJECT_ID"
  --src-ip-ranges='*' --action=throttle
  --rate-limit-threshold-count="$ARMOR_RATE_LIMIT"
  --rate-limit-threshold-interval-sec="$ARMOR_RATE_INTERVAL_S"
  --conform-action=allow --exceed-action=deny-429 --enforce-on-key=IP
  --description="at most $ARMOR_RATE_LIMIT requests per $ARMOR_RATE_INTERVAL_S s per client IP"
)
if exists gcloud compute security-policies rules describe "$ARMOR_RULE_PRIORITY" \
  --security-policy="$SECURITY_POLICY" --project="$PROJECT_ID"; then
  # Keep the thresholds in sync with this script's settings.
  run gcloud compute security-policies rules update "$ARMOR_RULE_PRIORITY" "${ARMOR_RULE[@]}"
else
  run gcloud compute security-policies rules create "$ARMOR_RULE_PRIORITY" "${ARMOR_RULE[@]}"
fi

log "Artifact Registry repository $AR_REPO"
ensure "repository exists" \
  gcloud artifacts repositories describe "$AR_REPO" \
  --location="$REGION" --project="$PROJECT_ID" -- \
  gcloud artifacts repositories create "$AR_REPO" --repository-format=docker \
  --location="$REGION" --project="$PROJECT_ID" \
  --description="llm-console web app images"

# A custom role with exactly PERMISSIONS: created, or brought in sync with this script.
ensure_role() {
  local id="$1" title="$2" description="$3" permissions="$4"
  if exists gcloud iam roles describe "$id" --project="$PROJECT_ID"; then
    run gcloud iam roles update "$id" --project="$PROJECT_ID" \
      --permissions="$permissions" --quiet
  else
    run gcloud iam roles create "$id" --project="$PROJECT_ID" \
      --title="$title" --description="$description" \
      --permissions="$permissions" --stage=GA
  fi
}

log "IAM: custom roles $ADMIN_ROLE_ID, $QUOTA_ROLE_ID and service account $ADMIN_GSA_EMAIL"
ensure_role "$ADMIN_ROLE_ID" "LLM console GPU pool operator" \
  "Read the GKE cluster, resize its GPU node pool, follow operations" "$ADMIN_PERMISSIONS"
ensure_role "$QUOTA_ROLE_ID" "LLM console GPU quota reader" \
  "Read the region's quotas (GPUs) before adding GPU nodes" "$QUOTA_PERMISSIONS"
ensure "service account exists" \
  gcloud iam service-accounts describe "$ADMIN_GSA_EMAIL" --project="$PROJECT_ID" -- \
  gcloud iam service-accounts create "$ADMIN_GSA" --project="$PROJECT_ID" \
  --display-name="LLM console admin page"
if [[ "$ADMIN_IAM_SCOPE" == "cluster" ]]; then
  run gcloud projects add-iam-policy-binding "$PROJECT_ID" \
    --member="serviceAccount:${ADMIN_GSA_EMAIL}" \
    --role="projects/${PROJECT_ID}/roles/${ADMIN_ROLE_ID}" --condition="$ADMIN_CONDITION" --quiet
  # An earlier run of this script bound the role project-wide: take that binding away.
  run gcloud projects remove-iam-policy-binding "$PROJECT_ID" \
    --member="serviceAccount:${ADMIN_GSA_EMAIL}" \
    --role="projects/${PROJECT_ID}/roles/${ADMIN_ROLE_ID}" --condition=None --quiet ||
    log "no project-wide binding of $ADMIN_ROLE_ID to remove"
else
  log "ADMIN_IAM_SCOPE=project: $ADMIN_ROLE_ID on every cluster of $PROJECT_ID"
  run gcloud projects add-iam-policy-binding "$PROJECT_ID" \
    --member="serviceAccount:${ADMIN_GSA_EMAIL}" \
    --role="projects/${PROJECT_ID}/roles/${ADMIN_ROLE_ID}" --condition=None --quiet
fi
# Capacity guard: read the region's GPU quota (see QUOTA_PERMISSIONS).
run gcloud projects add-iam-policy-binding "$PROJECT_ID" \
  --member="serviceAccount:${ADMIN_GSA_EMAIL}" \
  --role="projects/${PROJECT_ID}/roles/${QUOTA_ROLE_ID}" --condition=None --quiet
# GPU telemetry: read the managed DCGM metrics (PromQL on Managed Service for Prometheus).
# roles/monitoring.viewer is read-only; monitoring data has no per-cluster IAM resource, so
# it is granted on the project.
run gcloud projects add-iam-policy-binding "$PROJECT_ID" \
  --member="serviceAccount:${ADMIN_GSA_EMAIL}" \
  --role=roles/monitoring.viewer --condition=None --quiet
# Workload Identity: the Kubernetes ServiceAccount of the admin pods may act as the GSA.
run gcloud iam service-accounts add-iam-policy-binding "$ADMIN_GSA_EMAIL" \
  --project="$PROJECT_ID" --role=roles/iam.workloadIdentityUser \
  --member="serviceAccount:${PROJECT_ID}.svc.id.goog[${NAMESPACE}/${ADMIN_KSA}]" --quiet

log "kubectl credentials"
run gcloud container clusters get-credentials "$CLUSTER_NAME" \
  --location="$REGION" --project="$PROJECT_ID"

if [[ "$GATEWAY" == "1" ]]; then
  setup_inference_gateway
  setup_pool_autoscaling
fi

if [[ -n "$DOMAIN" ]]; then
  log "done. Next: HF_TOKEN=... scripts/create_hf_secret.sh, then"
  log "      scripts/deploy.sh --domain $DOMAIN (once the A record exists)"
else
  log "done. Next: HF_TOKEN=... scripts/create_hf_secret.sh, then scripts/deploy.sh"
fi
