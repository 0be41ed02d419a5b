"""create_pool(..., canary_of=P): a canary pool joins P's model rule at weight 0 (issue 14)."""

from __future__ import annotations

import pytest

from tests.cluster.test_fleet import MISTRAL, NS, create_mistral, seeded, writes  # noqa: F401
from webapp.cluster import fleet
from webapp.cluster.errors import FleetError, ModelAlreadyServed, ModelNotRouted
from webapp.cluster.pools import Backend, PoolSpec


def canary(cluster, name="vllm-mistral-canary", of="vllm-mistral", model="mistral-7b"):
    return fleet.create_pool(cluster, NS, PoolSpec(name, model), **MISTRAL, base=of, canary_of=of)


def test_a_canary_pool_joins_the_stable_pools_rule_at_zero(seeded, cluster):  # noqa: F811
    create_mistral(cluster)
    pool = canary(cluster)
    assert pool.backends == (Backend("vllm-mistral", 100), Backend("vllm-mistral-canary", 0))
    assert fleet.served_models(cluster, NS) == ["llama-2-7b", "mistral-7b"]
    dep = seeded.get("deployments", "vllm-mistral-canary", NS)
    assert dep["metadata"]["labels"]["app.kubernetes.io/name"] == "vllm-mistral-canary"
    assert seeded.get("deployments", "vllm-mistral-canary-epp", NS) is not None


def test_a_canary_is_refused_for_an_unrouted_model_or_during_another_canary(seeded, cluster):  # noqa: F811
    create_mistral(cluster)
    before = len(writes(seeded))
    with pytest.raises(ModelNotRouted):
        canary(cluster, model="qwen2-7b")
    with pytest.raises(ModelNotRouted):
        canary(cluster, of="vllm")  # vllm serves llama-2-7b, not mistral-7b
    assert len(writes(seeded)) == before
    canary(cluster)
    with pytest.raises(FleetError, match="already shares the traffic of 'mistral-7b'"):
        canary(cluster, name="vllm-mistral-2")
    with pytest.raises(ModelAlreadyServed):  # without canary_of: still one rule per model
        create_mistral(cluster, name="vllm-mistral-3")
