"""What a new pool may change from the pool it copies besides the model (issue 14: a canary of
the vLLM version or flags): the vLLM image and the vLLM flags the console manages. Pure.

The image: the repository the copied pool already pulls vLLM from (its registry and path), or
the upstream ``vllm/vllm-openai``, with a release tag and/or a sha256 digest — a canary
changes vLLM's version, never which software runs; ``latest`` (a moving tag) is refused. The
flags: ``--max-model-len``, ``--stream-interval`` and ``--gpu-memory-utilization`` only, each
checked by ``model_spec.validate_spec`` (the limits of a deploy or a switch) and written by the
console as ``--flag=value``: no free text reaches the container's arguments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from webapp.cluster.errors import InvalidModelSpec
from webapp.cluster.model_spec import DEFAULT_STREAM_INTERVAL, ModelSpec, validate_spec

UPSTREAM_REPOSITORY = "vllm/vllm-openai"
#: the vLLM flags a pool's copy may change, in the order the changes are described
FLAGS = ("--max-model-len", "--stream-interval", "--gpu-memory-utilization")
_DOCKER_HUB = ("docker.io/", "index.docker.io/")
_REPOSITORY = re.compile(r"^[a-z0-9]([a-z0-9._/:-]{0,200}[a-z0-9])?$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class PoolOverrides:
    """A new pool's vLLM image and flags where they differ from the copied pool's (None: as
    the copied pool). ``--max-model-len`` is ``create_pool``'s own ``max_model_len``."""

    image: str | None = None
    stream_interval: int | None = None
    gpu_memory_utilization: float | None = None

    def flags(self) -> dict[str, str]:
        """The flags to set on the copy (``--flag`` -> value), only those overridden."""
        out = {}
        if self.stream_interval is not None:
            out["--stream-interval"] = str(self.stream_interval)
        if self.gpu_memory_utilization is not None:
            out["--gpu-memory-utilization"] = f"{self.gpu_memory_utilization:g}"
        return out

    def spec(self, served: str, hf_repo: str, max_model_len: int) -> ModelSpec:
        """A ``ModelSpec`` carrying these values, for ``validate_spec`` to check them."""
        util = self.gpu_memory_utilization
        return ModelSpec(
            name=served, hf_repo=hf_repo, max_model_len=max_model_len, image=self.image,
            stream_interval=DEFAULT_STREAM_INTERVAL if self.stream_interval is None
            else self.stream_interval,
            gpu_memory_utilization=0.9 if util is None else util,
        )  # fmt: skip


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """``(repository, tag, digest)`` of an image reference (a registry port is no tag)."""
    name, _, digest = ref.partition("@")
    colon = name.rfind(":")
    tag = None
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
    for prefix in _DOCKER_HUB:
        name = name.removeprefix(prefix)
    return name, tag, digest or None


def check_image(image: str, base_image: str | None) -> str:
    """``image`` if a pool copied from one running ``base_image`` may run it, else
    ``InvalidModelSpec("image", why)`` (see the module's rule)."""
    if not isinstance(image, str) or not image or image != image.strip():
        raise InvalidModelSpec("image", "must be an image reference such as "
                               f"{UPSTREAM_REPOSITORY}:v0.33.1")  # fmt: skip
    repo, tag, digest = split_image(image)
    allowed = {UPSTREAM_REPOSITORY} | ({split_image(base_image)[0]} if base_image else set())
    if not _REPOSITORY.match(repo) or repo not in allowed:
        raise InvalidModelSpec("image", f"{image!r} is not a vLLM image this pool may run: use "
                               f"{' or '.join(sorted(allowed))} with a release tag or digest")  # fmt: skip
    if "@" in image and not (digest and _DIGEST.match(digest)):
        raise InvalidModelSpec("image", "its digest must be sha256: and 64 hex digits")
    if tag is None and digest is None:
        raise InvalidModelSpec("image", f"{image!r} names no version: add a release tag "
                               "(:v0.33.1) or a digest (@sha256:...)")  # fmt: skip
    if tag is not None and (not _TAG.match(tag) or tag == "latest"):
        raise InvalidModelSpec("image", f"the tag {tag!r} is not a release tag (latest moves; "
                               "name the version, e.g. v0.33.1)")  # fmt: skip
    return image


def validate_overrides(
    overrides: PoolOverrides, *, served: str, hf_repo: str, max_model_len: int,
    base_image: str | None,
) -> PoolOverrides:  # fmt: skip
    """``overrides`` if a copy of a pool running ``base_image`` may take them, else
    ``InvalidModelSpec`` naming the field (nothing is written before this passes)."""
    validate_spec(overrides.spec(served, hf_repo, max_model_len))
    if overrides.image is not None:
        check_image(overrides.image, base_image)
    return overrides


def image_version(image: str | None) -> str:
    """What people call an image's vLLM version: its tag (``v0.32.0``), else its short digest."""
    if not image:
        return "unknown"
    _, tag, digest = split_image(image)
    return tag or (digest or image)[:19]


def _same(old: str | None, new: str) -> bool:
    try:
        return old is not None and float(old) == float(new)
    except ValueError:
        return old == new


def describe_changes(
    old_image: str | None, new_image: str | None, old_flags: Mapping[str, str],
    new_flags: Mapping[str, str],
) -> tuple[str, ...]:  # fmt: skip
    """What a copy changes, in words: ``vLLM v0.32.0 → v0.33.1``, ``--max-model-len 4096 →
    8192`` (a flag the copied pool leaves unset shows as ``unset``)."""
    out = []
    if new_image is not None and new_image != old_image:
        old_v, new_v = image_version(old_image), image_version(new_image)
        if old_v == new_v:
            old_v, new_v = old_image or "unknown", new_image
        out.append(f"vLLM {old_v} → {new_v}")
    for flag in FLAGS:
        new, old = new_flags.get(flag), old_flags.get(flag)
        if new is not None and not _same(old, new):
            out.append(f"{flag} {old or 'unset'} → {new}")
    return tuple(out)
