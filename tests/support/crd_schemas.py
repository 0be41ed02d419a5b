"""Custom objects against the upstream CRD schemas kept in tests/delivery/crds (Gateway API,
Inference Extension, Managed Service for Prometheus, KEDA), made strict: an unknown field
fails, as with `kubectl apply --validate=strict`. Used by the delivery checks of the manifests
and by any test of code that builds custom objects (e.g. a KEDA ScaledObject)."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

CRDS = Path(__file__).resolve().parents[1] / "delivery" / "crds"


def _strict(schema: dict) -> dict:
    """A copy of a CRD's OpenAPI schema in which objects with declared properties refuse any
    other field (the API server's strict field validation, `kubectl apply --validate=strict`)."""
    schema = copy.deepcopy(schema)

    def walk(node, structural=True):
        # Under oneOf/anyOf/allOf/not a schema only constrains values (structural schemas,
        # Kubernetes CRD rules): the fields it lists are not all the object may have.
        if isinstance(node, dict):
            if (
                structural
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for key, value in node.items():
                walk(value, structural and key not in {"oneOf", "anyOf", "allOf", "not"})
        elif isinstance(node, list):
            for value in node:
                walk(value, structural)

    walk(schema)
    return schema


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict schema of every served version of every CRD under crds/."""
    out = {}
    for path in sorted(CRDS.glob("*/*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version["served"]:
                out[(f"{group}/{version['name']}", kind)] = _strict(
                    version["schema"]["openAPIV3Schema"]
                )
    return out


SCHEMAS = crd_schemas()
CRD_KINDS = {kind for _, kind in SCHEMAS}


def schema_errors(obj: dict) -> list[str]:
    """What is wrong with a custom object against its CRD schema (empty: valid)."""
    schema = SCHEMAS.get((obj["apiVersion"], obj["kind"]))
    if schema is None:
        return [f"no CRD schema for {obj['apiVersion']} {obj['kind']}"]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]


KEDA_API = "keda.sh/v1alpha1"


def scaled_object_errors(obj: dict) -> list[str]:
    """What is wrong with a KEDA ``ScaledObject`` (keda.sh/v1alpha1) against the CRD of the
    KEDA release scripts/setup_gke.sh installs (empty: valid). For a TriggerAuthentication use
    ``schema_errors``."""
    if (obj.get("apiVersion"), obj.get("kind")) != (KEDA_API, "ScaledObject"):
        return [f"not a {KEDA_API} ScaledObject: {obj.get('apiVersion')} {obj.get('kind')}"]
    return schema_errors(obj)
