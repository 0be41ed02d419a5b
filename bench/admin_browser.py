"""Parts 3 and 4 in the browser: the admin page itself, in headless Chromium, as an admin.

The world is ``tests.support.admin_world`` (fake Kubernetes API, fake GKE API, fake vLLM kept in
step with the cluster's ready pods). The admin console is a real ``streamlit run`` with
``APP_MODE=admin``, as ``k8s/base/webapp-admin.yaml`` deploys it (there under the base URL
path ``/admin``; here the page is the app's root, since ``/admin`` of an admin-only app opens
Streamlit's "Page not found" dialog), behind an IAP JWT signed here with a local key, as
``tests/e2e/test_admin_browser.py`` does. Part 4's chat is a second ``streamlit run`` with
``APP_MODE=chat`` pointed at the world's fake vLLM.

Part 3 grows the world to N GPU nodes and M pods and opens the admin page: once in a new
browser context right after the app started ("cold"), then in new tabs of one context
("warm": cached JS, each tab a new Streamlit session); then once more in a new context on a
second console started as the admin Deployment starts it ("probed": its startup probe, the
script health check, has run the script once, so the router's preload of the heavy imports,
``webapp/admin/warmup.py``, ran before the first admin arrives). An init script times, on the page's
clock, the websocket opening, the node pools table's data arriving, and the pods, GPU nodes
and node pools tables drawn with all their rows (a data grid's ``aria-rowcount``, a static
table's first rows and ``data-total``: see ``_WATCH_JS``). Kubernetes and GKE requests are logged with their time by wrapping the fakes'
``handle``: counted per page load and per periodic status refresh (the status fragment
reruns every 5 s; requests are grouped into refreshes by quiet gaps), and one refresh is
timed from its first request to a newly added pod's row drawn. A what-if page with only the
three tables (``bench/status_only_app.py``) is timed the same way; ``profile_admin_page``
takes a V8 CPU profile of the page open.

Part 4 switches the model from the admin page (pick a model, press Deploy) and takes the
moment the fake cluster marks the new vLLM pod Ready as zero; then (a) when the admin page
shows "Now serving …", and (b) when the chat page, whose user presses Enter as soon as the
fake vLLM lists the new model, shows an answer whose stats name the new model.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import median

NS = "vllm"
ADMIN = "admin@example.com"
AUDIENCE = "/projects/123/global/backendServices/456"
TIMEOUT_MS = 120_000
GAP_S = 0.8  # requests further apart than this belong to different refreshes

#: Records ``window.__marks[name] = {wall: Date.now(), perf: performance.now()}`` the first
#: time a condition holds. Conditions: ``__watch(name, selector, text, minIndex)`` (an
#: element matching ``selector`` at index >= minIndex contains ``text``); for the status
#: tables, ``EXPECT`` = {first column header: rows}: ``seen_<col>`` when that table appears,
#: ``rows_<col>`` when it is drawn with all its rows, ``tables`` when all are. A data grid
#: (``st.dataframe``, the page before issue 12.4) has all its rows when its accessible table
#: reports them (``aria-rowcount``; the canvas draws the visible ones); a static status table
#: (``webapp/ui/html_table.py``, since 12.4) when it stands for all rows (``data-total``) and
#: shows the first ``min(rows, FIRST_ROWS)`` of them (the rest are in the grid on demand).
#: ``__watchRows(name, col, rows)`` marks when the table headed ``col`` has ``rows`` rows.
#: ``page`` when the whole page is drawn: the audit log's header (its last section) on the
#: page before its tabs; the Status tab's last section ("vLLM load") on the tabbed page.
#: Streamlit's websocket is wrapped: ``ws_open`` when it opens (the page has booted),
#: ``data`` when a message containing ``DATA`` arrives (the node pools table, the last of
#: the three, carries the GKE pool name ``default-pool``).
_WATCH_JS = """
(() => {
  const EXPECT = %(expect)s, DATA = %(data)s, FIRST = %(first)s;
  // a data grid's accessible table, or a static status table (webapp/ui/html_table.py)
  const TABLES = 'table[role="grid"], table[data-table]';
  // a grid: all n rows in its aria-rowcount (+1: the header); a static table: n rows in the
  // list it stands for (data-total) and its first min(n, FIRST) rows in the DOM
  const hasRows = (t, n) => t.hasAttribute('data-table')
    ? Number(t.dataset.total) === n && t.querySelectorAll('tbody tr').length === Math.min(n, FIRST)
    : Number(t.getAttribute('aria-rowcount')) === n + 1;
  const marks = window.__marks = {};
  const watches = window.__watches = [];
  const mark = (name) => {
    if (!(name in marks)) marks[name] = {wall: Date.now(), perf: performance.now()};
  };
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('open', () => mark('ws_open'));
      this.addEventListener('message', (ev) => {
        if (!DATA || 'data' in marks || !(ev.data instanceof ArrayBuffer)) return;
        if (new TextDecoder('latin1').decode(ev.data).includes(DATA)) mark('data');
      });
    }
  };
  const check = () => {
    for (const w of watches) {
      if (w.name in marks) continue;
      const els = document.querySelectorAll(w.selector);
      for (let i = w.minIndex; i < els.length; i++) {
        if (els[i].textContent.includes(w.text)) { mark(w.name); break; }
      }
    }
    const cols = Object.keys(EXPECT);
    if (!cols.length || 'tables' in marks) return;
    for (const t of document.querySelectorAll(TABLES)) {
      const th = t.querySelector('th');
      const col = th ? th.textContent.trim() : '';
      if (!(col in EXPECT)) continue;
      mark('seen_' + col);
      if (hasRows(t, EXPECT[col])) mark('rows_' + col);
    }
    if (cols.every(c => ('rows_' + c) in marks)) mark('tables');
  };
  const rowWatches = [];
  const checkRows = () => {
    for (const w of rowWatches) {
      if (w.name in marks) continue;
      for (const t of document.querySelectorAll(TABLES)) {
        const th = t.querySelector('th');
        if (th && th.textContent.trim() === w.col && hasRows(t, w.rows)) mark(w.name);
      }
    }
  };
  window.__watchRows = (name, col, rows) => { rowWatches.push({name, col, rows}); checkRows(); };
  window.__watch = (name, selector, text, minIndex) => {
    watches.push({name, selector, text, minIndex: minIndex || 0});
    check();
  };
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') window.__lastEnter = Date.now();
  }, true);
  window.__watch('title', 'h1', 'Admin console');
  window.__watch('signed_in', '[data-testid="stCaptionContainer"]', 'Signed in as');
  // the whole page: the audit log's header (its last section) before the page had tabs;
  // since, the open Status tab's last section (a page open draws that tab alone)
  window.__watch('page', 'h2', 'Audit log');
  window.__watch('page', '[role="tabpanel"] h3', 'vLLM load');
  new MutationObserver(() => { check(); if (rowWatches.length) checkRows(); }).observe(document, {
    subtree: true, childList: true, characterData: true, attributes: true,
    attributeFilter: ['aria-rowcount']
  });
})();
"""


def watch_script(expect: dict[str, int] | None = None, data: str = "") -> str:
    """The init script that records marks (see ``_WATCH_JS``)."""
    from webapp.admin.ui.status import FIRST_ROWS

    return _WATCH_JS % {
        "expect": json.dumps(expect or {}),
        "data": json.dumps(data),
        "first": FIRST_ROWS,
    }


# ---------------------------------------------------------------- identity, apps, requests


@dataclass(frozen=True)
class Iap:
    """A local IAP signing key; ``certs_file`` is what the app reads as IAP_CERTS_FILE."""

    signer: object
    certs_file: str

    @classmethod
    def create(cls, tmp: Path) -> Iap:
        from tests.support.identities import iap_keypair

        signer, public_pem = iap_keypair("bench-key")
        path = tmp / "iap-keys.json"
        path.write_text(json.dumps({"bench-key": public_pem}))
        return cls(signer, str(path))

    def headers(self, email: str = ADMIN) -> dict[str, str]:
        """The header IAP puts on every request of a signed-in user."""
        from tests.support.identities import iap_token
        from webapp.access.iap import IAP_HEADER

        return {IAP_HEADER: iap_token(self.signer, AUDIENCE, email)}


#: After the startup probe succeeds, the kubelet's first readiness probe and the Service's
#: endpoints take a moment before an admin can reach the pod; the "probed" load waits this.
PROBE_TO_READY_S = 2.0


@contextlib.contextmanager
def admin_console(
    world, iap: Iap, *, startup_probe: bool = False, root: Path | None = None
) -> Iterator:
    """The admin console (``APP_MODE=admin``) wired to ``world``, admitting ``ADMIN`` via IAP.

    ``startup_probe``: as ``k8s/base/webapp-admin.yaml`` starts it: with Streamlit's script
    health check enabled and called once (its startup probe), then ``PROBE_TO_READY_S``.
    ``root``: run the app of that source tree instead (``bench.common.source_tree``)."""
    from bench.common import streamlit_app

    env = {"APP_MODE": "admin", "ADMIN_EMAILS": ADMIN, "IAP_AUDIENCE": AUDIENCE,
           "IAP_CERTS_FILE": iap.certs_file, **world.env()}  # fmt: skip
    if startup_probe:
        env["STREAMLIT_SERVER_SCRIPT_HEALTH_CHECK_ENABLED"] = "true"
    with streamlit_app(root, **env) as app:
        if startup_probe:
            with urllib.request.urlopen(f"{app.url}/_stcore/script-health-check", timeout=60) as r:
                if r.read() != b"ok":
                    raise RuntimeError("the script health check did not say ok")
            time.sleep(PROBE_TO_READY_S)
        yield app


class _StatusOnlyServer:
    """``streamlit run bench/status_only_app.py`` (the what-if page) with ``env``."""

    def __init__(self, env: dict[str, str], tmp: Path) -> None:
        from bench.common import ROOT
        from tests.support.servers import StreamlitServer

        self.srv = StreamlitServer(env, tmp, script=ROOT / "bench" / "status_only_app.py")
        self.url = self.srv.url

    def __enter__(self) -> _StatusOnlyServer:
        try:
            self.srv.start()
        except RuntimeError:
            self.srv.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.srv.stop()


class RequestLog:
    """Every request the admin console makes to the fake Kubernetes and GKE APIs, timed.

    Wraps ``FakeCluster.handle`` and ``FakeGke.handle`` (the HTTP handlers call them
    through the instance), so nothing in the fakes changes. ``latency_ms``: (Kubernetes,
    GKE) time added before each answer, as a real API's round trip would (the fakes' HTTP
    servers answer each request in a thread of its own, so concurrent requests overlap).
    """

    def __init__(self, fc, gke, latency_ms: tuple[float, float] = (0.0, 0.0)) -> None:
        self.items: list[tuple[float, str]] = []  # (epoch seconds, "list pods", ...)
        self._lock = threading.Lock()
        k8s_handle, gke_handle = fc.handle, gke.handle
        k8s_s, gke_s = (ms / 1000 for ms in latency_ms)

        def k8s(method, path, query, body, ctype):
            self._add(_k8s_call(method, path, query))
            time.sleep(k8s_s)
            return k8s_handle(method, path, query, body, ctype)

        def gke_(method, path, query, body):
            self._add(f"gke {method} {path.rsplit('/', 1)[-1]}")
            time.sleep(gke_s)
            return gke_handle(method, path, query, body)

        fc.handle, gke.handle = k8s, gke_

    def _add(self, call: str) -> None:
        with self._lock:
            self.items.append((time.time(), call))

    def since(self, t0: float, t1: float | None = None) -> list[tuple[float, str]]:
        """The requests made from ``t0`` (epoch s) until ``t1``."""
        with self._lock:
            return [(t, c) for t, c in self.items if t >= t0 and (t1 is None or t < t1)]


def _k8s_call(method: str, path: str, query: dict) -> str:
    """``verb resource`` as the fake counts it (list pods, get pods/log, watch …)."""
    parts = [p for p in path.split("/") if p]
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return f"{method.lower()} {path}"
    name = rest[1] if len(rest) > 1 else None
    resource = "/".join([rest[0], *rest[2:3]])
    if method == "GET":
        verb = (
            "watch" if query.get("watch", [""])[0] in ("true", "1") else "get" if name else "list"
        )
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())
    return f"{verb} {resource}"


def count(calls: list[tuple[float, str]]) -> dict[str, int]:
    """``{"list pods": 1, …}`` in a stable order."""
    out: dict[str, int] = {}
    for _, c in calls:
        out[c] = out.get(c, 0) + 1
    return dict(sorted(out.items()))


def bursts(calls: list[tuple[float, str]], gap: float = GAP_S) -> list[list[tuple[float, str]]]:
    """Split time-ordered requests into groups separated by more than ``gap`` seconds."""
    groups: list[list[tuple[float, str]]] = []
    for item in sorted(calls):
        if groups and item[0] - groups[-1][-1][0] <= gap:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def k8s_lists(calls: dict[str, int]) -> int:
    """Kubernetes list calls among ``calls``."""
    return sum(v for k, v in calls.items() if k.startswith("list "))


def k8s_total(calls: dict[str, int]) -> int:
    """Kubernetes requests (any verb) among ``calls``."""
    return sum(v for k, v in calls.items() if not k.startswith("gke "))


def calls_text(calls: dict[str, int]) -> str:
    """``list pods: 1, …`` for logs and tables."""
    return ", ".join(f"{k}: {v}" for k, v in calls.items()) or "none"


def _populate(fc, nodes: int, pods: int) -> None:
    """Grow the world (2 one-GPU nodes, the vLLM pod) to ``nodes`` GPU nodes and ``pods`` pods,
    the same mix as the module-level part 3 (4-GPU L4 nodes, static pods in 3 namespaces)."""
    have = [n["metadata"]["name"] for n in fc.list("nodes")]
    for i in range(nodes - len(have)):
        fc.add_node(f"gpu-{i:03d}", gpus=4, pool="gpu-pool" if i % 2 else "gpu-pool-b")
    names = [n["metadata"]["name"] for n in fc.list("nodes")]
    for i in range(pods - len(fc.list("pods"))):
        ns = NS if i % 3 == 0 else ("batch" if i % 3 == 1 else "default")
        fc.add_pod(f"worker-{i:04d}", node=names[i % len(names)], namespace=ns, gpus=i % 2)


# ---------------------------------------------------------------- part 3

POOLS_TEXT = "default-pool"  # in the node pools table's data only


@dataclass
class PageLoad:
    """One admin page load: marks in ms after navigation start, and its API requests."""

    # "cold" (first session after the app started, empty browser cache), "probed" (the same
    # after the startup probe ran the script once), "warm" (returning), "alone" (what-if)
    kind: str
    marks: dict[str, float]
    calls: dict[str, int]

    def phase(self, start: str | None, end: str) -> float | None:
        """ms from mark ``start`` (None: navigation start) to mark ``end``."""
        if end not in self.marks or (start is not None and start not in self.marks):
            return None
        return self.marks[end] - (self.marks[start] if start else 0.0)


@dataclass
class PageStatusRow:
    """Admin page loads and periodic status refreshes at one cluster size."""

    nodes: int
    pods: int
    rows: dict[str, int]  # expected rows per table (by first column)
    loads: list[PageLoad] = field(default_factory=list)
    refreshes: list[dict[str, int]] = field(default_factory=list)  # calls per status refresh
    refresh_render_ms: list[float] = field(default_factory=list)  # refresh start → new row drawn

    def of(self, kind: str) -> list[PageLoad]:
        return [x for x in self.loads if x.kind == kind]

    def med(self, kind: str, start: str | None, end: str) -> float | None:
        """Median ms of a phase over the loads of ``kind``."""
        return median([v for x in self.of(kind) if (v := x.phase(start, end)) is not None])

    def seconds(self, kind: str = "warm") -> list[float]:
        """Navigation start → all three tables drawn, per load, in seconds."""
        return [v / 1000 for x in self.of(kind) if (v := x.phase(None, "tables")) is not None]

    @property
    def refresh_calls(self) -> dict[str, int]:
        """The calls of one status refresh (the last seen; the log lists each)."""
        return self.refreshes[-1] if self.refreshes else {}

    @property
    def refresh_constant(self) -> bool:
        return len({json.dumps(r) for r in self.refreshes}) <= 1

    @property
    def load_calls(self) -> dict[str, int]:
        warm = self.of("warm")
        return warm[-1].calls if warm else {}


def _expected_rows(fc) -> dict[str, int]:
    from tests.fakes.k8s_server import ACCEL_LABEL, GPU

    gpu_nodes = [
        n
        for n in fc.list("nodes")
        if ACCEL_LABEL in n["metadata"].get("labels", {}) or GPU in n["status"]["capacity"]
    ]
    # pools: the fake GKE cluster of admin_world has the default pool and the GPU pool
    return {"pod": len(fc.list("pods", NS)), "node": len(gpu_nodes), "pool": 2}


def _admin_context(browser, iap: Iap, expect: dict[str, int]):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    ctx.set_extra_http_headers(iap.headers())
    ctx.add_init_script(watch_script(expect, POOLS_TEXT))
    return ctx


def load_admin_page(ctx, app, reqlog: RequestLog, kind: str) -> PageLoad:
    """Open the admin page in a new tab of ``ctx`` (a new Streamlit session); wait until all
    status tables are drawn; return the PageLoad."""
    page = ctx.new_page()
    try:
        page.set_default_timeout(TIMEOUT_MS)
        t0 = time.time()
        page.goto(f"{app.url}/")
        page.wait_for_function("() => window.__marks && 'tables' in window.__marks")
        if not isinstance(app, _StatusOnlyServer):  # the what-if page has no audit log
            page.wait_for_function("() => 'page' in window.__marks")
        page.wait_for_timeout(1500)  # the page's last requests (log tail, audit) and deltas
        raw = page.evaluate("() => window.__marks")
        t1 = time.time()
    finally:
        page.close()
    marks = {k: v["perf"] for k, v in raw.items()}
    # the API requests of the script run, on the page's clock (Date.now() − performance.now()
    # is the navigation start in epoch ms)
    origin = raw["tables"]["wall"] - raw["tables"]["perf"]
    end = raw["data"]["wall"] / 1000 if "data" in raw else t1
    api = [t for t, _ in reqlog.since(t0, end)]
    if api:
        marks["api_first"], marks["api_last"] = api[0] * 1000 - origin, api[-1] * 1000 - origin
    return PageLoad(kind, marks, count(reqlog.since(t0, t1)))


def run_status_page(
    browser,
    sizes: list[tuple[int, int]],
    loads: int,
    log,
    before: Path | None = None,
    latency_ms: tuple[float, float] = (0.0, 0.0),
) -> list:
    """Per size: a fresh world and console; one cold load (new browser context), ``loads``
    warm loads (new tabs of one context: browser cache warm, each a new session), then
    ~3 periodic status refreshes of an open page, their requests counted.

    ``before``: another source tree of the app (``bench.common.source_tree``, the page before
    a change): a second console runs it on the same world, and its warm loads ("before")
    alternate with this tree's, in the same browser context, so both see the same load.
    ``latency_ms``: see ``RequestLog``."""
    from tests.support.admin_world import admin_world

    rows = []
    for nodes, pods in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="bench-admin-"))
        iap = Iap.create(tmp)
        with admin_world() as world:
            _populate(world.fc, nodes, pods)
            reqlog = RequestLog(world.fc, world.gke, latency_ms)
            expect = _expected_rows(world.fc)
            row = PageStatusRow(nodes, len(world.fc.list("pods")), expect)
            with admin_console(world, iap) as app:
                cold_ctx = _admin_context(browser, iap, expect)
                try:
                    row.loads.append(load_admin_page(cold_ctx, app, reqlog, "cold"))
                finally:
                    cold_ctx.close()
                ctx = _admin_context(browser, iap, expect)
                try:
                    load_admin_page(ctx, app, reqlog, "fill the cache")
                    _warm_loads(ctx, app, world, iap, reqlog, row, loads, before)
                    _watch_refreshes(ctx, app, world, reqlog, row, log)
                finally:
                    ctx.close()
            with admin_console(world, iap, startup_probe=True) as app:
                probed_ctx = _admin_context(browser, iap, _expected_rows(world.fc))
                try:
                    row.loads.append(load_admin_page(probed_ctx, app, reqlog, "probed"))
                finally:
                    probed_ctx.close()
            if (nodes, pods) == sizes[-1]:
                # the refresh check added a pod: count again
                alone = _expected_rows(world.fc)
                _load_status_only(browser, world, iap, alone, reqlog, row, loads, tmp)
            for x in row.loads:
                log(
                    f"  {nodes} nodes / {row.pods} pods, {x.kind}: ws open "
                    f"{_ms(x.phase(None, 'ws_open'))}, status data {_ms(x.phase(None, 'data'))}, "
                    f"tables {_ms(x.phase(None, 'tables'))}, whole page {_ms(x.phase(None, 'page'))}; "
                    f"{calls_text(x.calls)}"
                )
            rows.append(row)
    return rows


def _warm_loads(ctx, app, world, iap, reqlog, row, loads: int, before: Path | None) -> None:
    """``loads`` returning loads of ``app``; with ``before``, each after one of the old page."""
    if before is None:
        for _ in range(loads):
            row.loads.append(load_admin_page(ctx, app, reqlog, "warm"))
        return
    with admin_console(world, iap, root=before) as old:
        load_admin_page(ctx, old, reqlog, "fill the cache")
        for _ in range(loads):
            row.loads.append(load_admin_page(ctx, old, reqlog, "before"))
            row.loads.append(load_admin_page(ctx, app, reqlog, "warm"))


def _load_status_only(browser, world, iap, expect, reqlog, row, loads: int, tmp: Path) -> None:
    """The what-if: the same tables alone (``bench/status_only_app.py``), warm loads."""
    with _StatusOnlyServer(world.env(), tmp) as alone:
        ctx = _admin_context(browser, iap, expect)
        try:
            load_admin_page(ctx, alone, reqlog, "fill the cache")
            for _ in range(loads):
                row.loads.append(load_admin_page(ctx, alone, reqlog, "alone"))
        finally:
            ctx.close()


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} ms"


def _watch_refreshes(ctx, app, world, reqlog, row: PageStatusRow, log) -> None:
    """Keep one admin page open ~17 s: count the requests of each status refresh, and time
    one refresh that has something new to show (a pod added to the namespace): from its
    first API request to the pods table drawn with the extra row."""
    page = ctx.new_page()
    try:
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(f"{app.url}/")
        page.wait_for_function("() => window.__marks && 'tables' in window.__marks")
        page.wait_for_timeout(2000)  # past the load's own requests
        t0 = time.time()
        page.wait_for_timeout(2000)
        node = world.fc.list("nodes")[0]["metadata"]["name"]
        t_add = time.time()
        world.fc.add_pod("bench-new-pod", node=node, namespace=NS)
        page.evaluate(
            "([n, c, r]) => window.__watchRows(n, c, r)", ["refresh", "pod", row.rows["pod"] + 1]
        )
        drawn = _wait_mark(page, "refresh")["wall"] / 1000
        page.wait_for_timeout(max(0, int((t0 + 16 - time.time()) * 1000)))  # 3 fragment periods
        t1 = time.time()
    finally:
        page.close()
    first = [t for t, c in reqlog.since(t_add, drawn) if c == "list pods"]
    if first:
        row.refresh_render_ms.append((drawn - first[0]) * 1000)
    for group in bursts(reqlog.since(t0, t1)):
        calls = count(group)
        if not k8s_total(calls):
            continue
        row.refreshes.append(calls)
        log(f"  status refresh: {calls_text(calls)}")
    took = row.refresh_render_ms[-1] if first else None
    log(f"  refresh with a new pod: first request -> row drawn {_ms(took)}")


# ---------------------------------------------------------------- part 4


@dataclass
class BrowserSwitchRun:
    """One switch from the admin page; times in s after the new pod turned Ready."""

    target: str
    outcome: str = ""
    admin_done: float | None = None  # (a) admin page shows "Now serving …"
    chat_answer: float | None = None  # (b) chat answer naming the new model is drawn
    switch_done: float | None = None  # the switch thread's result (audit entry)
    served: float | None = None  # the fake vLLM lists the new model
    enter: float | None = None  # the chat user pressed Enter
    chat_404: bool = False  # the chat's first request named the old model
    total: float | None = None  # Deploy click → admin page shows done


@dataclass
class BrowserSwitchRow:
    """Part 4 in the browser."""

    ready_delay_s: float
    runs: list[BrowserSwitchRun] = field(default_factory=list)

    def med(self, attr: str) -> float | None:
        return median([getattr(r, attr) for r in self.runs if getattr(r, attr) is not None])

    def worst(self, attr: str) -> float | None:
        vals = [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]
        return max(vals) if vals else None


def _served(url: str) -> list[str]:
    with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as r:
        return [m["id"] for m in json.load(r)["data"]]


def _wait_mark(page, name: str) -> dict:
    page.wait_for_function(f"() => window.__marks && {json.dumps(name)} in window.__marks")
    return page.evaluate(f"() => window.__marks[{json.dumps(name)}]")


def run_switch_page(browser, runs: int, log, ready_delay: float = 3.0) -> BrowserSwitchRow:
    """In-place switches mistral-7b ↔ llama-2-7b from the admin page; a chat page follows."""
    from bench.common import streamlit_app
    from tests.e2e.test_admin_browser import choose_model
    from tests.fakes.openai_server import Script
    from tests.support.admin_world import admin_world
    from webapp.admin.audit import AuditLog

    row = BrowserSwitchRow(ready_delay)
    tmp = Path(tempfile.mkdtemp(prefix="bench-switch-"))
    iap = Iap.create(tmp)
    with admin_world() as world:
        world.fc.ready_delay = ready_delay  # the new pod takes a while, as vLLM loading does
        world.llm.set_script(Script(n_tokens=8))
        with admin_console(world, iap) as admin_app, streamlit_app(LLM_URL=world.llm.url) as chat:
            audit = AuditLog.from_url(admin_app.env["DATABASE_URL"])
            actx = browser.new_context(viewport={"width": 1280, "height": 900})
            cctx = browser.new_context(viewport={"width": 1280, "height": 900})
            try:
                actx.set_extra_http_headers(iap.headers())
                for ctx in (actx, cctx):
                    ctx.add_init_script(watch_script())
                apage, cpage = actx.new_page(), cctx.new_page()
                for p in (apage, cpage):
                    p.set_default_timeout(TIMEOUT_MS)
                cpage.goto(chat.url)
                cpage.get_by_test_id("stChatInputTextArea").wait_for()
                _chat(cpage, "warm-up", world.fc.served_models(NS)[0], "warm")
                apage.goto(f"{admin_app.url}/")
                apage.get_by_text("Pods in vllm").wait_for()
                for i in range(runs):
                    target = "mistral-7b" if i % 2 == 0 else "llama-2-7b"
                    run = _switch_once(world, apage, cpage, audit, target, i, choose_model)
                    row.runs.append(run)
                    log(
                        f"  run {i + 1} -> {target}: {run.outcome}; after Ready: admin page "
                        f"{_s(run.admin_done)}, chat answer {_s(run.chat_answer)} (switch done "
                        f"{_s(run.switch_done)}, vLLM lists it {_s(run.served)}, Enter "
                        f"{_s(run.enter)}, 404 first: {run.chat_404}); whole switch "
                        f"{_s(run.total)}"
                    )
            finally:
                actx.close()
                cctx.close()
    return row


def _s(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} s"


def _chat(page, text: str, model: str, name: str) -> dict:
    """Send ``text``; wait until an answer whose stats name ``model`` is drawn; its mark."""
    base = page.evaluate(
        "() => document.querySelectorAll('[data-testid=\"stChatMessage\"]').length"
    )
    page.evaluate(
        "([n, t, i]) => window.__watch(n, '[data-testid=\"stChatMessage\"]', t, i)",
        [name, f"· {model}", base + 1],
    )
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    return _wait_mark(page, name)


def _switch_once(world, apage, cpage, audit, target: str, i: int, choose_model):
    fc, llm = world.fc, world.llm
    run = BrowserSwitchRun(target)
    ready: dict[str, float] = {}
    got = threading.Event()

    def watch() -> None:
        if fc.wait_for(lambda f: f.served_models(NS) == [target], timeout=120):
            ready["t"] = time.time()
        got.set()

    choose_model(apage, target)
    apage.evaluate(
        "([n, t]) => window.__watch(n, '[data-testid=\"stAlert\"]', t)",
        [f"done{i}", f"Now serving {target}"],
    )
    threading.Thread(target=watch, daemon=True).start()
    t_click = time.time()
    apage.get_by_role("button", name=f"Deploy {target}").click()
    while not got.is_set():
        apage.wait_for_timeout(5)  # keeps Playwright's event loop turning
    if "t" not in ready:
        run.outcome = "new pod never Ready"
        return run
    t_ready = ready["t"]
    while target not in _served(llm.url):  # the Service now reaches the new pod
        time.sleep(0.005)
    run.served = time.time() - t_ready
    n_requests = len(llm.requests)
    chat_mark = _chat(cpage, f"hello after switch {i}", target, f"answer{i}")
    run.chat_answer = chat_mark["wall"] / 1000 - t_ready
    admin_mark = _wait_mark(apage, f"done{i}")
    run.admin_done = admin_mark["wall"] / 1000 - t_ready
    run.total = admin_mark["wall"] / 1000 - t_click
    enter = cpage.evaluate("() => window.__lastEnter || null")
    run.enter = None if enter is None else enter / 1000 - t_ready
    gen = [r for r in llm.requests[n_requests:] if r["path"].endswith("/completions")]
    if gen:
        run.chat_404 = (gen[0]["body"] or {}).get("model") != target
    deadline = time.time() + 10  # the thread writes the audit entry just after the result
    while not run.outcome and time.time() < deadline:
        for e in audit.recent(10):
            if e.action == "switch.result" and e.at.timestamp() >= t_click:
                run.outcome = e.result
                run.switch_done = e.at.timestamp() - t_ready
                break
        else:
            time.sleep(0.05)
    return run


# ---------------------------------------------------------------- profiling (--profile-admin)


def profile_admin_page(browser, size: tuple[int, int], loads: int, log) -> dict[str, float]:
    """Where the browser's main thread spends a returning admin's page open: a V8 CPU profile
    (Chrome DevTools Protocol) per load; inclusive ms per script file (a file counts once per
    sample if any of its functions is on the stack), mean over ``loads``. Not timed: the
    profiler slows the page down."""
    from collections import Counter

    from tests.support.admin_world import admin_world

    nodes, pods = size
    total: Counter = Counter()
    with admin_world() as world:
        _populate(world.fc, nodes, pods)
        reqlog = RequestLog(world.fc, world.gke)
        expect = _expected_rows(world.fc)
        iap = Iap.create(Path(tempfile.mkdtemp(prefix="bench-profile-")))
        with admin_console(world, iap) as app:
            ctx = _admin_context(browser, iap, expect)
            try:
                load_admin_page(ctx, app, reqlog, "fill the cache")
                for _ in range(loads):
                    page = ctx.new_page()
                    cdp = ctx.new_cdp_session(page)
                    cdp.send("Profiler.enable")
                    cdp.send("Profiler.setSamplingInterval", {"interval": 500})
                    cdp.send("Profiler.start")
                    page.goto(f"{app.url}/")
                    page.wait_for_function("() => window.__marks && 'tables' in window.__marks")
                    total.update(_inclusive_ms(cdp.send("Profiler.stop")["profile"]))
                    page.close()
            finally:
                ctx.close()
    out = {k: v / loads for k, v in total.most_common()}
    for k, v in list(out.items())[:25]:
        log(f"  {v:7.0f} ms  {k}")
    return out


def _inclusive_ms(profile: dict) -> dict[str, float]:
    """ms per script file (hash and extension cut) with a function on the stack, per sample."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    parent = {c: n["id"] for n in profile["nodes"] for c in n.get("children", [])}
    out: dict[str, float] = {}
    deltas = [*profile["timeDeltas"][1:], 0]
    for sample, dt in zip(profile["samples"], deltas, strict=True):
        seen, node = set(), sample
        while node is not None:
            frame = nodes[node]["callFrame"]
            name = frame["url"].rsplit("/", 1)[-1].split(".")[0] or frame["functionName"]
            seen.add(name or "?")
            node = parent.get(node)
        for name in seen:
            out[name] = out.get(name, 0.0) + dt / 1000
    return out
