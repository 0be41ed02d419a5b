"""The rule for a pool copy's vLLM image and flags (pool_overrides): table-driven, pure."""

from __future__ import annotations

import pytest

from webapp.cluster.errors import InvalidModelSpec
from webapp.cluster.pool_overrides import (
    PoolOverrides,
    check_image,
    describe_changes,
    image_version,
    validate_overrides,
)

BASE = "vllm/vllm-openai:v0.32.0"
MIRROR = "us-docker.pkg.dev/acme/mirror/vllm-openai:v0.32.0"
DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("image", "base"),
    [
        ("vllm/vllm-openai:v0.33.1", BASE),
        ("docker.io/vllm/vllm-openai:v0.33.1", BASE),
        (f"vllm/vllm-openai@{DIGEST}", BASE),
        (f"vllm/vllm-openai:v0.33.1@{DIGEST}", f"{BASE}@{DIGEST}"),
        ("us-docker.pkg.dev/acme/mirror/vllm-openai:v0.33.1", MIRROR),  # the base's registry
        ("vllm/vllm-openai:v0.33.1", MIRROR),  # upstream is always allowed
        ("localhost:5000/vllm:v1", "localhost:5000/vllm:v0"),  # a port is not a tag
    ],
)
def test_allowed_images(image, base):
    assert check_image(image, base) == image


@pytest.mark.parametrize(
    ("image", "base", "words"),
    [
        ("evil.example/miner:v1", BASE, "not a vLLM image this pool may run"),
        ("us-docker.pkg.dev/acme/mirror/vllm-openai:v0.33.1", BASE, "not a vLLM image"),
        ("vllm/vllm-openai", BASE, "names no version"),
        ("vllm/vllm-openai:latest", BASE, "not a release tag"),
        ("vllm/vllm-openai:v1 --rm", BASE, "not a release tag"),
        ("vllm/vllm-openai@sha256:xyz", BASE, "64 hex digits"),
        (" vllm/vllm-openai:v1", BASE, "must be an image reference"),
        ("", BASE, "must be an image reference"),
        ("localhost:5000/vllm", "localhost:5000/vllm:v0", "names no version"),
    ],
)
def test_refused_images(image, base, words):
    with pytest.raises(InvalidModelSpec, match=words) as err:
        check_image(image, base)
    assert err.value.field == "image"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (PoolOverrides(stream_interval=0), "stream_interval"),
        (PoolOverrides(stream_interval=65), "stream_interval"),
        (PoolOverrides(gpu_memory_utilization=1.5), "gpu_memory_utilization"),
        (PoolOverrides(gpu_memory_utilization=float("nan")), "gpu_memory_utilization"),
        (PoolOverrides(image="evil.example/x:v1"), "image"),
    ],
)
def test_bad_flags_are_refused_naming_the_field(overrides, field):
    with pytest.raises(InvalidModelSpec) as err:
        validate_overrides(overrides, served="m", hf_repo="org/m", max_model_len=4096,
                           base_image=BASE)  # fmt: skip
    assert err.value.field == field


def test_bad_context_is_refused():
    with pytest.raises(InvalidModelSpec, match="max_model_len"):
        validate_overrides(PoolOverrides(), served="m", hf_repo="org/m", max_model_len=8,
                           base_image=BASE)  # fmt: skip


def test_flags_are_written_by_the_console():
    assert PoolOverrides(stream_interval=8, gpu_memory_utilization=0.85).flags() == {
        "--stream-interval": "8", "--gpu-memory-utilization": "0.85"}  # fmt: skip
    assert PoolOverrides().flags() == {}


@pytest.mark.parametrize(
    ("image", "version"),
    [(BASE, "v0.32.0"), (f"{BASE}@{DIGEST}", "v0.32.0"), (f"vllm/vllm-openai@{DIGEST}",
     "sha256:abababababab"), (None, "unknown")],
)  # fmt: skip
def test_image_version(image, version):
    assert image_version(image) == version


@pytest.mark.parametrize(
    ("old_image", "new_image", "old", "new", "said"),
    [
        (BASE, "vllm/vllm-openai:v0.33.1", {}, {}, ("vLLM v0.32.0 → v0.33.1",)),
        (BASE, BASE, {}, {}, ()),
        (BASE, None, {"--max-model-len": "4096"}, {"--max-model-len": "8192"},
         ("--max-model-len 4096 → 8192",)),
        (BASE, None, {"--gpu-memory-utilization": "0.90"}, {"--gpu-memory-utilization": "0.9"},
         ()),  # the same value written another way
        (BASE, None, {}, {"--stream-interval": "8"}, ("--stream-interval unset → 8",)),
        (BASE, f"{BASE}@{DIGEST}", {}, {}, (f"vLLM {BASE} → {BASE}@{DIGEST}",)),
    ],
)  # fmt: skip
def test_describe_changes(old_image, new_image, old, new, said):
    assert describe_changes(old_image, new_image, old, new) == said
