"""Model pools (webapp.cluster.pools): bad pool specs and traffic splits are refused with a
plain message naming the field; the builders give the objects the gateway needs."""

from __future__ import annotations

from dataclasses import replace

import jsonpatch
import pytest

from webapp.admin.catalog import load_catalog
from webapp.cluster import pools
from webapp.cluster.errors import InvalidPool
from webapp.cluster.pools import Backend, PoolSpec

CATALOG_IDS = frozenset(m.id for m in load_catalog().models)
GOOD = PoolSpec(name="vllm-mistral", model="mistral-7b", replicas=2, min_replicas=1, max_replicas=3)


def test_a_good_pool_is_accepted():
    assert pools.validate_pool(GOOD, CATALOG_IDS) is GOOD
    # scale to zero is allowed (min 0, asleep)
    asleep = replace(GOOD, replicas=0, min_replicas=0)
    assert pools.validate_pool(asleep, CATALOG_IDS) is asleep


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"name": "Mistral_7B"}, "name", "not allowed"),
        ({"name": "-pool"}, "name", "not allowed"),
        ({"name": "pool-"}, "name", "not allowed"),
        ({"name": ""}, "name", "not allowed"),
        ({"name": "a" * 60}, "name", "at most 59"),
        ({"name": "x; rm -rf /"}, "name", "not allowed"),
        ({"name": None}, "name", "not allowed"),
        ({"model": "gpt-4"}, "model", "not in the model catalog"),
        ({"model": "Mistral-7B"}, "model", "not in the model catalog"),
        ({"min_replicas": 3, "max_replicas": 2}, "min_replicas", "above the maximum"),
        ({"replicas": 5}, "replicas", "outside the autoscaling range 1-3"),
        ({"replicas": 0}, "replicas", "outside the autoscaling range 1-3"),
        ({"replicas": -1}, "replicas", "whole number from 0 to 64"),
        ({"max_replicas": 65}, "max_replicas", "whole number from 0 to 64"),
        ({"replicas": "2"}, "replicas", "whole number"),
        ({"replicas": True}, "replicas", "whole number"),
        ({"min_replicas": 1.5}, "min_replicas", "whole number"),
    ],
)
def test_a_bad_pool_is_refused_with_a_plain_message(changes, field, words):
    with pytest.raises(InvalidPool) as err:
        pools.validate_pool(replace(GOOD, **changes), CATALOG_IDS)
    assert err.value.field == field
    assert words in err.value.message
    assert "Traceback" not in err.value.message


@pytest.mark.parametrize(
    "backends",
    [
        [Backend("vllm", 100)],
        [Backend("vllm", 95), Backend("vllm-canary", 5)],
        [Backend("vllm", 0), Backend("vllm-canary", 100)],
        [Backend("a", 50), Backend("b", 25), Backend("c", 25)],
    ],
)
def test_a_split_summing_to_100_is_accepted(backends):
    assert pools.validate_split("llama-2-7b", backends) == tuple(backends)


@pytest.mark.parametrize(
    ("backends", "field", "words"),
    [
        ([], "backends", "at least one pool"),
        ([Backend("vllm", 95), Backend("vllm-canary", 10)], "weights", "add up to 105%"),
        ([Backend("vllm", 50)], "weights", "add up to 50%, not 100%"),
        ([Backend("vllm", 100), Backend("vllm-canary", 0), Backend("x", 0)], None, None),
        ([Backend("vllm", 120), Backend("vllm-canary", -20)], "weights", "0 to 100"),
        ([Backend("vllm", 50), Backend("vllm", 50)], "backends", "named twice"),
        ([Backend("vllm", "100")], "weights", "0 to 100"),
        ([Backend("Bad Pool", 100)], "backends", "not allowed"),
    ],
)
def test_a_bad_split_is_refused(backends, field, words):
    if field is None:  # zero shares are fine as long as the sum is 100
        assert pools.validate_split("m", backends)
        return
    with pytest.raises(InvalidPool) as err:
        pools.validate_split("m", backends)
    assert err.value.field == field
    assert words in err.value.message


def test_inference_pool_selects_the_pool_and_names_its_picker():
    assert pools.inference_pool("vllm-mistral") == {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "vllm-mistral"},
        "spec": {
            "targetPorts": [{"number": 8000}],
            "appProtocol": "http",
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "vllm-mistral",
                    "app.kubernetes.io/instance": "vllm-mistral",
                }
            },
            "endpointPickerRef": {
                "name": "vllm-mistral-epp",
                "port": {"number": 9002},
                "failureMode": "FailOpen",
            },
        },
    }
    with pytest.raises(InvalidPool):
        pools.inference_pool("No Pool")


def test_route_rule_matches_the_model_header_and_weights_the_pools():
    rule = pools.route_rule("llama-2-7b", [Backend("vllm", 75), Backend("vllm-canary", 25)])
    assert rule["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/"},
            "headers": [{"type": "Exact", "name": "X-Gateway-Model-Name", "value": "llama-2-7b"}],
        }
    ]
    assert [(b["name"], b["weight"], b["kind"]) for b in rule["backendRefs"]] == [
        ("vllm", 75, "InferencePool"),
        ("vllm-canary", 25, "InferencePool"),
    ]
    with pytest.raises(InvalidPool):
        pools.route_rule("llama-2-7b", [Backend("vllm", 75), Backend("vllm-canary", 20)])


def test_deployment_patch_turns_the_base_deployment_into_the_pool():
    base = {
        "metadata": {"name": "vllm-mistral", "labels": {"app.kubernetes.io/name": "vllm",
                                                        "app.kubernetes.io/instance": "vllm"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "vllm",
                                         "app.kubernetes.io/instance": "vllm"}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "vllm",
                                        "app.kubernetes.io/instance": "vllm"},
                             "annotations": {"llm-console/model": "llama-2-7b"}},
                "spec": {"containers": [{"name": "vllm", "args": [
                    "--model=meta-llama/Llama-2-7b-hf", "--served-model-name=llama-2-7b",
                    "--max-model-len=4096", "--port=8000"]}]},
            },
        },
    }  # fmt: skip
    ops = pools.deployment_patch(GOOD, "mistralai/Mistral-7B-v0.1", 8192)
    out = jsonpatch.apply_patch(base, ops)
    labels = {
        "app.kubernetes.io/name": "vllm-mistral",
        "app.kubernetes.io/instance": "vllm-mistral",
    }
    assert out["spec"]["replicas"] == 2
    assert out["metadata"]["labels"] == labels
    assert out["spec"]["selector"]["matchLabels"] == labels
    assert out["spec"]["template"]["metadata"]["labels"] == labels
    assert out["spec"]["template"]["metadata"]["annotations"] == {"llm-console/model": "mistral-7b"}
    assert out["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "--model=mistralai/Mistral-7B-v0.1",
        "--served-model-name=mistral-7b",
        "--max-model-len=8192",
        "--port=8000",
    ]
