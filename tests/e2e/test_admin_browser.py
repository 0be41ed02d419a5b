"""What an admin sees: the admin page in headless Chromium, signed in through IAP headers.

The app runs as a real ``streamlit run`` subprocess; the fake Kubernetes API, the fake
GKE API and the fake vLLM endpoint run in this process. The IAP JWT is signed here with
a local key whose public half the app reads from IAP_CERTS_FILE.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.fakes.dcgm_server import FakeDcgm, FakeDcgmServer, GpuSpec
from tests.fakes.k8s_server import arg_value, pod_args
from tests.support.admin_world import admin_world
from tests.support.browser import open_tab, pick_option
from tests.support.cluster import LLAMA, NS
from tests.support.identities import iap_keypair, iap_token
from tests.support.servers import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port
from webapp.access.iap import IAP_HEADER
from webapp.admin.audit import AuditLog

pytestmark = pytest.mark.e2e

AUDIENCE = "/projects/123/global/backendServices/456"
ADMIN = "admin@example.com"
TIMEOUT_MS = 60_000
SHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"


@pytest.fixture(scope="module")
def iap_key(tmp_path_factory):
    signer, public_pem = iap_keypair("test-key")
    path = tmp_path_factory.mktemp("iap") / "keys.json"
    path.write_text(json.dumps({"test-key": public_pem}))
    return signer, str(path)


@pytest.fixture
def admin_app(streamlit_app, iap_key):
    """The app (chat + admin) wired to fake cluster, GKE and vLLM; yields (app, fakes)."""
    with admin_world() as world:
        app = streamlit_app(
            APP_MODE="all", ADMIN_EMAILS=ADMIN, IAP_AUDIENCE=AUDIENCE, IAP_CERTS_FILE=iap_key[1],
            # the status view re-reads the cluster only when told to (not on its timer), so
            # the tests see what the page redraws after a switch, not a periodic refresh
            ADMIN_STATUS_REFRESH_S="3600", **world.env(),
        )  # fmt: skip
        yield app, world.fc


def open_admin(page, app, signer, email=ADMIN):
    if signer is not None:
        page.set_extra_http_headers({IAP_HEADER: iap_token(signer, AUDIENCE, email)})
    page.goto(f"{app.url}/admin")


def alert(page, text: str):
    """The st.success/warning/error box containing ``text``."""
    return page.get_by_test_id("stAlert").filter(has_text=text)


def choose_model(page, model_id: str) -> None:
    """Choose ``model_id`` in the deploy form, on the Models tab (opened first)."""
    open_tab(page, "Models")
    box = page.get_by_test_id("stSelectbox").filter(has_text="Model").first
    pick_option(page, box, model_id)
    expect(page.get_by_role("button", name=f"Deploy {model_id}")).to_be_visible()


def test_admin_switches_model_and_watches_it_become_ready(admin_app, page, iap_key):
    app, fc = admin_app
    open_admin(page, app, iap_key[0])
    expect(page.get_by_text(f"Signed in as {ADMIN}")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Pods in vllm")).to_be_visible()
    headline = alert(page, "Serving llama-2-7b (meta-llama/Llama-2-7b-hf) on 1 × L4, since")
    expect(headline).to_be_visible()
    page.screenshot(path=str(SHOTS / "admin-status-top.png"))
    expect(page.get_by_text("Deploy a model")).to_have_count(0)  # other tabs run when opened
    choose_model(page, "mistral-7b")
    expect(page).to_have_url(re.compile(r"[?&]tab=Models\b"))  # a reload keeps the tab
    expect(page.get_by_text("Pods in vllm")).to_have_count(0)
    expect(page.get_by_text("Verdict: FITS")).to_be_visible()
    page.get_by_role("button", name="Deploy mistral-7b").click()
    expect(alert(page, "Now serving mistral-7b")).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Switch llama-2-7b → mistral-7b")).to_be_visible()
    assert fc.served_models(NS) == ["mistral-7b"]
    page.reload()
    expect(page.get_by_role("tab", name="Models")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_text("Deploy a model")).to_be_visible(timeout=TIMEOUT_MS)
    # the status, opened again, names the new model
    open_tab(page, "Status")
    expect(alert(page, "Serving mistral-7b (mistralai/Mistral-7B-v0.1) on 1 × L4")).to_be_visible()
    # the status follows at once: the new pod is listed; the pod log, opened, is the new pod's
    new_pod = next(
        p["metadata"]["name"]
        for p in fc.list("pods", NS)
        if arg_value(pod_args(p["spec"]), "--served-model-name") == "mistral-7b"
    )
    log = page.get_by_test_id("stExpander").filter(has_text="Pod log")
    expect(log.get_by_role("combobox", name="Log of pod")).to_have_count(0)  # read on demand
    log.get_by_text("Pod log", exact=True).click()
    expect(log.get_by_role("combobox", name="Log of pod")).to_have_value(new_pod)
    expect(log).to_contain_text("vLLM API server")
    expect(page.get_by_text("is gone (replaced since this list was read)")).to_have_count(0)
    entries = AuditLog.from_url(app.env["DATABASE_URL"]).recent()
    assert [(e.actor, e.action, e.result) for e in entries] == [
        (ADMIN, "switch.result", "switched"),
        (ADMIN, "switch.start", "started"),
    ]
    open_tab(page, "Audit log")  # the same entries, as the admin reads them
    expect(page.get_by_test_id("stDataFrame").locator("td").filter(has_text="switch.result"))\
        .to_have_count(1, timeout=TIMEOUT_MS)  # fmt: skip


STATUS_SCREEN = ROOT / "bench" / "results" / "screens" / "admin-status-tables.png"


def test_status_tables_show_cluster_text_literally_and_every_row_on_demand(
    admin_app, page, iap_key
):
    """Issue 12.4: the status tables are static HTML drawn at once: every cell from the
    cluster shown as text (never markup), the rows needing attention first, and a long
    list's every row in the interactive grid once "Show all" is opened."""
    app, fc = admin_app
    node = fc.list("nodes")[0]["metadata"]["name"]
    for i in range(30):
        fc.add_pod(f"worker-{i:02d}", node=node, namespace=NS, ready=i != 17)
    fc.create(
        "events",
        {"metadata": {"name": "worker-17.probe"},
         "involvedObject": {"kind": "Pod", "name": "worker-17"}, "reason": "Unhealthy",
         "message": "Readiness probe failed: <b>x</b> **y** <img src=x>", "type": "Warning",
         "lastTimestamp": "2099-01-01T00:00:00Z"},
        NS,
    )  # fmt: skip
    open_admin(page, app, iap_key[0])
    pods = page.locator('table[data-table="pods"]')
    expect(pods.locator("tbody tr")).to_have_count(25, timeout=TIMEOUT_MS)
    first = pods.locator("tbody tr").first
    expect(first.locator("td").first).to_have_text("worker-17")  # not ready: first
    expect(first).to_contain_text("Unhealthy: Readiness probe failed: <b>x</b> **y** <img src=x>")
    expect(pods.locator("b, img, strong")).to_have_count(0)
    expect(page.get_by_text("The first 25 of 31 pods, those not ready first.")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(0)  # no grid until asked
    STATUS_SCREEN.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(STATUS_SCREEN))
    page.get_by_text("Show all pods", exact=True).click()
    grid = page.get_by_test_id("stDataFrame").filter(has_text="recent events")
    expect(grid.locator('table[role="grid"]')).to_have_attribute("aria-rowcount", "32")


def test_gpu_panel_shows_each_gpu_with_its_pod_and_a_warning(admin_app, page, iap_key):
    """Issue 13.1: GPU telemetry from the DCGM exporter (through the API's service proxy): one
    row per GPU, joined with the vLLM pod using it, and a warning for nearly full memory."""
    app, fc = admin_app
    pod = next(p["metadata"]["name"] for p in fc.list("pods", NS))
    gpus = [
        GpuSpec(node="gpu-a", util=87, fb_used=21_900, fb_free=590, pod=pod, namespace=NS,
                container="vllm"),
        GpuSpec(node="gpu-b", util=3, fb_used=0, fb_free=22_491),
    ]  # fmt: skip
    with FakeDcgmServer(FakeDcgm(gpus=gpus)) as dcgm:
        fc.proxy_to("gpu-operator", "nvidia-dcgm-exporter", dcgm.url)
        open_admin(page, app, iap_key[0])
        expect(page.get_by_text("Source: DCGM exporter in the cluster.")).to_be_visible(
            timeout=TIMEOUT_MS
        )
        expect(alert(page, "GPU 0 on gpu-a: memory 97.4 % full")).to_be_visible()
        grid = page.get_by_test_id("stDataFrame").filter(has_text="utilization %")
        expect(grid.locator("td").first).to_have_text("gpu-a")  # the grid's accessible table
        cells = grid.locator("td").all_inner_texts()
        row = cells[cells.index("gpu-a") :]
        assert f"{NS}/{pod}" in row[:6] and LLAMA.name in row[:6] and "87" in row[:7]
        assert "gpu-b" in cells
        expect(
            page.get_by_role("tabpanel", name="Status").get_by_text("Node pools")
        ).to_be_visible()


def test_failing_switch_is_rolled_back(admin_app, page, iap_key):
    app, fc = admin_app
    fc.inject_fault(kind="crash", model="mistralai/Mistral-7B-v0.1")
    open_admin(page, app, iap_key[0])
    choose_model(page, "mistral-7b")
    page.get_by_role("button", name="Deploy mistral-7b").click()
    result = alert(page, f"{LLAMA.name} is served again")
    expect(result).to_be_visible(timeout=TIMEOUT_MS)
    expect(result).to_contain_text("Rolled back")
    expect(result).to_contain_text("crashed")
    result.scroll_into_view_if_needed()  # for the screenshot
    assert fc.served_models(NS) == [LLAMA.name]


def test_the_node_pool_forms_entries_survive_another_tab(admin_app, page, iap_key):
    """Typed, not sent: the scaling forms' entries are there when the tab is opened again
    (they were an st.form's, held by the browser until sent and lost on a tab change)."""
    app, _ = admin_app
    open_admin(page, app, iap_key[0])
    open_tab(page, "Node pools")
    panel = page.get_by_role("tabpanel", name="Node pools")
    entries = (("Nodes (0 = scale to zero)", "3"), ("Max nodes", "7"))
    for label, value in entries:
        box = panel.get_by_label(label)
        box.fill(value)
        box.press("Tab")
    open_tab(page, "Status")
    expect(page.get_by_label("Max nodes")).to_have_count(0)  # the tab is not drawn meanwhile
    open_tab(page, "Node pools")
    for label, value in entries:
        expect(panel.get_by_label(label)).to_have_value(value)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "admin-node-pool-forms.png"), full_page=True)


def test_a_sign_in_that_stops_verifying_is_refused_inside_the_fragments(admin_app, page, iap_key):
    """Issue 10.5: the fragments (switch progress with its Cancel, audit log) check the
    identity again on each run. IAP's key is withdrawn while a switch loads: the open page's
    token no longer verifies, Cancel is refused, and the page says to reload."""
    app, fc = admin_app
    fc.slow_factor = 2000  # loads for minutes: the switch is still running at the end
    fc.inject_fault(kind="slow", model="mistralai/Mistral-7B-v0.1")
    open_admin(page, app, iap_key[0])
    choose_model(page, "mistral-7b")
    page.get_by_role("button", name="Deploy mistral-7b").click()
    cancel = page.get_by_role("button", name="Cancel and roll back")
    expect(cancel).to_be_visible(timeout=TIMEOUT_MS)
    keys = Path(iap_key[1])
    good = keys.read_text()
    keys.write_text(json.dumps({"other-key": iap_keypair("other-key")[1]}))
    try:
        stopped = alert(page, "Paused: The IAP token is not valid: unknown signing key. Reload")
        expect(stopped.first).to_be_visible(timeout=TIMEOUT_MS)
        expect(cancel).to_have_count(0)  # the fragment that draws Cancel refuses to run
        page.screenshot(path=str(SHOTS / "admin-sign-in-stopped.png"), full_page=True)
    finally:
        keys.write_text(good)
    actions = [e.action for e in AuditLog.from_url(app.env["DATABASE_URL"]).recent()]
    assert "switch.cancel" not in actions


def test_a_model_the_pool_cannot_schedule_is_blocked_with_what_to_change(admin_app, page, iap_key):
    """2 x L4 for llama-2-13b, but gpu-pool's nodes have one L4 each: the admin reads why
    and what to change, and cannot press Deploy (the running model is never stopped)."""
    app, fc = admin_app
    open_admin(page, app, iap_key[0])
    choose_model(page, "llama-2-13b")
    blocked = alert(page, "Deploy blocked: Nodes of gpu-pool have 1 × L4")
    expect(blocked).to_be_visible(timeout=TIMEOUT_MS)
    expect(blocked).to_contain_text("llama-2-13b needs 2 on one node")
    expect(blocked).to_contain_text("create a pool with 2 GPUs per node (g2-standard-24)")
    expect(page.get_by_role("button", name="Deploy llama-2-13b")).to_be_disabled()
    expect(page.get_by_text("Strategy", exact=True)).to_have_count(0)
    blocked.scroll_into_view_if_needed()  # for the screenshot
    assert fc.served_models(NS) == [LLAMA.name]


@pytest.mark.parametrize(
    ("email", "expected"),
    [("eve@example.com", "Not allowed"), (None, "No IAP identity on this request")],
)
def test_non_admin_cannot_reach_the_page(admin_app, page, iap_key, email, expected):
    app, _ = admin_app
    open_admin(page, app, iap_key[0] if email else None, email or "")
    expect(alert(page, expected)).to_be_visible(timeout=TIMEOUT_MS)
    expect(page.get_by_text("Deploy a model")).to_have_count(0)
    expect(page.get_by_text("Pods in vllm")).to_have_count(0)
    # the navigation lists the admin page only for admins
    expect(page.get_by_test_id("stSidebarNav").get_by_text("Admin")).to_have_count(0)


@pytest.fixture
def run_local(tmp_path):
    """``make run``'s script with LLM_URL set (so no local vLLM), as a person starts it on a
    laptop: ``run_local(**env)`` -> (the app's URL, the script's output file)."""
    procs: list[subprocess.Popen] = []

    def start(**env: str) -> tuple[str, Path]:
        port = free_port()
        unset = ("APP_ADDRESS", "ADMIN_EMAILS", "IAP_AUDIENCE", "KUBERNETES_SERVICE_HOST")
        full = {k: v for k, v in os.environ.items() if k not in unset}
        full |= {"APP_PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}"}
        out = tmp_path / "run_local.out"
        procs.append(
            subprocess.Popen(
                [str(ROOT / "scripts" / "run_local.sh")], cwd=ROOT, env=full | env,
                stdout=out.open("ab"), stderr=subprocess.STDOUT,
            )
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                    return url, out
            except OSError:
                if procs[-1].poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"run_local.sh did not start: {out.read_text()}") from None
                time.sleep(0.2)

    yield start
    for proc in procs:  # the script execs streamlit: this is the app itself
        proc.terminate()
        proc.wait(10)


def test_make_run_gives_a_local_admin_the_admin_page_on_localhost(run_local, page, tmp_path):
    """``LOCAL_ADMIN=true LLM_URL=... make run`` with a kubeconfig: the app listens on
    127.0.0.1, the admin page opens as the kubeconfig's user, and the audit log names them."""
    with admin_world() as world:
        url, out = run_local(LOCAL_ADMIN="true", ADMIN_STATUS_REFRESH_S="3600", **world.env())
        assert f"Admin page: {url}/admin" in out.read_text()
        page.goto(f"{url}/admin")
        signed_in = page.get_by_text("Signed in as kubeconfig:fake, a local admin (LOCAL_ADMIN)")
        expect(signed_in).to_be_visible(timeout=TIMEOUT_MS)
        expect(signed_in).to_contain_text("the audit log names you kubeconfig:fake (local)")
        expect(page.get_by_text("Pods in vllm")).to_be_visible()
        choose_model(page, "mistral-7b")
        page.get_by_role("button", name="Deploy mistral-7b").click()
        expect(alert(page, "Now serving mistral-7b")).to_be_visible(timeout=TIMEOUT_MS)
        assert world.fc.served_models(NS) == ["mistral-7b"]
        entries = AuditLog.from_url(f"sqlite:///{tmp_path / 'app.db'}").recent()
        assert [(e.actor, e.action) for e in entries] == [
            ("kubeconfig:fake (local)", "switch.result"),
            ("kubeconfig:fake (local)", "switch.start"),
        ]
        signed_in.scroll_into_view_if_needed()  # for the screenshot


def test_local_admin_is_refused_with_the_reason_when_make_run_serves_the_network(run_local, page):
    """``APP_ADDRESS=0.0.0.0``: anyone on the network could open the page, so LOCAL_ADMIN
    grants nothing; the menu still lists the admin page, which says why and what to do."""
    with admin_world() as world:
        url, _ = run_local(APP_ADDRESS="0.0.0.0", LOCAL_ADMIN="true", **world.env())  # noqa: S104
        page.goto(url)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Admin").click()
        refusal = alert(page, "LOCAL_ADMIN works only when the app listens on 127.0.0.1")
        expect(refusal).to_be_visible(timeout=TIMEOUT_MS)
        expect(refusal).to_contain_text("it listens on 0.0.0.0 (all network interfaces)")
        expect(page.get_by_text("Pods in vllm")).to_have_count(0)
        expect(page.get_by_text("Deploy a model")).to_have_count(0)


def test_make_run_answers_only_to_loopback_names(run_local, browser):
    """DNS rebinding: a web page whose own name resolves to 127.0.0.1 would drive the local
    admin page with the admin's rights. The app that make run starts refuses its WebSocket."""
    with admin_world() as world:
        url, _ = run_local(LOCAL_ADMIN="true", **world.env())
        port = url.rsplit(":", 1)[1]
        rebinding = browser.browser_type.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1"],
        )
        try:
            evil = rebinding.new_page()
            with evil.expect_websocket() as opened:
                evil.goto(f"http://rebind.test:{port}/admin")
            assert "403" in opened.value.wait_for_event("socketerror", timeout=TIMEOUT_MS)
            expect(evil.get_by_text("Signed in as")).to_have_count(0)
            mine = rebinding.new_page()  # the same browser, under the loopback name
            mine.goto(f"http://localhost:{port}/admin")
            expect(mine.get_by_text("Signed in as kubeconfig:fake")).to_be_visible(
                timeout=TIMEOUT_MS
            )
        finally:
            rebinding.close()
