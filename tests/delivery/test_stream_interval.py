"""vLLM's ``--stream-interval`` (tokens per SSE chunk) in every overlay, both blue/green slots:
the value chosen from bench/chunk_cost.py, and the vLLM release the manifests pin (the one the
real-vLLM tests run) knows the flag."""

from __future__ import annotations

import re

import pytest

from tests.delivery.helpers import OVERLAYS, ROOT, arg_map, container, find
from webapp.cluster.model_spec import ModelSpec

pytestmark = pytest.mark.delivery

#: README "Scaling the chat": 4 tokens per chunk cut the app's CPU per token 2-3x against 1,
#: and the page still redraws ~8 times a second at 100 tokens/s (8 would make it ~6). The
#: manifests and the admin's deploy form (``ModelSpec``'s default) stream the same.
STREAM_INTERVAL = str(ModelSpec.stream_interval)


@pytest.mark.parametrize("slot", ["vllm", "vllm-green"])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_vllm_slot_streams_several_tokens_per_chunk(rendered, overlay, slot):
    c = container(find(rendered[overlay], "Deployment", slot), "vllm")
    assert arg_map(c["args"])["--stream-interval"] == STREAM_INTERVAL


def test_the_pinned_vllm_release_has_the_flag():
    """The flag is in the argument parser of the vLLM build in .venv-vllm (the version the
    manifests deploy, test_vllm_version.py); the @vllm test parses the whole command."""
    hits = list((ROOT / ".venv-vllm").glob("lib/python3*/site-packages/vllm/engine/arg_utils.py"))
    if not hits:
        pytest.fail(".venv-vllm has no vLLM: run `make vllm-venv`")
    assert re.search(r'"--stream-interval"', hits[0].read_text())
