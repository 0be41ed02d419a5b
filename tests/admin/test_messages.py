"""Admin error messages (``webapp.admin.messages``): what the page says for each typed
error; the RBAC rule a refused client call needs; server text never drawn as an image."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from webapp.admin.errors import JobBusy
from webapp.admin.messages import RBAC_RULES, admin_error_message
from webapp.cluster import pools
from webapp.cluster.errors import (
    ApiRejected,
    ClusterUnavailable,
    FleetNotInstalled,
    Forbidden,
    InvalidAutoscaling,
    InvalidPool,
    ModelAlreadyServed,
    NodePoolError,
    NotFound,
    PoolInUse,
    PoolNotFound,
    SlotMissing,
    SwitchInProgress,
)
from webapp.llm.errors import LLMError

ROOT = Path(__file__).resolve().parents[2]

IMG = "![x](http://127.0.0.2:9/img?d=secret)"


@pytest.mark.parametrize(
    ("err", "kept"),
    [
        (ApiRejected("patch Deployment vllm", IMG), "The cluster rejected the change"),
        (NotFound("get Deployment vllm", IMG), "Not found while trying to get Deployment"),
        (ClusterUnavailable(IMG), "cannot be reached right now"),
        (
            Forbidden(f"patch Deployment {IMG}", operation="patch_namespaced_deployment"),
            "patch on deployments (apps)",
        ),
        (NodePoolError(f"operation failed: {IMG}"), "operation failed"),
        (LLMError(IMG), "metrics are unavailable"),
    ],
)
def test_server_text_in_admin_errors_draws_no_image(err, kept):
    message = admin_error_message(err)
    assert kept in message
    assert "![" not in message
    assert "[image: x](http://127.0.0.2:9/img?d=secret)" in message


def test_a_bad_pool_name_is_refused_in_plain_words_without_drawing_it():
    with pytest.raises(InvalidPool) as err:
        pools.check_pool_name(IMG)
    message = admin_error_message(err.value)
    assert message.startswith("The pool name ")
    assert "lower-case letters, digits or '-'" in message
    assert "![" not in message


def test_a_missing_blue_green_slot_says_apply_the_manifests():
    message = admin_error_message(SlotMissing("vllm", "vllm-green"))
    assert "Deployment vllm-green in namespace vllm" in message
    assert "apply the manifests" in message and "kubectl apply -k" in message


@pytest.mark.parametrize(
    ("operation", "rule"),
    [
        ("create_namespaced_lease", "create on leases (coordination.k8s.io)"),
        ("replace_namespaced_lease", "update on leases (coordination.k8s.io)"),
        ("patch_namespaced_deployment", "patch on deployments (apps)"),
        ("read_namespaced_deployment", "get on deployments (apps)"),
        ("patch_namespaced_service", "patch on services"),
        ("read_namespaced_service", "get on services"),
        ("list_namespaced_replica_set", "list on replicasets (apps)"),
        ("read_namespaced_pod_log", "get on pods/log"),
        ("list_namespaced_pod", "list on pods"),
        ("list_namespaced_event", "list on events"),
        ("list_node", "list on nodes (cluster-wide, a ClusterRole)"),
    ],
)
def test_a_refused_call_names_the_rbac_rule_it_needs(operation, rule):
    message = admin_error_message(Forbidden("do it", "denied", operation=operation))
    assert message.startswith("The console's service account is not allowed to do it.")
    assert f"It needs the RBAC permission: {rule}." in message
    assert "Grant it in the console's Role/ClusterRole (k8s/base)" in message


@pytest.mark.parametrize("operation", ["delete_namespaced_pod", ""])
def test_a_refused_call_without_a_rule_gets_the_generic_message(operation):
    message = admin_error_message(Forbidden("restart pod vllm/x", operation=operation))
    assert message == (
        "The console's service account is not allowed to restart pod vllm/x. "
        "Grant it in the console's Role/ClusterRole (k8s/base) and try again."
    )


def test_every_client_method_the_cluster_package_calls_has_a_rule():
    called = {
        m.group(1)
        for path in (ROOT / "webapp" / "cluster").glob("*.py")
        for m in re.finditer(
            r"\.(?:core|apps|coordination|custom|autoscaling)\.(\w+)", path.read_text()
        )
    }
    assert called and called <= set(RBAC_RULES), called - set(RBAC_RULES)


ADMIN_RBAC = (
    ROOT / "k8s" / "base" / "admin-rbac.yaml",
    ROOT / "k8s" / "components" / "inference-gateway" / "admin-fleet-rbac.yaml",
)


def _granted() -> set[tuple[str, str, str]]:
    """(kind, verb, resource) of every rule of the admin's Roles in ``ADMIN_RBAC``."""
    docs = [d for path in ADMIN_RBAC for d in yaml.safe_load_all(path.read_text())]
    admin_roles = {
        d["roleRef"]["name"]
        for d in docs
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and any(s["name"] == "webapp-admin" for s in d["subjects"])
    }
    return {
        (d["kind"], verb, res)
        for d in docs
        if d["kind"] in ("Role", "ClusterRole") and d["metadata"]["name"] in admin_roles
        for r in d["rules"]
        for verb in r["verbs"]
        for res in r["resources"]
    }


def test_the_rules_the_messages_name_are_the_ones_the_manifests_grant():
    granted = _granted()
    named = set()
    for rule in RBAC_RULES.values():
        verb, resources = re.match(r"(\S+) on ([^(]+)", rule).groups()
        kind = "ClusterRole" if "ClusterRole" in rule else "Role"
        named |= {(kind, verb, resource.strip()) for resource in resources.split(",")}
    assert named == granted


def test_job_busy_says_who_holds_what():
    message = admin_error_message(JobBusy("node_pool", "ann@example.com", "gpu-pool"))
    assert "ann@example.com is already changing gpu-pool; wait until it finishes." in message


@pytest.mark.parametrize(
    ("err", "words"),
    [
        (PoolNotFound("vllm-x"), "There is no model pool named 'vllm-x'"),
        (
            ModelAlreadyServed("mistral-7b", ("vllm-mistral",)),
            "already served by pool vllm-mistral",
        ),
        (PoolInUse("vllm", "it is the default pool"), "Pool 'vllm' cannot be removed now"),
        (FleetNotInstalled("the HTTPRoute 'llm-models'"), "k8s/components/inference-gateway"),
        (InvalidAutoscaling("The minimum (3) is above the maximum (2) replicas"), "minimum (3)"),
    ],
)
def test_fleet_refusals_are_shown_in_their_own_plain_words(err, words):
    assert words in admin_error_message(err)


def test_a_pool_held_by_another_admin_names_the_holder_and_the_pool():
    message = admin_error_message(SwitchInProgress("bob@example.com", "", pool="vllm-mistral"))
    assert message.startswith("bob@example.com is already changing pool vllm-mistral.")
