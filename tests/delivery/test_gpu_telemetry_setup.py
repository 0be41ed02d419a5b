"""scripts/setup_gke.sh turns GPU telemetry on (README "GPU telemetry"): Managed Service for
Prometheus and GKE's managed DCGM metrics on the cluster (at creation, or by update when it
exists), the Monitoring API, and roles/monitoring.viewer for the admin page's Google
service account; --dry-run prints all of it and runs nothing."""

from __future__ import annotations

import shlex

import pytest

from tests.delivery.helpers import calls, printed_commands, recorder, recording_tools, run_script

pytestmark = pytest.mark.delivery

TELEMETRY = ("--enable-managed-prometheus", "--monitoring=SYSTEM,DCGM,DEPLOYMENT")
GSA = "serviceAccount:llm-console-admin@demo-proj.iam.gserviceaccount.com"


def test_dry_run_prints_the_telemetry_commands(tripwire):
    out = run_script("setup_gke.sh", ["--dry-run"], {"PROJECT_ID": "demo-proj"}, tripwire)
    assert out.returncode == 0, out.stderr
    assert calls(tripwire) == []
    cmds = printed_commands(out.stdout)
    enable = next(c for c in cmds if c.startswith("gcloud services enable"))
    assert "monitoring.googleapis.com" in enable.split()
    (create,) = [c for c in cmds if c.startswith("gcloud container clusters create")]
    assert all(flag in create.split() for flag in TELEMETRY)
    (viewer,) = [c for c in cmds if "roles/monitoring.viewer" in c]
    words = shlex.split(viewer)
    assert words[:4] == ["gcloud", "projects", "add-iam-policy-binding", "demo-proj"]
    assert f"--member={GSA}" in words and "--condition=None" in words


def test_an_existing_cluster_gets_telemetry_by_update(tmp_path):
    bin_dir = recording_tools(tmp_path, 0)  # every describe succeeds
    out = run_script("setup_gke.sh", [], {"PROJECT_ID": "demo-proj"}, bin_dir)
    assert out.returncode == 0, out.stderr
    seen = calls(bin_dir)
    assert not [c for c in seen if c.startswith("gcloud container clusters create")]
    updates = [c for c in seen if c.startswith("gcloud container clusters update vllm-cluster")]
    assert [[f for f in TELEMETRY if f in u.split()] for u in updates] == [[t] for t in TELEMETRY]
    assert all("--location=us-central1" in u and "--project=demo-proj" in u for u in updates)
    assert any("roles/monitoring.viewer" in c for c in seen)


def test_a_new_cluster_is_created_with_telemetry_and_not_updated(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(
        "#!/bin/bash\n"
        f'printf "%s\\n" "gcloud $*" >> "{bin_dir}/calls.log"\n'
        'for a in "$@"; do [ "$a" = describe ] && exit 1; done\nexit 0\n'
    )
    (bin_dir / "gcloud").chmod(0o755)
    recorder(bin_dir, "kubectl", 0)
    out = run_script("setup_gke.sh", [], {"PROJECT_ID": "demo-proj"}, bin_dir)
    assert out.returncode == 0, out.stderr
    seen = calls(bin_dir)
    (create,) = [c for c in seen if c.startswith("gcloud container clusters create")]
    assert all(flag in create.split() for flag in TELEMETRY)
    assert not [c for c in seen if c.startswith("gcloud container clusters update")]
