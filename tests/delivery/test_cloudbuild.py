"""cloudbuild.yaml: validate -> tests -> build -> push -> deploy, substitutions declared, used
consistently and checked against strict patterns before any step runs (the validation script is
run here with bad values), never written into a script's text (only into `env:`), the deploy
commands the issue asks for, and shell steps shellcheck-clean."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib

import pytest
import yaml

from tests.delivery.helpers import K8S, ROOT, find, render, tool

pytestmark = pytest.mark.delivery

# Cloud Build's own substitutions (always defined; SHORT_SHA etc. empty outside triggers).
BUILTINS = {
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "COMMIT_SHA",
    "SHORT_SHA",
    "REVISION_ID",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "TRIGGER_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT",
    "SERVICE_ACCOUNT_EMAIL",
}
# $NAME or ${NAME} not preceded by another $ ($$NAME is bash's, escaped for Cloud Build).
SUBST = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@pytest.fixture(scope="module")
def build() -> dict:
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())


def _texts(build: dict) -> list[str]:
    out = []
    for step in build["steps"]:
        out += [step["name"], *step.get("args", []), step.get("entrypoint", "")]
        out += step.get("env", [])
    return out


def _used(build: dict) -> set[str]:
    return {a or b for text in _texts(build) for a, b in SUBST.findall(text)}


def _step(build: dict, step_id: str) -> dict:
    return next(s for s in build["steps"] if s["id"] == step_id)


def _env(step: dict) -> dict[str, str]:
    return dict(e.split("=", 1) for e in step.get("env", []))


def test_steps_run_in_order_validate_tests_build_push_deploy(build):
    steps = build["steps"]
    assert [s["id"] for s in steps] == ["validate", "tests", "build", "push", "deploy"]
    for prev, step in zip(steps, steps[1:], strict=False):
        assert step["waitFor"] == [prev["id"]]
    assert "waitFor" not in steps[0] or steps[0]["waitFor"] == []
    # No `images:` list: that would push only after the deploy step.
    assert "images" not in build


def test_every_substitution_is_declared_and_every_declared_one_is_used(build):
    declared = set(build["substitutions"])
    used = _used(build)
    assert all(name.startswith("_") for name in declared)
    assert used - BUILTINS == declared, {
        "undeclared": sorted(used - BUILTINS - declared),
        "unused": sorted(declared - used),
    }


def test_substitution_check_catches_an_undeclared_variable(build):
    broken = yaml.safe_load(yaml.safe_dump(build))
    broken["steps"][1]["args"][-1] += "\necho $IMAGE ${_NOPE}"
    used = _used(broken)
    assert {"IMAGE", "_NOPE"} <= used - BUILTINS - set(broken["substitutions"])


def test_test_step_runs_the_suite_with_declared_markers(build):
    script = _step(build, "tests")["args"][-1]
    assert "-r requirements-dev.txt" in script and "pytest" in script
    expr = re.search(r'-m "([^"]+)"', script).group(1)
    markers = {
        m.split(":")[0]
        for m in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
            "ini_options"
        ]["markers"]
    }
    assert set(re.findall(r"not (\w+)", expr)) <= markers


def test_image_tagged_with_commit_and_latest_and_pushed(build):
    step = _step(build, "build")
    script = step["args"][-1]
    assert 'TAG="$${SHORT_SHA:-build-$$BUILD_ID}"' in script
    assert '-t "$$REPO:$$TAG" -t "$$REPO:latest"' in script
    assert _env(step)["REPO"] == "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_AR_REPO}/${_IMAGE_NAME}"
    push = _step(build, "push")["args"]
    assert push[:2] == ["push", "--all-tags"]
    assert push[2] == "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_AR_REPO}/${_IMAGE_NAME}"


def test_deploy_step_cloud_run_and_gke(build):
    step = _step(build, "deploy")
    script = step["args"][-1]
    env = _env(step)
    assert env["LLM_URL"] == "${_LLM_URL}" and env["LLM_NAME"] == "${_LLM_NAME}"
    runs = [c for c in re.split(r"\n\s*(?=gcloud run deploy)", script) if "run deploy" in c]
    chat, admin = (c.split(";;")[0] for c in runs)
    for cmd in (chat, admin):
        for flag in ("--timeout=3600", "--session-affinity", "LLM_URL=$$LLM_URL"):
            assert flag in cmd
        assert "LLM_NAME=$$LLM_NAME" in cmd
    assert "APP_MODE=chat" in chat and "--allow-unauthenticated" in chat
    assert "APP_MODE=admin" in admin and "--no-allow-unauthenticated" in admin
    assert "--allow-unauthenticated" not in admin.replace("--no-allow-unauthenticated", "")

    # GKE: the names it sets must exist in the manifests.
    m = re.search(r"set image \\\s*(deployment/\S+) (deployment/\S+) (\w+)=", script)
    assert m, script
    objs = render(K8S / "overlays" / "l4")
    for ref in m.group(1, 2):
        d = find(objs, "Deployment", ref.split("/")[1])
        names = [c["name"] for c in d["spec"]["template"]["spec"]["containers"]]
        assert m.group(3) in names
        assert f"rollout status {ref}" in script
    assert env["TARGET"] == "${_DEPLOY_TARGET}" and 'case "$$TARGET" in' in script
    assert set(re.findall(r"^\s*(\w+)\)\s*$", script, re.M)) == {"gke", "cloudrun", "none"}


@pytest.mark.parametrize("step_id", ["validate", "tests", "build", "deploy"])
def test_shell_steps_pass_shellcheck(build, tmp_path, step_id):
    step = next(s for s in build["steps"] if s["id"] == step_id)
    assert step["entrypoint"] == "bash" and step["args"][0] == "-c"
    script = step["args"][1]
    # What bash receives after Cloud Build's substitution.
    values = {
        **{b: "x" for b in BUILTINS},
        **{k: v or "x" for k, v in build["substitutions"].items()},
    }
    script = SUBST.sub(lambda m: values[m.group(1) or m.group(2)], script).replace("$$", "$")
    path = tmp_path / f"{step_id}.sh"
    path.write_text("#!/bin/bash\n" + script)
    out = subprocess.run(
        [tool("shellcheck"), str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout


# --- substitutions never reach a shell unchecked -------------------------------------------


def test_no_substitution_is_written_into_a_script(build):
    """Cloud Build pastes substitutions into the text it hands bash: a value such as
    `x"; curl ...` would run. They go through `env:` instead, read as "$$VAR"."""
    for step in build["steps"]:
        if step.get("entrypoint") != "bash":
            continue
        script = step["args"][-1]
        assert not SUBST.findall(script), (step["id"], SUBST.findall(script))


def test_validation_runs_first_and_checks_every_substitution(build):
    validate = _step(build, "validate")
    assert build["steps"][0] is validate and not validate.get("waitFor")
    assert all(s.get("waitFor") for s in build["steps"][1:])  # each waits for the one before
    env = _env(validate)
    checked = {SUBST.fullmatch(v).group(1) for v in env.values()}
    assert checked == set(build["substitutions"])
    script = validate["args"][-1]
    for name in env:
        assert f'check {name} "$${name}" ' in script, name


def _run_validation(build: dict, **overrides: str) -> subprocess.CompletedProcess[str]:
    """The validate step's script, as bash receives it, with the default substitutions and
    ``overrides`` (``_NAME=value``) in its environment."""
    step = _step(build, "validate")
    values = {**build["substitutions"], **overrides}
    env = {
        name: SUBST.sub(lambda m: values[m.group(1) or m.group(2)], value)
        for name, value in _env(step).items()
    }
    script = step["args"][-1].replace("$$", "$")
    return subprocess.run(
        ["bash", "-c", script],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_validation_accepts_the_defaults_and_good_values(build):
    for overrides in (
        {},
        {"_REGION": "europe-west4", "_GKE_LOCATION": "europe-west4-a", "_DEPLOY_TARGET": "none"},
        {"_IMAGE_NAME": "team/web-app_1.0", "_LLM_URL": "https://vllm.internal:8443/v1"},
        {"_LLM_NAME": "meta-llama/Llama-3.1-8B-Instruct", "_DEPLOY_TARGET": "cloudrun"},
    ):
        out = _run_validation(build, **overrides)
        assert out.returncode == 0, (overrides, out.stderr)
        assert "substitutions ok" in out.stdout


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_REGION", "us-central1; curl evil.example"),
        ("_REGION", "$(id)"),
        ("_AR_REPO", "repo name"),
        ("_AR_REPO", "Repo"),
        ("_IMAGE_NAME", "webapp:latest"),
        ("_IMAGE_NAME", "../webapp"),
        ("_DEPLOY_TARGET", "gke && rm -rf /"),
        ("_DEPLOY_TARGET", "GKE"),
        ("_GKE_CLUSTER", 'vllm"cluster'),
        ("_GKE_LOCATION", "us-central1-a-b"),
        ("_NAMESPACE", "vllm\nkube-system"),
        ("_NAMESPACE", "-vllm"),
        ("_RUN_CHAT_SERVICE", "llm_chat"),
        ("_RUN_ADMIN_SERVICE", "x" * 50),
        ("_LLM_URL", "http://vllm:8000@APP_MODE=admin"),
        ("_LLM_URL", "file:///etc/passwd"),
        ("_LLM_URL", "http://vllm:8000/v1,x"),
        ("_LLM_NAME", "model@APP_MODE=admin"),
        ("_LLM_NAME", "a b"),
    ],
)
def test_validation_refuses_a_bad_value_and_names_it(build, name, value):
    out = _run_validation(build, **{name: value})
    assert out.returncode == 1
    assert f"substitution {name}=" in out.stderr
    assert "substitutions ok" not in out.stdout
