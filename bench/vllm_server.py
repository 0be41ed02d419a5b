"""The real vLLM CPU build on the tiny local model, started the way the tests start it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def real_vllm(log) -> Iterator[tuple[str, str]]:
    """Yield ``(base_url, model)`` of a running tiny-chat vLLM; stop its process group after.

    ``VLLM_TEST_CHAT_URL`` reuses a server that is already running.
    """
    from tests.support import vllm_fixtures as vf

    reuse = os.environ.get("VLLM_TEST_CHAT_URL")
    if reuse:
        model, _ = vf._read_models(reuse)
        yield reuse.rstrip("/"), model
        return
    python = vf.vllm_python()
    if not python.exists():
        raise RuntimeError(f"vLLM venv missing ({python}): run `make vllm-venv`")
    model_dir = vf.build_tiny_model(python)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-vllm-"))
    proc = vf._Process(vf.SPECS["vllm_chat"], python, model_dir, log_dir)
    try:
        log(f"  starting vLLM (log {proc.log_path}) …")
        server = proc.wait_ready(float(os.environ.get("VLLM_START_TIMEOUT", "600")))
        yield server.url, server.model
    finally:
        proc.stop()
