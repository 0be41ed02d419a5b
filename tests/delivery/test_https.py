"""Optional HTTPS (k8s/components/https): the component adds a managed certificate, an HTTP ->
HTTPS redirect and the Ingress annotations and changes nothing else; the README's by-hand
overlay renders; deploy.sh/setup_gke.sh take DOMAIN / --domain, render it into the overlay,
print the https URL, and refuse anything that is not a DNS name."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from tests.delivery.helpers import (
    CHECKOV_SKIPS,
    K8S,
    K8S_VERSIONS,
    NO_SCHEMA_KINDS,
    OVERLAYS,
    ROOT,
    assert_schemas_valid,
    calls,
    checkov,
    deploy_dry_run,
    dump,
    failed_checks,
    find,
    overlay_with_component,
    printed_commands,
    recording_tools,
    render,
    run_script,
)

pytestmark = pytest.mark.delivery

COMPONENT = K8S / "components" / "https"
PLACEHOLDER = "chat.example.com"
CERT_ANNOTATION = "networking.gke.io/managed-certificates"
FRONTEND_ANNOTATION = "networking.gke.io/v1beta1.FrontendConfig"
HTTPS_KINDS = {"ManagedCertificate", "FrontendConfig"}
DOMAIN = "chat.mycompany.com"


@pytest.fixture(scope="module")
def rendered_https(tmp_path_factory) -> dict[str, list[dict]]:
    """overlay name -> rendered objects with the HTTPS component."""
    base = tmp_path_factory.mktemp("https")
    return {name: render(overlay_with_component(base / name, name, COMPONENT)) for name in OVERLAYS}


def _https_objects(objs: list[dict]) -> tuple[dict, dict, dict]:
    return (
        find(objs, "ManagedCertificate", "webapp-cert"),
        find(objs, "FrontendConfig", "webapp-frontend"),
        find(objs, "Ingress", "webapp"),
    )


# --- the component ------------------------------------------------------------------------


def test_component_is_a_kustomize_component():
    doc = yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert doc["kind"] == "Component"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_component_adds_certificate_redirect_and_ingress_annotations(
    rendered, rendered_https, overlay
):
    cert, frontend, ingress = _https_objects(rendered_https[overlay])
    namespace = ingress["metadata"]["namespace"]

    assert cert["apiVersion"] == "networking.gke.io/v1"
    assert cert["spec"] == {"domains": [PLACEHOLDER]}
    assert frontend["apiVersion"] == "networking.gke.io/v1beta1"
    # No sslPolicy: it would name a Compute Engine policy that has to exist first.
    assert frontend["spec"] == {
        "redirectToHttps": {"enabled": True, "responseCodeName": "MOVED_PERMANENTLY_DEFAULT"}
    }
    for obj in (cert, frontend):
        # The Ingress only finds them in its own namespace.
        assert obj["metadata"]["namespace"] == namespace == "vllm"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "llm-console"

    base_annotations = find(rendered[overlay], "Ingress", "webapp")["metadata"]["annotations"]
    assert ingress["metadata"]["annotations"] == base_annotations | {
        CERT_ANNOTATION: cert["metadata"]["name"],
        FRONTEND_ANNOTATION: frontend["metadata"]["name"],
    }
    assert ingress["metadata"]["annotations"]["kubernetes.io/ingress.global-static-ip-name"] == (
        "llm-chat-ip"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_component_changes_nothing_else(rendered, rendered_https, overlay):
    """Drop what the component adds and the rest is the plain overlay, object for object."""
    stripped = []
    for obj in rendered_https[overlay]:
        if obj["kind"] in HTTPS_KINDS:
            continue
        if obj["kind"] == "Ingress":
            obj = yaml.safe_load(yaml.safe_dump(obj))
            for key in (CERT_ANNOTATION, FRONTEND_ANNOTATION):
                del obj["metadata"]["annotations"][key]
        stripped.append(obj)
    assert stripped == rendered[overlay]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_without_the_component_there_is_no_https(rendered, overlay):
    objs = rendered[overlay]
    assert not [o for o in objs if o["kind"] in HTTPS_KINDS]
    annotations = find(objs, "Ingress", "webapp")["metadata"]["annotations"]
    assert not [k for k in annotations if k.startswith("networking.gke.io/")]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_https_overlay_validates_against_kubernetes_schemas(rendered_https, tmp_path, version):
    # GKE custom resources have no schema: their fields are asserted above.
    no_schema = NO_SCHEMA_KINDS | HTTPS_KINDS
    validated = assert_schemas_valid(
        rendered_https["l4"], tmp_path / "l4-https.yaml", version, no_schema
    )
    assert "ingress/webapp" in validated


def test_https_overlay_passes_checkov(rendered_https, tmp_path):
    path = dump(rendered_https["l4"], tmp_path / "l4-https.yaml")
    report = checkov(path, "kubernetes", CHECKOV_SKIPS)
    failed = failed_checks(report)
    assert report["summary"]["passed"] > 100
    assert not failed, [(f["check_id"], f["resource"], f["check_name"]) for f in failed]


def test_readme_by_hand_overlay_replaces_the_placeholder(tmp_path):
    """The README's snippet (components + domain patch), added to an overlay, renders."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Admin over HTTPS", 1)[1].split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    doc = yaml.safe_load(snippet)
    assert doc["components"] == ["../../components/https"]
    # The snippet's relative paths are those of a directory next to the GPU overlays.
    overlay_dir = K8S / "overlays" / "l4"
    directory = tmp_path / "k8s" / "overlays" / "mine"
    directory.mkdir(parents=True)
    doc["resources"] = [os.path.relpath(overlay_dir, directory)]
    doc["components"] = [os.path.relpath(COMPONENT, directory)]
    doc |= {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    cert, _, ingress = _https_objects(render(directory))
    assert cert["spec"]["domains"] == [DOMAIN]
    assert ingress["metadata"]["annotations"][CERT_ANNOTATION] == "webapp-cert"


# --- deploy.sh / setup_gke.sh -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env_domain", "expected"),
    [
        (["--domain", DOMAIN], None, DOMAIN),
        ([f"--domain={DOMAIN}"], None, DOMAIN),
        ([], DOMAIN, DOMAIN),
        # The flag wins over the environment; DNS names are case-insensitive.
        (["--domain", "Chat.MyCompany.COM"], "other.example.org", DOMAIN),
    ],
    ids=["flag", "flag=", "env", "flag-over-env-lowercased"],
)
def test_deploy_dry_run_with_domain_renders_https(tripwire, tmp_path, args, env_domain, expected):
    overlay_dir = tmp_path / "generated"
    # With DEPLOY_ENV: PROJECT_ID demo-proj, NAMESPACE chat-prod, OVERLAY t4.
    env = {"STATIC_IP_NAME": "prod-ip"}
    if env_domain:
        env["DOMAIN"] = env_domain
    # Same commands as without a domain: HTTPS is all in the applied kustomization.
    out = deploy_dry_run(tripwire, overlay_dir, env, args)

    cert, frontend, ingress = _https_objects(render(overlay_dir))
    assert cert["spec"]["domains"] == [expected]
    assert {o["metadata"]["namespace"] for o in (cert, frontend, ingress)} == {"chat-prod"}
    annotations = ingress["metadata"]["annotations"]
    assert annotations[CERT_ANNOTATION] == "webapp-cert"
    assert annotations[FRONTEND_ANNOTATION] == "webapp-frontend"
    assert annotations["kubernetes.io/ingress.global-static-ip-name"] == "prod-ip"

    # --dry-run shows the kustomization it would apply (its directory is temporary) ...
    assert "components:" in out.stderr
    assert f'value: ["{expected}"]' in out.stderr
    # ... and ends with the https URL, the DNS record and the certificate delay.
    tail = out.stderr[out.stderr.index("==> external IP") :]
    assert f"https://{expected}/" in tail
    assert f"https://{expected}/admin" in tail
    assert f"A record {expected}" in tail
    assert "60 min" in tail
    assert "http://<that IP>" not in tail


def test_deploy_without_domain_stays_http(tripwire, tmp_path):
    overlay_dir = tmp_path / "generated"
    env = {"PROJECT_ID": "p", "OVERLAY_DIR": str(overlay_dir)}
    out = run_script("deploy.sh", ["--dry-run"], env, tripwire)
    assert out.returncode == 0, out.stderr
    objs = render(overlay_dir)
    assert not [o for o in objs if o["kind"] in HTTPS_KINDS]
    assert CERT_ANNOTATION not in find(objs, "Ingress", "webapp")["metadata"]["annotations"]
    assert "components:" not in (overlay_dir / "kustomization.yaml").read_text()
    assert "https://" not in out.stderr
    assert "http://<that IP>/" in out.stderr


def test_deploy_with_domain_is_idempotent(tmp_path):
    """A real run (gcloud/kubectl succeed) twice: the same commands, the same kustomization."""
    bin_dir = recording_tools(tmp_path, 0)
    kustomizations = []
    for run in ("first", "second"):
        overlay_dir = tmp_path / run
        env = {"PROJECT_ID": "p", "DOMAIN": DOMAIN, "OVERLAY_DIR": str(overlay_dir)}
        out = run_script("deploy.sh", [], env, bin_dir)
        assert out.returncode == 0, out.stderr
        kustomizations.append((overlay_dir / "kustomization.yaml").read_text())
    seen = calls(bin_dir)
    first, second = seen[: len(seen) // 2], seen[len(seen) // 2 :]
    assert [c.replace("/first", "/X") for c in first] == [
        c.replace("/second", "/X") for c in second
    ]
    assert not [c for c in seen if " create " in f"{c} " or " delete " in f"{c} "]
    assert kustomizations[0] == kustomizations[1]


def test_setup_dry_run_with_domain_prints_the_address_for_dns(tripwire):
    out = run_script(
        "setup_gke.sh", ["--dry-run", "--domain", DOMAIN], {"PROJECT_ID": "p"}, tripwire
    )
    assert out.returncode == 0, out.stderr
    assert calls(tripwire) == []
    cmds = printed_commands(out.stdout)
    create = cmds.index("gcloud compute addresses create llm-chat-ip --global --project=p")
    describe = cmds.index(
        "gcloud compute addresses describe llm-chat-ip --global --project=p"
        " '--format=value(address)'"
    )
    assert create < describe
    assert f"A record {DOMAIN}" in out.stderr
    assert f"scripts/deploy.sh --domain {DOMAIN}" in out.stderr


def test_setup_with_domain_is_idempotent_when_everything_exists(tmp_path):
    bin_dir = recording_tools(tmp_path, 0)
    out = run_script("setup_gke.sh", [], {"PROJECT_ID": "p", "DOMAIN": DOMAIN}, bin_dir)
    assert out.returncode == 0, out.stderr
    seen = calls(bin_dir)
    assert not [c for c in seen if " create " in f"{c} "], seen
    assert "gcloud compute addresses describe llm-chat-ip --global --project=p" in "\n".join(seen)


def test_setup_without_domain_prints_no_dns_step(tripwire):
    out = run_script("setup_gke.sh", ["--dry-run"], {"PROJECT_ID": "p"}, tripwire)
    assert out.returncode == 0, out.stderr
    assert "A record" not in out.stderr
    assert not [c for c in printed_commands(out.stdout) if "addresses describe" in c]


LONGEST = "a" * 59 + ".com"  # 63 characters: the ManagedCertificate limit

BAD_DOMAINS = [
    "https://chat.example.com",
    "chat.example.com/admin",
    "chat.example.com:443",
    "*.example.com",
    "chat_bot.example.com",
    "-chat.example.com",
    "chat-.example.com",
    "chat..example.com",
    "chat.example.com.",
    "localhost",
    "203.0.113.7",
    "chat example.com",
    "chät.example.com",
    "chat.example.com;reboot",
    "a" * 60 + ".com",  # 64 characters
    "a" * 64 + ".example.com",  # a 64-character label
]


@pytest.mark.parametrize("script", ["deploy.sh", "setup_gke.sh"])
@pytest.mark.parametrize("domain", BAD_DOMAINS)
@pytest.mark.parametrize("via", ["flag", "env"])
def test_invalid_domain_is_refused(tripwire, tmp_path, script, domain, via):
    env = {"PROJECT_ID": "p", "OVERLAY_DIR": str(tmp_path / "g")}
    args = ["--dry-run"]
    if via == "flag":
        args += ["--domain", domain]
    else:
        env["DOMAIN"] = domain
    out = run_script(script, args, env, tripwire)
    assert out.returncode != 0
    assert "DOMAIN is not a DNS name" in out.stderr
    assert "e.g. chat.example.com" in out.stderr  # says what is expected
    assert calls(tripwire) == []
    assert not (tmp_path / "g" / "kustomization.yaml").exists()


@pytest.mark.parametrize("domain", ["x.io", "chat.example.com", "a-b.c-d.example.co.uk", LONGEST])
def test_valid_domains_are_accepted(tripwire, tmp_path, domain):
    env = {"PROJECT_ID": "p", "DOMAIN": domain, "OVERLAY_DIR": str(tmp_path / "g")}
    out = run_script("deploy.sh", ["--dry-run"], env, tripwire)
    assert out.returncode == 0, out.stderr
    cert = find(render(tmp_path / "g"), "ManagedCertificate", "webapp-cert")
    assert cert["spec"]["domains"] == [domain]


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("deploy.sh", ["--dry-run", "--domain"], "--domain needs a value"),
        ("deploy.sh", ["--dry-run", "--domain="], "--domain needs a value"),
        ("setup_gke.sh", ["--domain"], "--domain needs a value"),
        # Only the scripts that can set up HTTPS take the flag.
        ("create_hf_secret.sh", ["--dry-run", "--domain", DOMAIN], "unknown argument: --domain"),
    ],
)
def test_domain_flag_misuse_is_refused(tripwire, script, args, message):
    out = run_script(script, args, {"PROJECT_ID": "p", "HF_TOKEN": "x"}, tripwire)
    assert out.returncode != 0
    assert message in out.stderr
    assert calls(tripwire) == []


@pytest.mark.parametrize("script", ["deploy.sh", "setup_gke.sh"])
def test_help_documents_domain(tripwire, script):
    out = run_script(script, ["--help"], {}, tripwire)
    assert out.returncode == 0
    assert "--domain NAME" in out.stdout
    assert re.search(r"^\s+DOMAIN\s", out.stdout, re.M)
