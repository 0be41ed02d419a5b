"""Pure patch builders: in-place switch and rollback, blue/green slots."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.support.cluster import LLAMA
from webapp.cluster import manifests as mf
from webapp.cluster import patches as pt


def test_in_place_patch_stores_previous_template_and_preconditions():
    dep = mf.build_deployment("vllm", "vllm", LLAMA)
    dep["metadata"]["resourceVersion"] = "42"
    new_t = mf.build_pod_template(replace(LLAMA, name="m2"), labels={"app": "vllm"})
    ops = pt.in_place_patch(dep, new_t)
    by_path = {op["path"]: op for op in ops}
    assert by_path["/metadata/resourceVersion"]["value"] == "42"
    saved = by_path["/metadata/annotations"]["value"][pt.PREVIOUS_TEMPLATE_ANNOTATION]
    assert json.loads(saved) == dep["spec"]["template"]
    assert by_path["/spec/template"]["value"] == new_t
    assert by_path["/spec/strategy"]["value"] == {"type": "Recreate"}
    dep["metadata"]["annotations"] = by_path["/metadata/annotations"]["value"]
    assert pt.previous_template(dep) == dep["spec"]["template"]


@pytest.mark.parametrize(
    ("annotations", "expected_none"),
    [
        ({}, True),
        ({pt.PREVIOUS_TEMPLATE_ANNOTATION: "{not json"}, True),
        ({pt.PREVIOUS_TEMPLATE_ANNOTATION: "[]"}, True),
    ],
)
def test_previous_template_absent_or_broken(annotations, expected_none):
    dep = {"metadata": {"annotations": annotations}}
    assert (pt.previous_template(dep) is None) is expected_none


@pytest.mark.parametrize(
    ("base", "active", "target", "sel", "expected"),
    [
        ("vllm", "vllm", "vllm-green", {"app": "vllm"}, {"app": "vllm-green"}),
        ("vllm", "vllm-green", "vllm", {"app": "vllm-green"}, {"app": "vllm"}),
    ],
)
def test_slots_alternate_with_disjoint_selectors(base, active, target, sel, expected):
    assert pt.other_slot_name(base, active) == target
    assert pt.slot_labels(sel, active, target, base) == expected


@pytest.mark.parametrize(
    ("active_name", "idle_name"), [("vllm", "vllm-green"), ("vllm-green", "vllm")]
)
def test_idle_slot_is_the_other_slot_stopped_with_its_own_selector(active_name, idle_name):
    labels = {"app": active_name}
    active = mf.build_deployment(active_name, "vllm", LLAMA, labels=labels)
    idle = pt.idle_slot(active, "vllm")
    assert idle["metadata"] == {
        "name": idle_name,
        "namespace": "vllm",
        "labels": {"app": idle_name},
    }
    assert idle["spec"]["replicas"] == 0
    assert idle["spec"]["selector"] == {"matchLabels": {"app": idle_name}}
    assert idle["spec"]["template"]["metadata"]["labels"] == {"app": idle_name}
    assert idle["spec"]["strategy"] == {"type": "Recreate"}
    # the same model and pod as the active slot, nothing else changed
    assert mf.template_model(idle["spec"]["template"]) == LLAMA.name
    assert idle["spec"]["template"]["spec"] == active["spec"]["template"]["spec"]
    assert active["spec"]["selector"] == {"matchLabels": labels}  # not modified
