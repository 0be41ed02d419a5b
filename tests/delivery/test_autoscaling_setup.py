"""scripts/setup_gke.sh --gateway and pool autoscaling (issue 14.2): it installs the Custom
Metrics Stackdriver Adapter (k8s/addons: upstream's manifest at a release tag, without the
external metrics API, which KEDA owns) and KEDA's release manifest, and lets both read Cloud
Monitoring through Workload Identity Federation principals; --dry-run prints it all, the
project number is read or given (and checked), a re-run repeats only idempotent commands, and
the versions agree with the CRD schemas the tests validate against."""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.delivery.helpers import K8S, calls, printed_commands, recorder, render, run_script
from tests.support.crd_schemas import CRDS

pytestmark = pytest.mark.delivery

ADDON = K8S / "addons" / "custom-metrics-stackdriver-adapter"
ADDON_COPIES = Path(__file__).parent / "addons"
UPSTREAM = "https://raw.githubusercontent.com/GoogleCloudPlatform/k8s-stackdriver/"
ADAPTER_FILE = (
    "custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model.yaml"
)
ENV = {"PROJECT_ID": "demo-proj", "PROJECT_NUMBER": "123456789012"}
POOL = "workloadIdentityPools/demo-proj.svc.id.goog/subject"


def _member(ksa_ns: str, ksa: str, number: str = "123456789012") -> str:
    return (
        f"--member=principal://iam.googleapis.com/projects/{number}/locations/global/"
        f"{POOL}/ns/{ksa_ns}/sa/{ksa}"
    )


def _grants(commands: list[str]) -> list[str]:
    return [c for c in commands if "roles/monitoring.viewer" in c and "principal://" in c]


def test_dry_run_with_the_project_number_prints_both_installs_and_grants(tripwire):
    out = run_script("setup_gke.sh", ["--dry-run", "--gateway"], ENV, tripwire)
    assert out.returncode == 0, out.stderr
    assert calls(tripwire) == []
    commands = printed_commands(out.stdout, ("+ ", "? "))
    assert not [c for c in commands if "projects describe" in c]
    grants = _grants(commands)
    assert grants == [
        "gcloud projects add-iam-policy-binding demo-proj --role=roles/monitoring.viewer "
        f"{_member('custom-metrics', 'custom-metrics-stackdriver-adapter')} --condition=None --quiet",
        "gcloud projects add-iam-policy-binding demo-proj --role=roles/monitoring.viewer "
        f"{_member('keda', 'keda-operator')} --condition=None --quiet",
    ]
    # each grant follows the install of what it is for
    adapter = commands.index(f"kubectl apply -k {ADDON}")
    keda = next(i for i, c in enumerate(commands) if "kedacore/keda/releases" in c)
    assert adapter < commands.index(grants[0]) < keda < commands.index(grants[1])
    for c in commands:
        subprocess.run(["bash", "-n", "-c", c], check=True)


@pytest.mark.parametrize("number", ["12ab", "0123", "1; rm -rf /", "-5", "1" * 20])
def test_a_bad_project_number_is_refused_before_anything_runs(tripwire, number):
    out = run_script(
        "setup_gke.sh", ["--dry-run", "--gateway"], {**ENV, "PROJECT_NUMBER": number}, tripwire
    )
    assert out.returncode != 0
    assert "PROJECT_NUMBER is not a GCP project number" in out.stderr
    assert "+ " not in out.stdout
    assert calls(tripwire) == []


def _gcloud_printing_the_number(bin_dir: Path, number: str) -> None:
    """gcloud that records its calls and answers `projects describe` with the number."""
    script = bin_dir / "gcloud"
    script.write_text(
        f'#!/bin/bash\nprintf "%s\\n" "gcloud $*" >> "{bin_dir}/calls.log"\n'
        f'[[ "$1 $2" == "projects describe" ]] && echo {number}\nexit 0\n'
    )
    script.chmod(0o755)


def test_the_project_number_is_read_and_a_rerun_repeats_only_idempotent_commands(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder(bin_dir, "kubectl", 0)
    _gcloud_printing_the_number(bin_dir, "987654321")
    env = {"PROJECT_ID": "demo-proj"}
    first = run_script("setup_gke.sh", ["--gateway"], env, bin_dir)
    assert first.returncode == 0, first.stderr
    seen = calls(bin_dir)
    assert "gcloud projects describe demo-proj --format=value(projectNumber)" in seen
    assert [_member("custom-metrics", "custom-metrics-stackdriver-adapter", "987654321") in c
            for c in _grants(seen)] == [True, False]  # fmt: skip
    assert _member("keda", "keda-operator", "987654321") in _grants(seen)[1]
    (bin_dir / "calls.log").unlink()
    again = run_script("setup_gke.sh", ["--gateway"], env, bin_dir)
    assert again.returncode == 0, again.stderr
    # Everything exists: the second run issues the same applies and bindings, no create.
    assert calls(bin_dir) == seen
    tail = seen[seen.index("gcloud projects describe demo-proj --format=value(projectNumber)") :]
    assert [c.split()[1] for c in tail] == ["projects", "apply", "projects", "apply", "projects"]


def test_no_project_number_stops_before_any_grant(tmp_path):
    """gcloud answers nothing: the script says to set PROJECT_NUMBER and grants nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder(bin_dir, "kubectl", 0)
    _gcloud_printing_the_number(bin_dir, "")
    out = run_script("setup_gke.sh", ["--gateway"], {"PROJECT_ID": "demo-proj"}, bin_dir)
    assert out.returncode != 0
    assert "could not read the number of project demo-proj; set PROJECT_NUMBER" in out.stderr
    seen = calls(bin_dir)
    assert seen[-1] == "gcloud projects describe demo-proj --format=value(projectNumber)"
    assert not _grants(seen) and not [c for c in seen if "apply -k" in c or "keda" in c]


# --- what the adapter add-on installs -------------------------------------------------------


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no request log in the test output
        pass


@pytest.fixture
def adapter_objects(tmp_path) -> Iterator[tuple[list[dict], list[dict]]]:
    """k8s/addons/custom-metrics-stackdriver-adapter rendered with the kept upstream copy
    served on a local address in place of the pinned URL (no internet here)."""
    doc = yaml.safe_load((ADDON / "kustomization.yaml").read_text())
    (url,) = doc["resources"]
    assert url.startswith(UPSTREAM) and url.endswith(ADAPTER_FILE)
    tag = url.removeprefix(UPSTREAM).split("/")[0]
    (copy,) = ADDON_COPIES.glob(f"{tag}/*.yaml")
    serve = tmp_path / "serve"
    shutil.copytree(copy.parent, serve / tag / Path(ADAPTER_FILE).parent)
    (serve / tag / Path(ADAPTER_FILE).parent / copy.name).rename(serve / tag / ADAPTER_FILE)
    handler = functools.partial(_Quiet, directory=str(serve))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        local = tmp_path / "addon"
        local.mkdir()
        doc["resources"] = [f"http://127.0.0.1:{server.server_port}/{url.removeprefix(UPSTREAM)}"]
        (local / "kustomization.yaml").write_text(yaml.safe_dump(doc))
        yield render(local), [d for d in yaml.safe_load_all(copy.read_text()) if d]
    finally:
        server.shutdown()
        server.server_close()


def _names(objs: list[dict]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objs}


def test_the_adapter_is_upstreams_release_without_the_external_metrics_api(adapter_objects):
    rendered, upstream = adapter_objects
    external = ("APIService", "v1beta1.external.metrics.k8s.io")
    assert external in _names(upstream)
    assert _names(rendered) == _names(upstream) - {external}
    apis = {o["spec"]["group"] for o in rendered if o["kind"] == "APIService"}
    assert apis == {"custom.metrics.k8s.io"}
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in upstream}
    for obj in rendered:
        assert obj == by_name[(obj["kind"], obj["metadata"]["name"])]  # nothing else changed


def test_the_adapter_runs_as_the_account_the_script_grants(adapter_objects, tripwire):
    rendered, _ = adapter_objects
    (deployment,) = [o for o in rendered if o["kind"] == "Deployment"]
    namespace = deployment["metadata"]["namespace"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert ("ServiceAccount", account) in _names(rendered)
    assert "--use-new-resource-model=true" in deployment["spec"]["template"]["spec"][
        "containers"][0]["command"]  # fmt: skip
    out = run_script("setup_gke.sh", ["--dry-run", "--gateway"], ENV, tripwire)
    assert _member(namespace, account) in _grants(printed_commands(out.stdout))[0]


def test_keda_installed_is_the_release_whose_schemas_the_tests_use(tripwire):
    out = run_script("setup_gke.sh", ["--dry-run", "--gateway"], ENV, tripwire)
    (apply,) = [c for c in printed_commands(out.stdout) if "kedacore/keda" in c]
    version = apply.split("/releases/download/")[1].split("/")[0]
    assert apply.endswith(f"/keda-{version.removeprefix('v')}.yaml")
    assert [p.name for p in CRDS.glob("keda-*")] == [f"keda-{version}"]
    readme = (ADDON_COPIES / "README.md").read_text()
    assert [f"`{p.name}/`" in readme for p in ADDON_COPIES.iterdir() if p.is_dir()] == [True]


def test_the_readme_names_the_versions_installed(tripwire):
    """README "Autoscaling a pool" names the adapter's tag and KEDA's version that are used."""
    readme = (K8S.parent / "README.md").read_text()
    section = readme.split("**Autoscaling a pool.**")[1].split("**What each fleet action")[0]
    (url,) = yaml.safe_load((ADDON / "kustomization.yaml").read_text())["resources"]
    assert url.removeprefix(UPSTREAM).split("/")[0] in section
    out = run_script("setup_gke.sh", ["--dry-run", "--gateway"], ENV, tripwire)
    (apply,) = [c for c in printed_commands(out.stdout) if "kedacore/keda" in c]
    assert f"KEDA** ({apply.split('/releases/download/')[1].split('/')[0]}," in section
    for name in ("vllm-pools", "roles/monitoring.viewer", "custom-metrics-stackdriver-adapter"):
        assert name in section
