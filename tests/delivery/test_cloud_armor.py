"""Cloud Armor on the chat backend (issue 10): the BackendConfig names a rate-based policy,
setup_gke.sh creates it (checked values, idempotent) and deploy.sh keeps the two names equal.
A managed engine: we configure it and check the configuration, never imitate it."""

from __future__ import annotations

import shlex

import pytest

from tests.delivery.helpers import (
    OVERLAYS,
    calls,
    deploy_dry_run,
    find,
    printed_commands,
    recording_tools,
    render,
    run_script,
)

pytestmark = pytest.mark.delivery

POLICY = "llm-chat-rate-limit"


def flags(cmd: str) -> dict[str, str]:
    """`--flag=value` words of a printed (shell-quoted) command."""
    return dict(w[2:].partition("=")[::2] for w in shlex.split(cmd) if w.startswith("--"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_chat_backend_names_the_policy_and_the_admin_backend_keeps_iap(rendered, overlay):
    chat = find(rendered[overlay], "BackendConfig", "webapp-chat")["spec"]
    assert chat["securityPolicy"] == {"name": POLICY}
    admin = find(rendered[overlay], "BackendConfig", "webapp-admin")["spec"]
    assert "securityPolicy" not in admin and admin["iap"]["enabled"] is True


def test_setup_dry_run_creates_the_policy_the_manifests_name(rendered, tripwire):
    out = run_script("setup_gke.sh", ["--dry-run"], {"PROJECT_ID": "p"}, tripwire)
    assert out.returncode == 0, out.stderr
    assert calls(tripwire) == []
    cmds = printed_commands(out.stdout)
    create = next(c for c in cmds if c.startswith("gcloud compute security-policies create"))
    name = find(rendered["l4"], "BackendConfig", "webapp-chat")["spec"]["securityPolicy"]["name"]
    assert shlex.split(create)[4] == name
    assert flags(create)["project"] == "p"
    rule = next(c for c in cmds if c.startswith("gcloud compute security-policies rules create"))
    assert shlex.split(rule)[5] == "1000"  # priority: before the default rule
    assert {k: v for k, v in flags(rule).items() if k != "description"} == {
        "security-policy": POLICY,
        "project": "p",
        "src-ip-ranges": "*",
        "action": "throttle",
        "rate-limit-threshold-count": "600",
        "rate-limit-threshold-interval-sec": "60",
        "conform-action": "allow",
        "exceed-action": "deny-429",
        "enforce-on-key": "IP",
    }
    # the policy exists before anything that could deploy an Ingress naming it
    assert cmds.index(create) < cmds.index(rule)


def test_setup_thresholds_and_name_come_from_the_environment(tripwire):
    env = {"PROJECT_ID": "p", "SECURITY_POLICY": "chat-armor", "ARMOR_RATE_LIMIT": "1200",
           "ARMOR_RATE_INTERVAL_S": "120"}  # fmt: skip
    out = run_script("setup_gke.sh", ["--dry-run"], env, tripwire)
    assert out.returncode == 0, out.stderr
    rule = next(
        c
        for c in printed_commands(out.stdout)
        if c.startswith("gcloud compute security-policies rules create")
    )
    f = flags(rule)
    assert (f["security-policy"], f["rate-limit-threshold-count"]) == ("chat-armor", "1200")
    assert f["rate-limit-threshold-interval-sec"] == "120"
    assert "gcloud compute security-policies create chat-armor" in out.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ARMOR_RATE_LIMIT": "0"}, "ARMOR_RATE_LIMIT must be"),
        ({"ARMOR_RATE_LIMIT": "1000001"}, "ARMOR_RATE_LIMIT must be"),
        ({"ARMOR_RATE_LIMIT": "60/min"}, "ARMOR_RATE_LIMIT must be"),
        ({"ARMOR_RATE_INTERVAL_S": "45"}, "ARMOR_RATE_INTERVAL_S must be one of"),
        ({"ARMOR_RATE_INTERVAL_S": "60s"}, "ARMOR_RATE_INTERVAL_S must be one of"),
        ({"SECURITY_POLICY": "Chat_Armor"}, "SECURITY_POLICY must be"),
        ({"SECURITY_POLICY": "x; rm -rf /"}, "SECURITY_POLICY must be"),
    ],
)
def test_setup_refuses_thresholds_cloud_armor_would_not_take(tripwire, env, message):
    out = run_script("setup_gke.sh", ["--dry-run"], {"PROJECT_ID": "p", **env}, tripwire)
    assert out.returncode != 0
    assert message in out.stderr
    assert calls(tripwire) == [] and "security-policies" not in out.stdout


def test_setup_keeps_an_existing_rule_in_line_with_its_settings(tmp_path):
    """Everything exists: the policy is left alone, its rule updated to the settings."""
    bin_dir = recording_tools(tmp_path, 0)
    env = {"PROJECT_ID": "p", "ARMOR_RATE_LIMIT": "900"}
    out = run_script("setup_gke.sh", [], env, bin_dir)
    assert out.returncode == 0, out.stderr
    armor = [c for c in calls(bin_dir) if "security-policies" in c]
    assert [c.split(" --")[0] for c in armor] == [
        f"gcloud compute security-policies describe {POLICY}",
        "gcloud compute security-policies rules describe 1000",
        "gcloud compute security-policies rules update 1000",
    ]
    assert "--rate-limit-threshold-count=900" in armor[-1]


def test_deploy_names_the_policy_setup_made(tripwire, tmp_path):
    overlay_dir = tmp_path / "generated"
    deploy_dry_run(tripwire, overlay_dir, {"SECURITY_POLICY": "chat-armor"})
    bc = find(render(overlay_dir), "BackendConfig", "webapp-chat")
    assert bc["spec"]["securityPolicy"] == {"name": "chat-armor"}


def test_deploy_refuses_a_policy_name_cloud_armor_would_not_take(tripwire):
    env = {"PROJECT_ID": "p", "SECURITY_POLICY": "Bad Name"}
    out = run_script("deploy.sh", ["--dry-run"], env, tripwire)
    assert out.returncode != 0 and "SECURITY_POLICY must be" in out.stderr
