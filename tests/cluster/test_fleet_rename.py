"""``fleet_objects.renamed_model``: a pool's route rule follows its model switch (pure)."""

from __future__ import annotations

import pytest

from webapp.cluster.errors import ModelAlreadyServed, PoolInUse
from webapp.cluster.fleet_objects import renamed_model, routed_models
from webapp.cluster.pools import Backend, route_rule


def route(*rules: dict) -> dict:
    return {"spec": {"rules": list(rules)}}


BASE = route(route_rule("llama", [Backend("vllm")]), route_rule("mistral", [Backend("second")]))
CANARY = route(route_rule("llama", [Backend("vllm", 95), Backend("next", 5)]))


def test_the_rule_follows_the_new_model_and_keeps_its_backends():
    new = renamed_model(BASE, "second", "mistral", "falcon")
    assert routed_models(new) == {"llama": (Backend("vllm"),), "falcon": (Backend("second"),)}
    assert routed_models(BASE)["mistral"] == (Backend("second"),)  # the input is not changed


@pytest.mark.parametrize(
    ("route_", "pool", "old", "new", "error"),
    [
        (BASE, "second", "mistral", "llama", ModelAlreadyServed),  # another pool serves it
        (CANARY, "vllm", "llama", "falcon", PoolInUse),  # a canary shares its traffic
        (BASE, "vllm", "mistral", "falcon", PoolInUse),  # not this pool's model
    ],
)
def test_refusals(route_, pool, old, new, error):
    with pytest.raises(error):
        renamed_model(route_, pool, old, new)
