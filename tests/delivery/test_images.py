"""Supply chain, images: every third-party image the repository runs (the Dockerfile's base,
Cloud Build's step images, the vLLM image of every overlay, the Inference Gateway extensions of
k8s/overlays/pools and the admin console's default) is
either pinned to the digest images.lock records (`tag@sha256:...`) or listed there as pending,
waiting for scripts/pin_images.sh, which resolves tags to digests where a registry can be
reached. The script itself is run here against a copy of the repository with a stand-in
`crane` (no registry can be reached from here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.delivery import dockerfile
from tests.delivery.helpers import OVERLAYS, ROOT, SCRIPTS, container, find, render

pytestmark = pytest.mark.delivery

# Our own web app image: a placeholder that deploy.sh / Cloud Build replace (by tag or digest).
OWN_IMAGES = {"llm-console-webapp"}
REF = re.compile(r"(?P<base>[^@\s]+)(?:@(?P<digest>sha256:[0-9a-f]{64}))?")
COPIED = ("Dockerfile", "cloudbuild.yaml", "images.lock", "k8s", "webapp/cluster")


def lock(root: Path = ROOT) -> dict[str, str]:
    """images.lock: image (with tag) -> sha256 digest or "pending"."""
    out = {}
    for line in (root / "images.lock").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            ref, digest = line.split()
            out[ref] = digest
    return out


def image_references(root: Path = ROOT) -> dict[str, list[str]]:
    """where -> the images named there."""
    found: dict[str, list[str]] = {}
    froms = [i.value for i in dockerfile.parse(root / "Dockerfile") if i.op == "FROM"]
    found["Dockerfile"] = [f.split()[0] for f in froms]
    build = yaml.safe_load((root / "cloudbuild.yaml").read_text())
    found["cloudbuild.yaml"] = [s["name"] for s in build["steps"]]
    for overlay in OVERLAYS:
        objs = render(root / "k8s" / "overlays" / overlay)
        found[f"k8s/overlays/{overlay}"] = [
            container(find(objs, "Deployment", d), "vllm")["image"] for d in ("vllm", "vllm-green")
        ]
    # The pooled layout adds the Inference Gateway extensions (endpoint pickers, body router).
    pools = render(root / "k8s" / "overlays" / "pools")
    found["k8s/overlays/pools"] = [
        c["image"]
        for o in pools
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    text = (root / "webapp" / "cluster" / "manifests.py").read_text()
    found["webapp/cluster/manifests.py"] = re.findall(r'^DEFAULT_IMAGE = "([^"]+)"', text, re.M)
    return found


def unpinned(refs: dict[str, list[str]], pins: dict[str, str]) -> list[str]:
    """References neither pinned to images.lock's digest nor pending there."""
    bad = []
    for where, images in refs.items():
        for image in images:
            m = REF.fullmatch(image)
            base, digest = m.group("base"), m.group("digest")
            if base.split(":")[0] in OWN_IMAGES:
                continue
            want = pins.get(base)
            if want is None or (digest or "pending") != want:
                bad.append(f"{where}: {image} (images.lock: {want or 'absent'})")
    return bad


def test_every_image_is_pinned_or_pending():
    refs = image_references()
    assert all(refs.values()), refs
    assert unpinned(refs, lock()) == []


def test_every_locked_image_is_used_and_well_formed():
    pins = lock()
    used = {
        REF.fullmatch(i).group("base") for images in image_references().values() for i in images
    }
    assert set(pins) <= used, f"images.lock names images nothing uses: {set(pins) - used}"
    for ref, digest in pins.items():
        assert ":" in ref.rsplit("/", 1)[-1], f"{ref}: a tag says what the digest is"
        assert digest == "pending" or re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest


@pytest.mark.parametrize(
    ("image", "pins"),
    [
        ("python:3.12-slim", {}),  # not in images.lock
        ("python:3.11.14-slim-bookworm@sha256:" + "b" * 64, {"python:3.11.14-slim-bookworm": "sha256:" + "a" * 64}),
        ("python:3.11.14-slim-bookworm", {"python:3.11.14-slim-bookworm": "sha256:" + "a" * 64}),
    ],
)  # fmt: skip
def test_the_check_flags_an_unpinned_or_wrong_image(image, pins):
    assert unpinned({"Dockerfile": [image]}, pins)


# --- scripts/pin_images.sh --------------------------------------------------------------------


@pytest.fixture
def copy(tmp_path) -> Path:
    """The files pin_images.sh rewrites, copied (plus what the checks read)."""
    repo = tmp_path / "repo"
    for name in COPIED:
        src, dest = ROOT / name, repo / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)
    return repo


def crane(tmp_path: Path, answer: str) -> Path:
    """A PATH directory whose `crane digest REF` prints a digest made from REF and `answer`
    ("bad": not a digest), and records its calls."""
    bin_dir = tmp_path / f"bin-{answer}"
    bin_dir.mkdir()
    body = (
        'echo "not a digest"'
        if answer == "bad"
        else f'printf "sha256:%s\\n" "$(printf "%s" "$2{answer}" | sha256sum | cut -c1-64)"'
    )
    (bin_dir / "crane").write_text(
        f'#!/bin/bash\nprintf "%s\\n" "crane $*" >> "{bin_dir}/calls.log"\n{body}\n'
    )
    (bin_dir / "crane").chmod(0o755)
    return bin_dir


def pin(repo: Path, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / "pin_images.sh"), *args],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "REPO_DIR": str(repo)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_pin_images_pins_every_reference_and_repins(copy, tmp_path):
    first = pin(copy, crane(tmp_path, "1"))
    assert first.returncode == 0, first.stderr
    pins = lock(copy)
    assert all(d.startswith("sha256:") for d in pins.values())
    assert unpinned(image_references(copy), pins) == []
    assert pin(copy, tmp_path / "bin-1", "--check").returncode == 0
    dockerfile_from = (copy / "Dockerfile").read_text()
    assert f"FROM python:3.11.14-slim-bookworm@{pins['python:3.11.14-slim-bookworm']}\n" in (
        dockerfile_from
    )
    # the tag moved on: a second run re-pins every reference to the new digest
    second = pin(copy, crane(tmp_path, "2"))
    assert second.returncode == 0, second.stderr
    repinned = lock(copy)
    assert set(repinned.values()).isdisjoint(pins.values())
    assert unpinned(image_references(copy), repinned) == []


def test_pin_images_check_and_dry_run_change_nothing(copy, tmp_path):
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    bin_dir = crane(tmp_path, "1")
    check = pin(copy, bin_dir, "--check")
    assert (check.returncode == 1) is ("pending" in lock(copy).values())
    dry = pin(copy, bin_dir, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [c for c in dry.stdout.splitlines() if c.startswith("+ ")] == [
        f"+ crane digest {ref}" for ref in lock(copy)
    ]
    assert not (bin_dir / "calls.log").exists()
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


def test_pin_images_refuses_an_answer_that_is_no_digest(copy, tmp_path):
    before = (copy / "Dockerfile").read_text()
    out = pin(copy, crane(tmp_path, "bad"))
    assert out.returncode != 0
    assert "not a sha256 digest" in out.stderr
    assert (copy / "Dockerfile").read_text() == before


def test_pin_images_refuses_a_malformed_lock(copy, tmp_path):
    with (copy / "images.lock").open("a") as f:
        f.write("python:3.11 sha256:nothex\n")
    out = pin(copy, crane(tmp_path, "1"))
    assert out.returncode != 0 and "digest must be sha256" in out.stderr
