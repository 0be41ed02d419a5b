"""Pytest plugin: real vLLM (CPU build) servers on a tiny local model.

Register with ``pytest_plugins = ["tests.support.vllm_fixtures"]`` in the top conftest.

Fixtures (session scoped):
- ``vllm_chat``: the tiny model served as ``tiny-chat`` with a ChatML-like chat template.
- ``vllm_base``: the same weights served as ``tiny-base`` without a template, so it
  behaves like a base model (``/v1/chat/completions`` answers HTTP 400).

Each yields a :class:`VllmServer` (``url`` without ``/v1``, ``model``, ``max_model_len``).
Servers needed by the session are started together on first use and stopped at the end.

Environment:
- ``ALLOW_SKIP_VLLM=1``: skip (instead of fail) when ``.venv-vllm`` is missing.
- ``VLLM_PYTHON``: interpreter that has vLLM (default ``<repo>/.venv-vllm/bin/python``).
- ``VLLM_START_TIMEOUT``: seconds to wait for ``/health`` (default 600).
- ``VLLM_TEST_CHAT_URL`` / ``VLLM_TEST_BASE_URL``: reuse servers that are already running
  (handy while developing; model name and length are read from ``/v1/models``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO_ROOT / ".models" / "tiny-llama"
CHAT_TEMPLATE_FILE = "chat_template.jinja.txt"
MAX_MODEL_LEN = 1024
VLLM_FIXTURES = ("vllm_chat", "vllm_base")
# Seconds a test that uses a vLLM fixture may take, server start-up included.
VLLM_TEST_TIMEOUT = 900


@dataclass(frozen=True)
class VllmServer:
    """A running OpenAI-compatible vLLM server."""

    url: str  # base URL without /v1, e.g. http://127.0.0.1:41234
    model: str  # served model name
    max_model_len: int
    log_path: Path | None = None
    # when the process was started and when /health first answered 200 (UTC); None if reused
    started_at: datetime | None = None
    ready_at: datetime | None = None

    @property
    def api_url(self) -> str:
        """The OpenAI base URL (``<url>/v1``)."""
        return f"{self.url}/v1"


@dataclass(frozen=True)
class _Spec:
    fixture: str
    served_name: str
    chat_template: bool
    reuse_env: str


SPECS = {
    "vllm_chat": _Spec("vllm_chat", "tiny-chat", True, "VLLM_TEST_CHAT_URL"),
    "vllm_base": _Spec("vllm_base", "tiny-base", False, "VLLM_TEST_BASE_URL"),
}


def vllm_python() -> Path:
    """Return the interpreter of the vLLM venv (``VLLM_PYTHON`` overrides)."""
    return Path(os.environ.get("VLLM_PYTHON") or REPO_ROOT / ".venv-vllm" / "bin" / "python")


def _require_vllm() -> Path:
    python = vllm_python()
    if python.exists():
        return python
    reason = f"vLLM venv missing ({python}); create it with `make vllm-venv`"
    if os.environ.get("ALLOW_SKIP_VLLM") == "1":
        pytest.skip(reason)
    pytest.fail(reason + " (set ALLOW_SKIP_VLLM=1 to skip instead)", pytrace=False)


def build_tiny_model(python: Path, out_dir: Path = MODEL_DIR) -> Path:
    """Build the tiny model with scripts/make_tiny_model.py (a no-op once built)."""
    script = REPO_ROOT / "scripts" / "make_tiny_model.py"
    done = subprocess.run(
        [str(python), str(script), str(out_dir)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if done.returncode != 0:
        pytest.fail(f"building the tiny model failed:\n{done.stderr[-3000:]}", pytrace=False)
    return out_dir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _read_models(url: str) -> tuple[str, int]:
    data = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]
    return data["id"], int(data["max_model_len"])


class _Process:
    """One vLLM server process in its own process group (engine and worker included)."""

    def __init__(self, spec: _Spec, python: Path, model_dir: Path, log_dir: Path) -> None:
        self.spec = spec
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{spec.served_name}.log"
        cmd = [
            str(python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model_dir),
            "--served-model-name",
            spec.served_name,
            "--max-model-len",
            str(MAX_MODEL_LEN),
            "--dtype",
            "float32",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        if spec.chat_template:
            cmd += ["--chat-template", str(model_dir / CHAT_TEMPLATE_FILE)]
        env = {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "TZ": "UTC",  # vLLM logs local time without a zone (tests/cluster/test_loading.py)
        }
        self.started_at = datetime.now(UTC)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO_ROOT,
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float) -> VllmServer:
        """Poll ``/health`` until 200; fail with the log tail on exit or timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"vLLM {self.spec.served_name} exited with {self.proc.returncode} "
                    f"before it was ready; log tail:\n{_tail(self.log_path)}",
                    pytrace=False,
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    ready_at = datetime.now(UTC)
                    return VllmServer(
                        self.url,
                        self.spec.served_name,
                        MAX_MODEL_LEN,
                        self.log_path,
                        self.started_at,
                        ready_at,
                    )
            except httpx.TransportError:
                pass
            time.sleep(1)
        pytest.fail(
            f"vLLM {self.spec.served_name} not healthy after {timeout_s:.0f}s; "
            f"log tail:\n{_tail(self.log_path)}",
            pytrace=False,
        )

    def stop(self) -> None:
        """Terminate the whole process group; kill it if it does not exit in 30 s."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        # Engine/worker children share the group; make sure none outlive the server.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class _Pool:
    """Starts every vLLM server the session needs at once, hands them out on demand."""

    def __init__(self, session: pytest.Session, log_dir: Path) -> None:
        self.session = session
        self.log_dir = log_dir
        self.procs: dict[str, _Process] = {}
        self.ready: dict[str, VllmServer] = {}
        atexit.register(self.stop_all)

    def _wanted(self, first: str) -> list[str]:
        used = {name for item in self.session.items for name in getattr(item, "fixturenames", ())}
        return [first] + [f for f in VLLM_FIXTURES if f in used and f != first]

    def get(self, fixture: str) -> VllmServer:
        """Return the running server for ``fixture``, starting what is needed."""
        if fixture in self.ready:
            return self.ready[fixture]
        spec = SPECS[fixture]
        reuse = os.environ.get(spec.reuse_env)
        if reuse:
            model, max_len = _read_models(reuse.rstrip("/"))
            self.ready[fixture] = VllmServer(reuse.rstrip("/"), model, max_len)
            return self.ready[fixture]
        python = _require_vllm()
        model_dir = build_tiny_model(python)
        for name in self._wanted(fixture):
            if name not in self.procs and not os.environ.get(SPECS[name].reuse_env):
                self.procs[name] = _Process(SPECS[name], python, model_dir, self.log_dir)
        timeout = float(os.environ.get("VLLM_START_TIMEOUT", "600"))
        self.ready[fixture] = self.procs[fixture].wait_ready(timeout)
        return self.ready[fixture]

    def stop_all(self) -> None:
        """Stop every server this pool started."""
        for proc in self.procs.values():
            proc.stop()
        self.procs.clear()


@pytest.fixture(scope="session")
def _vllm_pool(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    pool = _Pool(request.session, tmp_path_factory.mktemp("vllm-logs"))
    yield pool
    pool.stop_all()


@pytest.fixture(scope="session")
def vllm_chat(_vllm_pool: _Pool) -> VllmServer:
    """Real vLLM serving the tiny model as ``tiny-chat`` (chat template on)."""
    return _vllm_pool.get("vllm_chat")


@pytest.fixture(scope="session")
def vllm_base(_vllm_pool: _Pool) -> VllmServer:
    """Real vLLM serving the tiny model as ``tiny-base`` (no chat template: a base model)."""
    return _vllm_pool.get("vllm_base")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that use a vLLM fixture ``vllm`` and give them room to start the server.

    Runs before ``-m`` deselection, so ``-m "not vllm"`` also drops unmarked users.
    """
    for item in items:
        if not set(getattr(item, "fixturenames", ())) & set(VLLM_FIXTURES):
            continue
        if item.get_closest_marker("vllm") is None:
            item.add_marker(pytest.mark.vllm)
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(VLLM_TEST_TIMEOUT))
