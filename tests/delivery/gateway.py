"""Shared by the Inference Gateway delivery checks: where the pooled layout lives, the upstream
CRD schemas under tests/delivery/crds (tests.support.crd_schemas: strict, an unknown field
fails), and object lookup."""

from __future__ import annotations

from tests.delivery.helpers import K8S

# Re-exported for tests written against this module before the check moved to tests/support.
from tests.support.crd_schemas import CRD_KINDS, SCHEMAS, schema_errors  # noqa: F401

COMPONENT = K8S / "components" / "inference-gateway"
POOLS = K8S / "overlays" / "pools"
GKE_KINDS = {"HealthCheckPolicy", "GCPBackendPolicy", "GCPRoutingExtension"}
GATEWAY_CLASS = "gke-l7-rilb"
# Pool name -> (served model name, replicas) of the example overlay.
EXAMPLE_POOLS = {"vllm": ("llama-2-7b", 1), "vllm-mistral": ("mistral-7b", 2)}


def of_kind(objs: list[dict], kind: str) -> list[dict]:
    """Every object of that kind."""
    return [o for o in objs if o["kind"] == kind]
