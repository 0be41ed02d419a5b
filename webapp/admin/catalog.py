"""The model catalog: which models the admin may deploy, pinned and sized.

The catalog is a YAML file in the repository (``webapp/admin/catalog.yaml``) so that a
change of model or revision goes through review. ``load_catalog`` validates it
and returns frozen objects; any problem becomes a ``CatalogError`` that names
the entry and the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from webapp.admin.sizing import GPUS, ModelShape

DEFAULT_CATALOG_PATH = Path(__file__).with_name("catalog.yaml")

_RFC1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# Branch names move; a catalog pin must not be one of these.
_MOVING_REFS = frozenset({"main", "master", "head"})


class CatalogError(ValueError):
    """The catalog file is missing, unreadable, or an entry is invalid."""


class Recommendation(BaseModel):
    """The GPU shape we recommend for serving a model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu: str
    count: int = Field(ge=1, le=16)
    max_model_len: int = Field(ge=1)

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, v: str) -> str:
        if v not in GPUS:
            raise ValueError(f"unknown GPU {v!r}; known: {', '.join(GPUS)}")
        return v


class CatalogModel(BaseModel):
    """One deployable model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    hf_repo: str
    revision: str
    params_b: float = Field(gt=0, le=2000)
    dtype: Literal["fp16", "bf16"]
    quantization: Literal["none", "fp8", "awq", "gptq"] = "none"
    num_layers: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    max_context: int = Field(ge=1)
    kind: Literal["chat", "base"]
    recommended: Recommendation
    trust_remote_code: bool = False
    license: str
    gated: bool

    @field_validator("id")
    @classmethod
    def _rfc1123(cls, v: str) -> str:
        if not _RFC1123_LABEL.match(v):
            raise ValueError("must be an RFC 1123 label: lower-case letters, digits, '-'")
        return v

    @field_validator("hf_repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not _HF_REPO.match(v):
            raise ValueError("must look like 'owner/name'")
        return v

    @field_validator("revision")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if v.lower() in _MOVING_REFS:
            raise ValueError(f"{v!r} is a moving branch; pin a commit sha or a tag")
        if not (_COMMIT.match(v) or (_TAG.match(v) and not re.fullmatch(r"[0-9a-fA-F]+", v))):
            raise ValueError("must be a 40-hex commit sha or a tag")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CatalogModel:
        if self.recommended.max_model_len > self.max_context:
            raise ValueError("recommended.max_model_len exceeds max_context")
        return self

    @property
    def precision(self) -> str:
        """Weight precision for sizing: the quantization if any, else the dtype."""
        return self.dtype if self.quantization == "none" else self.quantization

    @property
    def shape(self) -> ModelShape:
        """The numbers sizing needs."""
        return ModelShape(
            params_b=self.params_b,
            precision=self.precision,
            num_layers=self.num_layers,
            num_kv_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            max_context=self.max_context,
        )


class Catalog(BaseModel):
    """All catalog entries, in file order, ids unique."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[CatalogModel, ...]

    def get(self, model_id: str) -> CatalogModel:
        """The entry with this id; raises CatalogError if there is none."""
        for m in self.models:
            if m.id == model_id:
                return m
        raise CatalogError(f"no model {model_id!r} in the catalog")


def parse_catalog(text: str, source: str = "<catalog>") -> Catalog:
    """Parse and validate catalog YAML text; raises CatalogError with a readable message."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise CatalogError(f"{source}: expected a mapping with a 'models' list")
    if not data["models"]:
        raise CatalogError(f"{source}: the 'models' list is empty")
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"{source}: {_describe(exc, data['models'])}") from None
    seen: set[str] = set()
    for m in catalog.models:
        if m.id in seen:
            raise CatalogError(f"{source}: duplicate model id {m.id!r}")
        seen.add(m.id)
    return catalog


def load_catalog(path: str | Path = DEFAULT_CATALOG_PATH) -> Catalog:
    """Read and validate the catalog file (called by the caller, never at import)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {p}: {exc.strerror or exc}") from None
    return parse_catalog(text, source=str(p))


def _describe(exc: ValidationError, entries: list) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = list(err["loc"])
        where = ".".join(str(x) for x in loc)
        if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
            entry = entries[loc[1]] if loc[1] < len(entries) else None
            name = entry.get("id") if isinstance(entry, dict) else None
            where = f"model {name or '#' + str(loc[1])}: " + ".".join(str(x) for x in loc[2:])
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
