#!/usr/bin/env bash
# Create (or complete) the vLLM CPU venv from requirements-vllm.txt.
#
#   scripts/setup_vllm_venv.sh [VENV_DIR]      (default: .venv-vllm)
#
# After the pinned install it removes torchvision/torchaudio/torchcodec: the package
# index only has CUDA builds of them, which fail to load next to CPU torch and then
# break `import transformers`. vLLM serves text-only models without them.
# Ends with an import check so a broken venv fails here, not in the first test.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$repo_root/.venv-vllm}"
python_bin="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
    "$python_bin" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r "$repo_root/requirements-vllm.txt"
"$venv/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
HF_HUB_OFFLINE=1 "$venv/bin/python" -c '
import torch, transformers, vllm
from transformers import LlamaConfig, PreTrainedTokenizerFast  # noqa: F401
print(f"vLLM {vllm.__version__} (torch {torch.__version__}, transformers {transformers.__version__})")
'
