"""Dockerfile: hadolint, checkov, the production properties, and its install and start steps
run for real in a clean virtual environment (the image would start: /_stcore/health says ok)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.delivery import dockerfile
from tests.delivery.helpers import ROOT, checkov, failed_checks, tool

pytestmark = pytest.mark.delivery

DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture(scope="module")
def instructions() -> list[dockerfile.Instruction]:
    return dockerfile.parse(DOCKERFILE)


def test_hadolint_is_clean():
    out = subprocess.run(
        [tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    out = subprocess.run([tool("hadolint"), str(bad)], capture_output=True, check=False)
    assert out.returncode != 0


def test_checkov_dockerfile_is_clean():
    report = checkov(DOCKERFILE, "dockerfile")
    assert report["summary"]["passed"] > 10
    failed = failed_checks(report)
    assert not failed, [(f["check_id"], f["check_name"]) for f in failed]


def test_production_properties(instructions):
    ops = [i.op for i in instructions]
    (base,) = [i.value for i in instructions if i.op == "FROM"]
    # digest: test_images.py (pinned, or pending scripts/pin_images.sh)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base

    # Dependencies in their own cached layer: requirements copied and installed before code.
    copies = [i.value for i in instructions if i.op == "COPY"]
    install = next(n for n, i in enumerate(instructions) if "-r requirements.txt" in i.value)
    code = next(n for n, i in enumerate(instructions) if i.op == "COPY" and "webapp" in i.value)
    assert copies[0].startswith("requirements.txt")
    assert install < code

    user = [i.value for i in instructions if i.op == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    assert ops.index("USER") < ops.index("CMD")

    e = dockerfile.env(instructions)
    assert e["PORT"] == "8080"
    assert e["STREAMLIT_SERVER_HEADLESS"] == "true"
    assert e["STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION"] == "true"
    assert e["STREAMLIT_CLIENT_SHOW_ERROR_DETAILS"] == "none"
    assert e["STREAMLIT_SERVER_FILE_WATCHER_TYPE"] == "none"
    assert e["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"

    cmd = dockerfile.exec_form([i.value for i in instructions if i.op == "CMD"][-1])
    assert "${PORT:-8080}" in " ".join(cmd)
    assert "_stcore/health" in " ".join(dockerfile.healthcheck_cmd(instructions))


def test_dockerignore_keeps_secrets_and_venvs_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".git", ".venv*", ".env", "tests", ".streamlit/secrets.toml"):
        assert pattern in ignored


# --- the image's steps, run for real ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 (loopback only)
        return r.status, r.read().decode()


def _build_app_dir(instructions, app: Path) -> None:
    """Do what the COPY lines do (sources relative to the build context = repo root)."""
    for ins in instructions:
        if ins.op != "COPY":
            continue
        src, dest = [w for w in shlex.split(ins.value) if not w.startswith("--")]
        source = ROOT / src
        if source.is_dir():
            shutil.copytree(source, app / dest, dirs_exist_ok=True)
        else:
            shutil.copy2(
                source, app / dest / source.name if dest.endswith((".", "/")) else app / dest
            )


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory, instructions):
    """A fresh venv with the Dockerfile's `pip install` steps run in its WORKDIR copy."""
    root = tmp_path_factory.mktemp("image")
    app = root / "app"
    app.mkdir()
    _build_app_dir(instructions, app)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    pip_steps = [i.value for i in instructions if i.op == "RUN" and i.value.startswith("pip ")]
    assert pip_steps, "no pip install step in the Dockerfile"
    for step in pip_steps:
        # The base image's pip is python -m pip; here: the fresh venv's.
        out = subprocess.run(
            [str(venv / "bin" / "python"), "-m", *shlex.split(step)],
            cwd=app,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
    return venv, app, root


def test_image_steps_start_the_app_in_a_clean_venv(image_venv, instructions):
    venv, app, root = image_venv
    port = _free_port()
    image_env = dockerfile.env(instructions)
    # Only what a container runtime would provide differently here: the venv on PATH instead
    # of the image's /usr/local, a free port (Cloud Run sets PORT the same way), and a
    # private writable directory instead of the container's own /tmp.
    state = root / "tmp"
    state.mkdir()
    env = {
        **image_env,
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "PORT": str(port),
        "HOME": str(state),
        "DATABASE_URL": f"sqlite:///{state}/chat.db",
        "LLM_URL": "http://127.0.0.1:9",
    }
    cmd = dockerfile.exec_form([i.value for i in instructions if i.op == "CMD"][-1])
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        cmd, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        health = f"http://127.0.0.1:{port}/_stcore/health"
        answer = None
        for _ in range(240):  # readiness wait, not a speed check
            if proc.poll() is not None:
                break
            try:
                answer = _get(health)
                break
            except OSError:
                time.sleep(0.5)
        assert answer == (200, "ok"), (root / "server.log").read_text()[-3000:]
        status, page = _get(f"http://127.0.0.1:{port}/")
        assert status == 200 and "<html" in page.lower()

        # The image's HEALTHCHECK command agrees.
        hc = subprocess.run(
            dockerfile.healthcheck_cmd(instructions),
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert hc.returncode == 0, hc.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    # SIGTERM (what Kubernetes and Cloud Run send) stops the server cleanly.
    assert proc.returncode in (0, -signal.SIGTERM)
