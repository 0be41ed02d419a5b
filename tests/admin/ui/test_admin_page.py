"""AppTest for the admin page against the fake Kubernetes, GKE and vLLM servers over HTTP."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import streamlit as st
from streamlit import config
from streamlit.testing.v1 import AppTest

from tests.fakes.dcgm_server import FakeDcgm, FakeDcgmServer, GpuSpec
from tests.fakes.gke_server import gpu_pool
from tests.fakes.k8s_server import arg_value, pod_args
from tests.support.admin_world import CLUSTER, LOCATION, PROJECT, admin_world, seed_from_manifest
from tests.support.cluster import LLAMA, NS, seed_vllm
from tests.support.html_tables import static_tables
from tests.support.identities import OIDC_SECRETS
from webapp.admin import warmup
from webapp.cluster.k8s import connect
from webapp.cluster.lock import acquire_lock
from webapp.settings import get_settings

APP = str(Path(__file__).resolve().parents[3] / "webapp" / "app.py")
ADMIN = "admin@example.com"


@pytest.fixture
def world():
    """Fake cluster serving llama-2-7b on 2 one-GPU L4 nodes, its vLLM endpoint, GKE."""
    with admin_world() as w:
        yield w


@pytest.fixture
def page(monkeypatch, tmp_path):
    """``page(world, user=..., secrets=..., listen=..., tab=..., **env)`` -> AppTest of the
    router after one run; ``tab`` the admin tab the URL opens (unset: the first, Status);
    ``listen`` is the address Streamlit says it listens on (unset: all interfaces),
    ``hosts`` the Host names it accepts (unset: any)."""
    listening = config.get_option("server.address"), config.get_option("server.allowedHosts")

    def make(world=None, *, user=None, secrets=None, listen=None, hosts=(), tab=None, **env):
        base = {
            "APP_MODE": "admin",
            "ADMIN_EMAILS": ADMIN,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}",
            "K8S_NAMESPACE": NS,
            "HOME": str(tmp_path),
            "LLM_URL": "http://127.0.0.1:9",
        }
        if world is not None:
            base |= world.env()
        for k in ("KUBECONFIG", "IAP_AUDIENCE", "GKE_PROJECT", "GKE_LOCATION", "GKE_CLUSTER", "KUBERNETES_SERVICE_HOST"):  # fmt: skip
            monkeypatch.delenv(k, raising=False)
        for k, v in (base | env).items():
            monkeypatch.setenv(k, str(v))
        get_settings.cache_clear()
        st.cache_resource.clear()  # a fresh job registry and clients per test
        config.set_option("server.address", listen)
        config.set_option("server.allowedHosts", list(hosts))
        at = AppTest.from_file(APP, default_timeout=30)
        at.secrets = OIDC_SECRETS if secrets is None else secrets
        at.user = (
            {"is_logged_in": True, "email": ADMIN, "email_verified": True} if user is None else user
        )
        if tab is not None:
            at.query_params["tab"] = tab  # a link to the tab
        return at.run()

    yield make
    get_settings.cache_clear()
    config.set_option("server.address", listening[0])
    config.set_option("server.allowedHosts", listening[1])


def open_tab(at, label: str):
    """The admin clicks the tab ``label``: the page reruns with that tab's sections (and the
    browser's URL names it, as Streamlit's tab binding does)."""
    at.session_state["tab"] = label
    at.query_params["tab"] = label
    return at.run()


def texts(at) -> str:
    """All visible text of messages, markdown, captions and headers, joined."""
    parts = []
    for kind in ("error", "warning", "info", "success", "markdown", "caption", "header",
                 "subheader", "title"):  # fmt: skip
        parts += [str(e.value) for e in getattr(at, kind)]
    return re.sub(r"\\(.)", r"\1", "\n".join(parts))  # as shown: markdown escapes undone


def run_until(at, predicate, timeout=40.0):
    """Rerun the page (as the fragments would) until ``predicate(at)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        at.run()
        if predicate(at):
            return at
        if time.monotonic() > deadline:
            raise AssertionError("timed out; page shows:\n" + texts(at))
        time.sleep(0.2)


def table(at, column):
    """The first table that has ``column``: a data grid (AppTest does not expose dataframe
    keys), else a static status table (its cells as the strings shown)."""
    tables = [d.value for d in at.dataframe] + [t for t, _ in static_tables(at).values()]
    return next((t for t in tables if column in t.columns), None)


# ---------------------------------------------------------------- access


def test_admin_sees_status_tables(world, page):
    at = page(world)
    assert not at.exception, at.exception
    assert f"Signed in as **{ADMIN}** (via OIDC)" in texts(at)
    pods = table(at, "recent events")
    assert list(pods["phase"]) == ["Running"] and list(pods["model"]) == [LLAMA.name]
    nodes = table(at, "GPUs capacity")
    assert sorted(nodes["node"]) == ["gpu-a", "gpu-b"]
    assert list(nodes["requested"]).count("1") == 1 and set(nodes["ready"]) == {"yes"}
    assert f"requested: GPUs asked for by pods of {NS}." in texts(at)
    pools = table(at, "machine type").set_index("pool")
    assert pools.loc["gpu-pool", "autoscaling"] == "0..2"
    assert pools.loc["gpu-pool", "nodes"] == "2"
    assert "Running" in [m.label for m in at.metric]


@pytest.mark.parametrize("annotated", [True, False], ids=["annotated", "args-only"])
def test_status_names_the_served_model_of_a_manifest_deployment(page, annotated):
    """After `kubectl apply -k`, before any switch by the console (issue 9.1, 9.5)."""
    with admin_world(seed=lambda fc: seed_from_manifest(fc, annotated=annotated)) as world:
        at = page(world)
        assert not at.exception, at.exception
        headline = re.sub(r"\\(.)", r"\1", at.success[0].value)  # the first on the page
        assert headline.startswith(
            "Serving llama-2-7b (meta-llama/Llama-2-7b-hf) on 1 × L4, since "
        ), headline
        assert list(table(at, "recent events")["model"]) == ["llama-2-7b"]
        pools = table(at, "machine type").set_index("pool")
        assert pools.loc["default-pool", "nodes"] == "1"  # a CPU pool: counted, not None
        # the chat endpoint serving something else is said, not hidden
        world.llm.configure(models=["other-model"])
        at.run()
        assert "But the chat endpoint lists other\\-model" in at.warning[0].value


def test_switch_names_the_models_by_their_served_names(page):
    """Heading, progress, audit and result name llama-2-7b, not its hub repo (9.2, 9.5)."""
    with admin_world(seed=lambda fc: seed_from_manifest(fc, annotated=False)) as world:
        at = run_until(_deploy(page(world)), lambda a: "Switched" in texts(a))
        assert "Switch llama-2-7b → mistral-7b" in [h.value.replace("\\", "") for h in at.subheader]
        assert "meta-llama/Llama-2-7b-hf stops first" not in texts(at)
        audit = table(open_tab(at, "Audit log"), "action")
        assert "model_before=llama-2-7b," in audit.iloc[0]["details"]


def serving_pod(world, model: str) -> str:
    """The name of the vLLM pod in the fake cluster that serves ``model``."""
    return next(
        p["metadata"]["name"]
        for p in world.fc.list("pods", NS)
        if arg_value(pod_args(p["spec"]), "--served-model-name") == model
    )


def test_the_page_opens_on_the_status_alone_and_costly_parts_wait_until_asked(world, page):
    """A page open runs the Status tab only (the other tabs run when opened); in it the pod
    log is read and drawn only while its expander is open, the load charts only when
    switched on."""
    at = page(world)
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs] == ["Status", "Models", "Node pools", "Usage", "Audit log"]
    assert not at.header  # the tab names the section
    assert [h.value for h in at.subheader][:3] == ["Pods in vllm", "GPU nodes", "Node pools"]
    assert not any(s.key == "model" for s in at.selectbox)  # the deploy form has not run
    assert [e.label for e in at.expander][0] == "Pod log"
    assert world.fc.request_counts[("get", "pods/log")] == 0
    # no GPU telemetry source here: its turn-on commands wait behind an expander too, so no
    # code block (the browser's syntax highlighter) at page open
    assert not at.code and not at.dataframe  # the status tables are static HTML
    assert sorted(static_tables(at)) == ["nodes", "pods", "pools"]
    assert not at.get("vega_lite_chart")
    at.toggle(key="load_charts").set_value(True).run()
    assert len(at.get("vega_lite_chart")) == 2
    pod = serving_pod(world, LLAMA.name)
    world.fc.pod_logs[(NS, pod)].append("<b>not markup</b> & co")
    at.session_state["pod_log"] = True  # the admin opens the expander
    at.run()
    assert world.fc.request_counts[("get", "pods/log")] == 1
    assert at.selectbox(key="log_pod").value == pod
    (log,) = [h for h in at.html if h.value.startswith("<pre")]
    assert log.value.startswith("<pre") and "vLLM API server" in log.value
    assert "&lt;b&gt;not markup&lt;/b&gt; &amp; co" in log.value  # log text, never HTML


def test_gpu_panel_shows_each_gpu_with_the_pod_using_it(world, page):
    """GPU telemetry on the page: the DCGM exporter (through the API's service proxy, the
    managed source having no credentials here) gives one row per GPU, joined with the pod
    that holds it; a GPU whose memory is nearly full is a warning."""
    pod = serving_pod(world, LLAMA.name)
    gpus = [
        GpuSpec(node="gpu-a", util=87, fb_used=22_400, fb_free=91, pod=pod, namespace=NS,
                container="vllm"),
        GpuSpec(node="gpu-b", util=0, fb_used=0, fb_free=22_491),
    ]  # fmt: skip
    with FakeDcgmServer(FakeDcgm(gpus=gpus)) as dcgm:
        world.fc.proxy_to("gpu-operator", "nvidia-dcgm-exporter", dcgm.url)
        at = page(world)
    assert not at.exception, at.exception
    rows = table(at, "utilization %").set_index("node")
    assert rows.loc["gpu-a", "pod"] == f"{NS}/{pod}" and rows.loc["gpu-a", "serving"] == LLAMA.name
    assert rows.loc["gpu-a", "utilization %"] == 87 and rows.loc["gpu-b", "utilization %"] == 0
    assert "memory" in " ".join(w.value for w in at.warning)
    assert table(at, "machine type") is not None  # the rest of the page goes on


def test_gpu_panel_without_a_source_says_how_to_turn_one_on(world, page):
    at = page(world)
    assert not at.exception, at.exception
    shown = texts(at)
    assert "GPU telemetry is unavailable" in shown
    assert table(at, "GPUs capacity") is not None and table(at, "machine type") is not None
    at.session_state["gpu_turn_on"] = True  # the admin opens "How to turn it on"
    assert any("--monitoring=SYSTEM,DCGM" in c.value for c in at.run().code)


def test_usage_is_read_only_when_opened_and_shows_the_saved_answers(world, page):
    at = page(world)
    assert "Usage" not in [h.value for h in at.subheader]  # not read at page open
    open_tab(at, "Usage")
    assert not at.exception, at.exception
    assert "No answers were saved in the last day." in texts(at)


def test_an_open_pod_log_stays_open_through_a_failed_read(world, page):
    """Streamlit forgets widgets a run leaves out: the expander is drawn in every status run."""
    at = page(world)
    at.session_state["pod_log"] = True
    assert at.run().selectbox(key="log_pod").value == serving_pod(world, LLAMA.name)
    world.fc.forbid("list", "pods")
    at.run()
    assert "list on pods" in texts(at)
    assert "log_pod" not in [s.key for s in at.selectbox]
    world.fc.forbidden.clear()
    assert at.run().selectbox(key="log_pod").value == serving_pod(world, LLAMA.name)


def test_not_configured_says_how_to_connect(page):
    at = page(None)
    assert not at.exception, at.exception
    shown = texts(at)
    assert "No Kubernetes cluster is connected" in shown and "KUBECONFIG" in shown
    assert "The chat keeps working" in shown
    assert "GKE is not configured" in shown and "GKE_PROJECT" in shown
    shown = texts(open_tab(at, "Models"))
    assert "Verdict: FITS" in shown  # sizing works without a cluster
    assert not any(b.key == "deploy" for b in at.button)
    assert "GKE is not configured" in texts(open_tab(at, "Node pools"))


def test_chat_still_served_when_nothing_is_configured(page):
    at = page(None, APP_MODE="all")
    assert not at.exception, at.exception
    assert "Admin console" not in texts(at)  # the chat page is the default


@pytest.mark.parametrize(("mode", "warms"), [("admin", True), ("chat", False), ("all", False)])
def test_router_preloads_the_admin_imports_in_admin_mode_only(page, monkeypatch, mode, warms):
    preloaded = []
    monkeypatch.setattr(warmup, "preload", preloaded.append)
    at = page(None, APP_MODE=mode)
    assert not at.exception, at.exception
    assert bool(preloaded) is warms


@pytest.mark.parametrize(
    ("user", "env", "expected"),
    [
        ({"is_logged_in": True, "email": "eve@example.com"}, {}, "Not allowed"),
        ({"is_logged_in": False}, {}, "Please log in"),
        ({"is_logged_in": True, "email": ADMIN}, {"ADMIN_EMAILS": ""}, "admin page is off"),
    ],
)
def test_non_admins_see_only_a_refusal(world, page, user, env, expected):
    at = page(world, user=user, **env)
    assert not at.exception, at.exception
    shown = texts(at)
    assert expected in shown
    assert "Deploy a model" not in shown and not at.dataframe


LOCAL = {"LOCAL_ADMIN": "true", "ADMIN_EMAILS": ""}  # no allowlist needed on a laptop
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")  # the Host names make run accepts


def test_local_admin_on_loopback_acts_and_is_audited_as_the_kubeconfig_user(world, page):
    """``LOCAL_ADMIN=true make run``: the kubeconfig's current user (the fake cluster's is
    "fake") is the admin, and every action is audited under that name, marked local."""
    world.gke.op_polls = 2
    at = page(
        world, listen="127.0.0.1", hosts=LOOPBACK_NAMES, secrets={}, user={"is_logged_in": False},
        **LOCAL,
    )  # fmt: skip
    assert not at.exception, at.exception
    assert "Signed in as **kubeconfig:fake**, a local admin (LOCAL_ADMIN)" in texts(at)
    assert table(at, "recent events") is not None  # the status of the cluster is shown
    open_tab(at, "Node pools")
    at.number_input(key="resize_size").set_value(0)
    next(b for b in at.button if b.label == "Resize").click().run()
    run_until(at, lambda a: "done." in texts(a))
    assert world.gke.node_counts["gpu-pool"] == 0
    audit = table(open_tab(at, "Audit log"), "action")
    assert list(audit["result"])[:2] == ["done", "started"]
    assert set(audit["who"]) == {"kubeconfig:fake (local)"}


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        (None, "it listens on 0.0.0.0 (all network interfaces)"),  # Streamlit's default
        ("0.0.0.0", "it listens on 0.0.0.0 (all network interfaces)"),
        ("192.168.1.20", "it listens on 192.168.1.20"),
    ],
)
def test_local_admin_is_refused_with_the_reason_off_loopback(world, page, address, shown):
    at = page(world, listen=address, hosts=LOOPBACK_NAMES, **LOCAL)
    assert not at.exception, at.exception
    refusal = " ".join(e.value for e in at.error)
    assert "LOCAL_ADMIN works only when the app listens on 127.0.0.1" in refusal
    assert shown in refusal
    assert "Deploy a model" not in texts(at) and not at.dataframe
    assert not world.gke.operations  # nothing was done


@pytest.mark.parametrize(
    ("world_on", "env", "kind", "expected"),
    [
        (True, {"IAP_AUDIENCE": "/projects/1/global/backendServices/2"}, "error",
         "LOCAL_ADMIN=true and IAP_AUDIENCE are both set"),
        (True, {"hosts": ()}, "error",
         "LOCAL_ADMIN works only when the app accepts loopback names alone"),
        (False, {}, "warning",
         "LOCAL_ADMIN names you after your kubeconfig's current user, but no kubeconfig was found"),
    ],
)  # fmt: skip
def test_local_admin_without_a_usable_identity_says_why(world, page, world_on, env, kind, expected):
    env = {"hosts": LOOPBACK_NAMES} | env
    at = page(world if world_on else None, listen="127.0.0.1", **LOCAL, **env)
    assert not at.exception, at.exception
    assert expected in " ".join(e.value for e in getattr(at, kind))
    assert "Deploy a model" not in texts(at)


def test_does_not_fit_blocks_deploy(world, page):
    at = page(world, tab="Models")
    at.selectbox(key="deploy_model").set_value("llama-3-1-70b-instruct").run()
    at.selectbox(key="gpu_type_llama-3-1-70b-instruct").set_value("nvidia-tesla-t4").run()
    at.number_input(key="count_llama-3-1-70b-instruct").set_value(1).run()
    at.number_input(key="mml_llama-3-1-70b-instruct").set_value(131072).run()
    shown = texts(at)
    assert "Verdict: DOES_NOT_FIT" in shown and "GB" in shown
    assert "Deploy blocked" in shown
    assert at.button(key="deploy").disabled


def test_a_model_the_pool_can_never_schedule_is_blocked_with_what_to_change(world, page):
    """llama-2-13b on 2 x L4, but the nodes of gpu-pool (GKE) have one L4 each: neither
    strategy is offered, the deploy button is disabled and the reason says what to change."""
    at = page(world, tab="Models")
    at.selectbox(key="deploy_model").set_value("llama-2-13b").run()
    assert at.number_input(key="count_llama-2-13b").value == 2
    assert not at.exception, at.exception
    shown = texts(at)
    assert "Verdict: NEEDS_TENSOR_PARALLEL(2)" in shown  # sizing alone would allow it
    assert (
        "Deploy blocked: Nodes of gpu-pool have 1 × L4; llama-2-13b needs 2 on one node. "
        "Choose 1 GPU(s) with a quantized or smaller variant, or create a pool with 2 GPUs "
        "per node (g2-standard-24)."
    ) in shown
    assert not any(r.key == "strategy" for r in at.radio)
    assert at.button(key="deploy").disabled
    at.number_input(key="count_llama-2-13b").set_value(1).run()  # fp8 on one L4 fits
    assert "Deploy blocked" not in texts(at) and not at.button(key="deploy").disabled


def _deploy(at, model="mistral-7b"):
    """Deploy ``model`` from the Models tab (opened first, as the admin would)."""
    open_tab(at, "Models")
    at.selectbox(key="deploy_model").set_value(model).run()
    at.number_input(key=f"mml_{model}").set_value(4096).run()
    assert not at.button(key="deploy").disabled
    return at.button(key="deploy").click().run()


@pytest.mark.parametrize(
    ("tab", "lists"),
    [
        ("Status", {"pods": 1, "nodes": 1, "events": 1}),
        ("Models", {"pods": 1, "nodes": 1, "events": 1}),  # the deploy form's strategy
        ("Node pools", {"nodes": 1}),  # live node counts
        ("Usage", {"nodes": 1}),  # the GPUs for the default GPU-hours
        ("Audit log", {}),
    ],
)
def test_a_page_run_reads_only_for_its_open_tab(world, page, tab, lists):
    """Each tab's run reads the cluster once, and only for what it shows; only the status
    asks the chat endpoint which models it serves (its headline)."""
    at = page(world, tab=tab)
    if tab == "Models":
        at.selectbox(key="deploy_model").set_value("mistral-7b").run()
    world.fc.reset_counts()
    asked = len(world.llm.requests)
    at.run()
    assert not at.exception, at.exception
    made = {k[1]: n for k, n in world.fc.request_counts.items() if k[0] == "list"}
    assert made == lists
    assert ("Pods in" in texts(at)) is (tab == "Status")
    models = [r for r in world.llm.requests[asked:] if r["path"].endswith("/v1/models")]
    assert len(models) == (tab == "Status")


def _gke_pool_lists(world) -> int:
    return sum(1 for r in world.gke.requests if r["path"].endswith("/nodePools"))


@pytest.mark.parametrize("tab", ["Status", "Node pools"])
def test_the_node_pool_list_is_read_once_per_refresh_period_not_per_run(world, page, tab):
    """A GKE list takes a few hundred ms: page runs within ADMIN_STATUS_REFRESH_S of the last
    list (a reopened page, a status refresh, another admin) show it without asking GKE; a
    change made from the page is shown as GKE has it next (``node_pools_cache``)."""
    at = page(world, tab=tab, ADMIN_STATUS_REFRESH_S="600")
    listed = _gke_pool_lists(world)
    assert listed >= 1 and "gpu-pool" in list(table(at, "machine type")["pool"])
    at.run()  # the page run again (a refresh, a click)
    other = AppTest.from_file(APP, default_timeout=30)  # another admin, same process
    other.secrets, other.user, other.query_params["tab"] = at.secrets, at.user, tab
    for again in (at, other.run()):
        assert not again.exception and "gpu-pool" in list(table(again, "machine type")["pool"])
    assert _gke_pool_lists(world) == listed


def test_switch_in_place_succeeds_and_is_audited(world, page):
    at = page(world)
    old_pod = serving_pod(world, LLAMA.name)
    at = _deploy(at)
    assert not at.exception, at.exception
    run_until(at, lambda a: "Switched" in texts(a))
    assert world.fc.served_models(NS) == ["mistral-7b"]
    assert "Now serving mistral-7b" in texts(at)
    at = open_tab(at, "Status")
    at.session_state["pod_log"] = True  # the log offered first is the new pod's
    assert at.run().selectbox(key="log_pod").value == serving_pod(world, "mistral-7b") != old_pod
    audit = table(open_tab(at, "Audit log"), "action")
    assert list(audit["action"])[:2] == ["switch.result", "switch.start"]
    assert list(audit["result"])[:2] == ["switched", "started"]
    assert set(audit["who"]) == {ADMIN}


def test_the_deploy_forms_entries_are_kept_while_another_tab_is_open(world, page):
    """Only the open tab runs and Streamlit forgets the widgets a run does not draw: the
    entries are kept for when the tab is opened again (``webapp.ui.entries``)."""
    at = page(world, tab="Models")
    at.selectbox(key="deploy_model").set_value("mistral-7b").run()
    at.number_input(key="mml_mistral-7b").set_value(2048).run()
    at.number_input(key="chunk_mistral-7b").set_value(16).run()
    at = open_tab(open_tab(at, "Status"), "Audit log")  # two other tabs, one after the other
    assert not at.exception and not at.number_input  # the form is not drawn meanwhile
    at = open_tab(at, "Models")
    assert not at.exception, at.exception
    assert at.selectbox(key="deploy_model").value == "mistral-7b"
    assert at.number_input(key="mml_mistral-7b").value == 2048
    assert at.number_input(key="chunk_mistral-7b").value == 16


def test_the_usage_period_is_kept_while_another_tab_is_open(world, page):
    at = page(world, tab="Usage")
    at.radio(key="usage_period").set_value(at.radio(key="usage_period").options[-1]).run()
    chosen = at.radio(key="usage_period").value
    at = open_tab(open_tab(at, "Status"), "Usage")
    assert not at.exception and at.radio(key="usage_period").value == chosen


@pytest.mark.parametrize(("chosen", "sent"), [(None, "4"), (16, "16")], ids=["default", "16"])
def test_the_deploy_form_sets_the_tokens_per_streamed_chunk(world, page, chosen, sent):
    """vLLM's --stream-interval: the form's default (ModelSpec's) or the admin's choice
    reaches the new pod; the field says what it does."""
    at = page(world, tab="Models")
    at.selectbox(key="deploy_model").set_value("mistral-7b").run()
    field = at.number_input(key="chunk_mistral-7b")
    assert (field.label, field.value, field.min, field.max) == (
        "Tokens per streamed chunk", 4, 1, 64
    )  # fmt: skip
    assert "--stream-interval" in field.help
    if chosen is not None:
        field.set_value(chosen).run()
    at = run_until(_deploy(at), lambda a: "Switched" in texts(a))
    pod = serving_pod(world, "mistral-7b")
    spec = next(p["spec"] for p in world.fc.list("pods", NS) if p["metadata"]["name"] == pod)
    assert arg_value(pod_args(spec), "--stream-interval") == sent


def test_failing_switch_is_rolled_back_with_reason(world, page):
    world.fc.inject_fault(kind="crash", model="mistralai/Mistral-7B-v0.1")
    at = run_until(_deploy(page(world)), lambda a: "Rolled back" in texts(a))
    shown = texts(at)
    assert "crashed" in shown and f"{LLAMA.name} is served again" in shown
    assert world.fc.served_models(NS) == [LLAMA.name]


def test_blue_green_without_the_green_slot_says_apply_the_manifests(page):
    """The console never creates a Deployment: without the shipped slot vllm-green a
    blue/green switch stops before any change, saying to apply the manifests."""
    with admin_world(seed=lambda fc: seed_vllm(fc, green=False)) as world:
        at = page(world, tab="Models")
        at.selectbox(key="deploy_model").set_value("mistral-7b").run()
        at.number_input(key="mml_mistral-7b").set_value(4096).run()
        at.radio(key="strategy").set_value("blue_green").run()
        at = run_until(at.button(key="deploy").click().run(), lambda a: "stopped" in texts(a))
        assert not at.exception, at.exception
        shown = texts(at)
        assert "The switch stopped: Blue/green needs the Deployment vllm-green" in shown
        assert "apply the manifests" in shown and "Unexpected error" not in shown
        assert world.fc.get("deployments", "vllm-green", NS) is None
        assert world.fc.served_models(NS) == [LLAMA.name]


def test_a_switch_no_node_can_take_is_rolled_back_with_the_reason(world, page):
    """The GKE pool with 2 GPUs per node could grow, but the cluster autoscaler does not add
    a node (NotTriggerScaleUp): after the grace period the switch rolls back by itself."""
    pools = world.gke.pools[(PROJECT, LOCATION, CLUSTER)]
    pools["gpu-pool-2x"] = gpu_pool("gpu-pool-2x", machine_type="g2-standard-24",
                                    accelerator_count=2, autoscaling=(0, 1), initial_node_count=0)  # fmt: skip
    world.fc.set_autoscaler("no_scale_up", message="pod didn't trigger scale-up: 1 in backoff")
    at = page(world, SWITCH_UNSCHEDULABLE_GRACE_S="1", tab="Models")
    at.selectbox(key="deploy_model").set_value("llama-2-13b").run()
    assert at.number_input(key="count_llama-2-13b").value == 2
    at = run_until(_deploy(at, "llama-2-13b"), lambda a: "Rolled back" in texts(a))
    shown = texts(at)
    assert "The switch to llama-2-13b failed: the new pod cannot be scheduled" in shown
    assert "Insufficient nvidia.com/gpu" in shown
    assert "the cluster autoscaler did not add a node (NotTriggerScaleUp: pod didn't" in shown
    assert f"{LLAMA.name} is served again" in shown
    assert world.fc.served_models(NS) == [LLAMA.name]


def test_concurrent_switch_refused_naming_the_holder(world, page):
    acquire_lock(connect(world.fc.kubeconfig_path), NS, "bob@example.com")
    at = _deploy(page(world))
    assert "A model switch by bob@example.com is already running" in texts(at)
    assert world.fc.served_models(NS) == [LLAMA.name]
    audit = table(open_tab(at, "Audit log"), "action")
    assert (audit.iloc[0]["action"], audit.iloc[0]["result"]) == ("switch.start", "refused")


def test_cancel_rolls_back(world, page):
    world.fc.slow_factor = 2000  # loads for minutes: the cancel always lands first
    world.fc.inject_fault(kind="slow", model="mistralai/Mistral-7B-v0.1")
    at = run_until(_deploy(page(world)), lambda a: any(b.key == "cancel_switch" for b in a.button))
    running = "A switch to mistral-7b is under way (started by admin@example.com)."
    assert running in texts(open_tab(at, "Status"))  # said on the Status tab too
    open_tab(at, "Models").button(key="cancel_switch").click().run()
    run_until(at, lambda a: "Rolled back" in texts(a))
    assert "Cancelled" in texts(at)
    assert running not in texts(open_tab(at, "Status"))
    assert "switch.cancel" in list(table(open_tab(at, "Audit log"), "action")["action"])


def test_forbidden_says_what_and_which_permission(world, page):
    world.fc.forbid("patch", "deployments")
    at = run_until(_deploy(page(world)), lambda a: "The switch stopped" in texts(a))
    shown = texts(at)
    assert "not allowed to switch model (patch Deployment vllm/vllm)" in shown
    assert "patch on deployments (apps)" in shown
    assert "Traceback" not in shown


def test_status_read_forbidden_is_a_message(world, page):
    world.fc.forbid("list", "nodes")
    at = page(world)
    assert not at.exception, at.exception
    assert "list on nodes (cluster-wide, a ClusterRole)" in texts(at)


def test_node_pool_resize_follows_the_operation(world, page):
    world.gke.op_polls = 2
    at = page(world, tab="Node pools")
    at.number_input(key="resize_size").set_value(0)
    next(b for b in at.button if b.label == "Resize").click().run()
    run_until(at, lambda a: "done." in texts(a))
    assert world.gke.node_counts["gpu-pool"] == 0
    audit = table(open_tab(at, "Audit log"), "action")
    assert list(audit["action"])[:2] == ["nodepool.resize", "nodepool.resize"]
    assert list(audit["result"])[:2] == ["done", "started"]


def test_node_pool_change_refused_while_gke_busy(world, page):
    world.gke.hold_operations = True
    at = page(world, tab="Node pools")
    at.number_input(key="auto_min").set_value(0)
    at.number_input(key="auto_max").set_value(3)
    next(b for b in at.button if b.label == "Set autoscaling").click().run()
    assert "Setting autoscaling of gpu-pool" in texts(at)
    at.number_input(key="resize_size").set_value(1)
    next(b for b in at.button if b.label == "Resize").click().run()
    assert "Refused:" in texts(at)
    world.gke.finish_all()
    run_until(at, lambda a: "done." in texts(a))


@pytest.mark.parametrize(
    ("name", "expected", "asked_gke"),
    [
        ("gpu/pool", "'gpu/pool' is not a valid node pool name", False),
        ("no-such-pool", "Node pool 'no-such-pool' does not exist in cluster llm-cluster", True),
    ],
)
def test_node_pool_name_problems_are_plain_messages(world, page, name, expected, asked_gke):
    at = page(world, tab="Node pools")
    at.text_input(key="resize_pool").set_value(name)
    next(b for b in at.button if b.label == "Resize").click().run()
    assert not at.exception, at.exception
    shown = texts(at)
    assert f"Refused: {expected}" in shown
    assert "Unexpected error" not in shown and "http" not in shown and "projects/" not in shown
    assert any(r["method"] == "POST" for r in world.gke.requests) is asked_gke
    assert world.gke.node_counts["gpu-pool"] == 1 and not world.gke.operations
    audit = table(open_tab(at, "Audit log"), "action")
    assert (audit.iloc[0]["action"], audit.iloc[0]["result"]) == ("nodepool.resize", "refused")


@pytest.mark.parametrize(("mode", "link"), [("all", True), ("admin", False)])
def test_a_refused_visitor_gets_a_way_back_to_the_chat_when_it_is_served(page, mode, link):
    at = page(None, APP_MODE=mode, ADMIN_EMAILS="")
    if mode == "all":
        at = at.switch_page("admin/ui/page.py").run()
    assert not at.exception, at.exception
    assert "admin page is off" in texts(at)
    links = list(at.get("page_link"))
    assert bool(links) is link
    if link:
        assert links[0].proto.label == "Back to the chat"
        assert links[0].proto.page_script_hash  # resolved to a page the router serves
