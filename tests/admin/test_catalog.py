"""The model catalog file and its validation."""

from __future__ import annotations

import pytest
import yaml

from webapp.admin.catalog import DEFAULT_CATALOG_PATH, CatalogError, load_catalog, parse_catalog
from webapp.admin.sizing import Verdict, size_model


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _by_repo(catalog, hf_repo):
    """The one entry serving ``hf_repo``."""
    (m,) = [m for m in catalog.models if m.hf_repo == hf_repo]
    return m


@pytest.mark.parametrize(
    ("hf_repo", "layers", "kv_heads", "head_dim", "kind"),
    [
        ("meta-llama/Llama-2-7b-hf", 32, 32, 128, "base"),
        ("meta-llama/Llama-2-13b-hf", 40, 40, 128, "base"),
        ("mistralai/Mistral-7B-v0.1", 32, 8, 128, "base"),
        ("tiiuae/falcon-7b", 32, 1, 64, "base"),
        ("meta-llama/Llama-3.1-8B-Instruct", 32, 8, 128, "chat"),
        ("mistralai/Mistral-7B-Instruct-v0.3", 32, 8, 128, "chat"),
        ("Qwen/Qwen2.5-7B-Instruct", 28, 4, 128, "chat"),
        ("meta-llama/Llama-3.1-70B-Instruct", 80, 8, 128, "chat"),
    ],
)
def test_catalog_has_models_with_real_architecture(
    catalog, hf_repo, layers, kv_heads, head_dim, kind
):
    m = _by_repo(catalog, hf_repo)
    assert (m.num_layers, m.num_kv_heads, m.head_dim, m.kind) == (layers, kv_heads, head_dim, kind)
    assert m.trust_remote_code is False


def test_catalog_has_a_4bit_70b(catalog):
    quantized = [m for m in catalog.models if m.params_b > 60 and m.quantization in ("awq", "gptq")]
    assert quantized
    assert quantized[0].shape.precision in ("awq", "gptq")


def test_llama31_context(catalog):
    assert _by_repo(catalog, "meta-llama/Llama-3.1-8B-Instruct").max_context == 131072


def test_every_recommendation_fits(catalog):
    """The recommended GPU shape must hold the model at the recommended context length."""
    for m in catalog.models:
        rec = m.recommended
        r = size_model(m.shape, rec.gpu, rec.count, max_model_len=rec.max_model_len)
        assert r.verdict in (Verdict.FITS, Verdict.NEEDS_TENSOR_PARALLEL), (m.id, r.explanation)
        assert r.within_budget and r.quantization is None, (m.id, r.explanation)


def test_get(catalog):
    assert catalog.get("llama-2-7b").hf_repo == "meta-llama/Llama-2-7b-hf"
    with pytest.raises(CatalogError, match="no model 'gpt-5'"):
        catalog.get("gpt-5")


def _one(**overrides):
    """A catalog text with one entry, derived from the real first entry."""
    data = yaml.safe_load(DEFAULT_CATALOG_PATH.read_text())
    entry = dict(data["models"][0])
    for k, v in overrides.items():
        if v is ...:
            entry.pop(k)
        else:
            entry[k] = v
    return yaml.safe_dump({"models": [entry]})


def test_valid_single_entry_parses():
    assert parse_catalog(_one()).models[0].id == "llama-2-7b"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"id": "Llama_2"}, "RFC 1123"),
        ({"id": "-x"}, "RFC 1123"),
        ({"hf_repo": "no-owner"}, "owner/name"),
        ({"revision": "main"}, "moving branch"),
        ({"revision": "abc123"}, "commit sha or a tag"),
        ({"revision": "v 1"}, "commit sha or a tag"),
        ({"params_b": 0}, "params_b"),
        ({"dtype": "fp32"}, "dtype"),
        ({"quantization": "int3"}, "quantization"),
        ({"num_layers": 0}, "num_layers"),
        ({"kind": "instruct"}, "kind"),
        ({"recommended": {"gpu": "nvidia-k80", "count": 1, "max_model_len": 1024}}, "unknown GPU"),
        ({"recommended": {"gpu": "nvidia-l4", "count": 1, "max_model_len": 99999}}, "exceeds"),
        ({"license": ...}, "license"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_entry_is_a_catalog_error_naming_the_model(overrides, message):
    with pytest.raises(CatalogError, match=message) as info:
        parse_catalog(_one(**overrides))
    assert f"model {overrides.get('id', 'llama-2-7b')}:" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [", "not valid YAML"),
        ("- a\n- b\n", "'models' list"),
        ("models: []\n", "empty"),
        ("", "'models' list"),
    ],
)
def test_bad_file_shape(text, message):
    with pytest.raises(CatalogError, match=message):
        parse_catalog(text)


def test_duplicate_ids():
    data = yaml.safe_load(_one())
    data["models"].append(dict(data["models"][0]))
    with pytest.raises(CatalogError, match="duplicate"):
        parse_catalog(yaml.safe_dump(data))


def test_tag_revision_accepted():
    assert parse_catalog(_one(revision="v1.0")).models[0].revision == "v1.0"


def test_missing_file(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "nope.yaml")
