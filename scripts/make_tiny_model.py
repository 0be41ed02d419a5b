"""Build a tiny random Llama that the vLLM CPU build can serve, without any download.

Run with the vLLM venv (it has torch, transformers and tokenizers):

    .venv-vllm/bin/python scripts/make_tiny_model.py [OUTPUT_DIR]

The default output is ``<repo>/.models/tiny-llama``. The result is a real Hugging Face
model directory (config, safetensors weights, byte-level BPE tokenizer) with NO chat
template, so vLLM treats it as a base model. A ChatML-like Jinja template is written
next to it as ``chat_template.jinja.txt`` — a name transformers does not auto-load — so a
chat server is started with ``--chat-template <dir>/chat_template.jinja.txt``.

Answers are gibberish (the weights are random); every byte of the protocol is real.
The build is seeded and idempotent: an existing complete build is left untouched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / ".models" / "tiny-llama"
CHAT_TEMPLATE_NAME = "chat_template.jinja.txt"
STAMP_NAME = "tiny-model.json"
SEED = 1234
VOCAB_SIZE = 512
# Bump when the recipe changes, so old builds are rebuilt rather than reused.
RECIPE_VERSION = 2

ROLE_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
SPECIAL_TOKENS = ["<s>", "</s>", "<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]

# ChatML-like: system/user/assistant turns, then an open assistant turn when asked.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Hidden 128 with 2 heads gives head_dim 64: the CPU attention kernel crashes below 32.
MODEL_CONFIG = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}


def training_text() -> list[str]:
    """Return the built-in corpus the tokenizer is trained on (no files, no network).

    Docstrings of a few standard-library modules give enough varied English and code
    for a 512-token vocabulary; the fixed sentences add the chat/ops vocabulary.
    """
    import argparse as _argparse
    import collections
    import json as _json
    import subprocess
    import textwrap
    import typing

    modules = (_argparse, collections, _json, subprocess, textwrap, typing)
    docs = [m.__doc__ or "" for m in modules]
    sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "vLLM serves open models behind an OpenAI-compatible HTTP API.",
        "Hello! How can I help you today? Please explain Kubernetes node pools.",
        "def add(a, b):\n    return a + b\n",
        "GPU memory, KV cache, tokens per second, context length, temperature.",
    ]
    return docs + sentences * 20


def is_built(out_dir: Path) -> bool:
    """Tell whether ``out_dir`` already holds a complete build of this recipe."""
    stamp = out_dir / STAMP_NAME
    if not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()).get("recipe") == RECIPE_VERSION
    except (OSError, ValueError):
        return False


def build_tokenizer(out_dir: Path):
    """Train a byte-level BPE tokenizer and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **ROLE_TOKENS,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=MODEL_CONFIG["max_position_embeddings"],
    )
    fast.save_pretrained(out_dir)
    return fast


def build_model(out_dir: Path, tokenizer) -> None:
    """Save a randomly initialised (seeded) LlamaForCausalLM sized to the tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="float32",
        **MODEL_CONFIG,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir, safe_serialization=True)


def build(out_dir: Path, force: bool = False) -> Path:
    """Build the tiny model into ``out_dir`` (skipped when already built) and return it.

    The model is built in a temporary sibling directory and renamed into place, so two
    test sessions building at once never see (or serve) a half-written model.
    """
    out_dir = out_dir.resolve()
    if is_built(out_dir) and not force:
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / STAMP_NAME).exists():
        raise SystemExit(f"{out_dir} exists and is not a tiny-model build; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-build-", dir=out_dir.parent))
    try:
        tokenizer = build_tokenizer(tmp)
        build_model(tmp, tokenizer)
        (tmp / CHAT_TEMPLATE_NAME).write_text(CHAT_TEMPLATE)
        stamp = {"recipe": RECIPE_VERSION, "seed": SEED, "vocab_size": len(tokenizer)}
        (tmp / STAMP_NAME).write_text(json.dumps(stamp) + "\n")
        if out_dir.exists():
            if is_built(out_dir) and not force:
                return out_dir  # another process finished first
            shutil.rmtree(out_dir)  # an older recipe (it carries our stamp) or --force
        try:
            tmp.rename(out_dir)
        except OSError:
            if not is_built(out_dir):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """Command line entry point: build, then print the model directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--force", action="store_true", help="rebuild even if present")
    args = parser.parse_args(argv)
    out = build(args.output, force=args.force)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
