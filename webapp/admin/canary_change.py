"""What a fleet canary changes (issue 14, part 3): the model's weights, the vLLM version (its
image) and/or a few vLLM flags, resolved against the stable pool and checked before anything
is written, and said in words for the steps view and the audit ("vLLM v0.32.0 → v0.33.1",
"--max-model-len 4096 → 8192"). The rules for images and flags are
``webapp.cluster.pool_overrides``'s; a canary that changes nothing is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from webapp.admin.catalog import Catalog, CatalogError, CatalogModel
from webapp.admin.errors import InvalidCanaryPlan
from webapp.cluster.errors import FleetError, InvalidModelSpec, InvalidPool
from webapp.cluster.fleet_objects import PoolState
from webapp.cluster.pool_overrides import (
    FLAGS,
    PoolOverrides,
    describe_changes,
    image_version,
    validate_overrides,
)


@dataclass(frozen=True)
class CanaryChange:
    """The canary pool's weights (``hf_repo``), context length and overrides of the stable
    pool's image and flags; ``changes`` says each difference in words."""

    hf_repo: str
    max_model_len: int
    overrides: PoolOverrides
    changes: tuple[str, ...]


@dataclass(frozen=True)
class WantedChange:
    """What the admin asked for (None: keep the stable pool's)."""

    model: str | None = None  # a catalog id: its weights
    image: str | None = None
    max_model_len: int | None = None
    stream_interval: int | None = None
    gpu_memory_utilization: float | None = None


def catalog_entry(catalog: Catalog, model: str | None) -> CatalogModel | None:
    """The catalog entry of ``model`` (None: keep the weights), else ``InvalidPool``."""
    if model is None:
        return None
    try:
        return catalog.get(model)
    except CatalogError:
        ids = ", ".join(m.id for m in catalog.models)
        raise InvalidPool("model", f"The model {model!r} is not in the model catalog; "
                          f"pick one of: {ids}") from None  # fmt: skip


def _context(stable: PoolState, entry: CatalogModel | None, wanted: WantedChange) -> int:
    if wanted.max_model_len is not None:
        return wanted.max_model_len
    if entry is not None:
        return entry.recommended.max_model_len
    current = dict(stable.flags).get("--max-model-len")
    if current is None or not current.isdigit():
        raise InvalidModelSpec("max_model_len", f"pool {stable.name} sets no --max-model-len: "
                               "give the canary's")  # fmt: skip
    return int(current)


def resolve_change(
    stable: PoolState, catalog: Catalog, entry: CatalogModel | None, wanted: WantedChange
) -> CanaryChange:
    """The canary of ``stable`` that ``wanted`` asks for, checked: ``InvalidModelSpec`` for a
    bad image or flag, ``InvalidCanaryPlan`` when it changes nothing."""
    hf_repo = entry.hf_repo if entry is not None else stable.hf_repo
    if hf_repo is None or stable.model is None:
        raise FleetError(f"Pool {stable.name!r} does not say which model it loads (--model).")
    context = _context(stable, entry, wanted)
    weights = entry or next((m for m in catalog.models if m.hf_repo == hf_repo), None)
    if weights is not None and isinstance(context, int) and context > weights.max_context:
        raise InvalidModelSpec("max_model_len", f"must be at most {weights.max_context}, the "
                               f"longest context {weights.id} supports")  # fmt: skip
    overrides = PoolOverrides(wanted.image, wanted.stream_interval, wanted.gpu_memory_utilization)
    validate_overrides(overrides, served=stable.model, hf_repo=hf_repo, max_model_len=context,
                       base_image=stable.image)  # fmt: skip
    changes = (f"model {stable.hf_repo} → {hf_repo}",) if hf_repo != stable.hf_repo else ()
    changes += describe_changes(
        stable.image, wanted.image, dict(stable.flags),
        {**overrides.flags(), "--max-model-len": str(context)},
    )  # fmt: skip
    if not changes:
        raise InvalidCanaryPlan("changes", "This canary changes nothing: pick another model, "
                                "a new vLLM image or a flag value the pool does not have.")  # fmt: skip
    return CanaryChange(hf_repo, context, overrides, changes)


def serving_now(pool: PoolState) -> str:
    """What ``pool`` runs now, in words (the canary form's starting point)."""
    flags = dict(pool.flags)
    values = ", ".join(f"{f} {flags[f]}" for f in FLAGS if f in flags)
    return f"{pool.name} runs vLLM {image_version(pool.image)} ({pool.image})" + (
        f", {values}" if values else "")  # fmt: skip
