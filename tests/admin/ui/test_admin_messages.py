"""Admin error messages quote what the cluster, GKE or vLLM said: never as an image."""

from __future__ import annotations

import pytest

from webapp.admin.ui.messages import admin_error_message
from webapp.cluster.errors import (
    ApiRejected,
    ClusterUnavailable,
    Forbidden,
    NotFound,
    SlotMissing,
)
from webapp.cluster.node_pools import NodePoolError
from webapp.llm.errors import LLMError

IMG = "![x](http://127.0.0.2:9/img?d=secret)"


@pytest.mark.parametrize(
    ("err", "kept"),
    [
        (ApiRejected("patch Deployment vllm", IMG), "The cluster rejected the change"),
        (NotFound("get Deployment vllm", IMG), "Not found while trying to get Deployment"),
        (ClusterUnavailable(IMG), "cannot be reached right now"),
        (Forbidden(f"patch Deployment {IMG}"), "patch on deployments (apps)"),
        (NodePoolError(f"operation failed: {IMG}"), "operation failed"),
        (LLMError(IMG), "metrics are unavailable"),
    ],
)
def test_server_text_in_admin_errors_draws_no_image(err, kept):
    message = admin_error_message(err)
    assert kept in message
    assert "![" not in message
    assert "[image: x](http://127.0.0.2:9/img?d=secret)" in message


def test_a_missing_blue_green_slot_says_apply_the_manifests():
    message = admin_error_message(SlotMissing("vllm", "vllm-green"))
    assert "Deployment vllm-green in namespace vllm" in message
    assert "apply the manifests" in message and "kubectl apply -k" in message
