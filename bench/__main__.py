"""``python -m bench [--quick] [--parts ...]``: run the benchmarks, print Markdown, draw a PNG.

Parts: stream (1. streaming overhead, scripted fake), vllm (1. on the real vLLM CPU
build), concurrency (2.), concurrency-ws (2b., the same without the browser: Python clients
of Streamlit's websocket protocol), replicas (2d., N sessions on one app process against 2N
on two behind HAProxy, PostgreSQL shared), status (3., module level), status-page (3., the admin page in
Chromium), switch (4., module level), switch-page (4., admin page + chat page in Chromium).
``--stream-interval N [N ...]``: parts stream, concurrency-ws and replicas run once per N,
the scripted fake sending N tokens per SSE chunk like vLLM's ``--stream-interval`` (default 1,
as in the recorded runs; the manifests ship 4). ``python -m bench.goals``: issue 12's goal
rows at N = 1 and 4 in one run. Writes ``bench/results/latest.md``
and ``bench/results/summary.png``; ``bench/RESULTS.md`` is the recorded full run.
Not part of ``make test``: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench import report
from bench.common import ROOT, chromium, machine

PARTS = (
    "stream", "vllm", "concurrency", "concurrency-ws", "replicas", "status", "status-page",
    "switch", "switch-page",
)  # fmt: skip
BROWSER_PARTS = {"stream", "vllm", "concurrency", "status-page", "switch-page"}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _config(quick: bool) -> dict:
    if quick:
        return {
            "lengths": [256, 2048], "runs": 1, "levels": [1, 8], "conc_tokens": 256,
            "sizes": [(10, 60), (50, 300)], "refreshes": 3, "polls": [2.0], "switch_runs": 1,
            "vllm_runs": 1, "page_sizes": [(10, 60), (50, 300)], "page_loads": 1,
            "page_switch_runs": 2, "replica_levels": [8],
        }  # fmt: skip
    return {
        "lengths": [256, 2048, 8192], "runs": 3, "levels": [1, 8, 32], "conc_tokens": 512,
        "sizes": [(10, 60), (50, 300)], "refreshes": 10, "polls": [2.0, 0.25],
        "switch_runs": 3, "vllm_runs": 3, "page_sizes": [(2, 1), (10, 60), (50, 300)],
        "page_loads": 3, "page_switch_runs": 4, "replica_levels": [16, 32],
    }  # fmt: skip


def _status_page(browser, cfg: dict, before: str | None, latency: tuple[float, float]) -> list:
    from bench import admin_browser
    from bench.common import source_tree

    run = admin_browser.run_status_page
    if latency != (0.0, 0.0):
        _log(f"  API latency: Kubernetes {latency[0]:.0f} ms, GKE {latency[1]:.0f} ms per request")
    if before is None:
        return run(browser, cfg["page_sizes"], cfg["page_loads"], _log, latency_ms=latency)
    with source_tree(before) as root:
        _log(f"  before: the page at {before}, alternating with this tree's")
        return run(
            browser, cfg["page_sizes"], cfg["page_loads"], _log, before=root, latency_ms=latency
        )


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts; print the report; return 0 (targets missed are reported, not fatal)."""
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run: fewer lengths/runs/levels")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--lengths", type=int, nargs="+", help="answer lengths for part 1")
    ap.add_argument("--runs", type=int, help="repetitions per measurement")
    ap.add_argument(
        "--stream-interval", type=int, nargs="+", default=[1], metavar="N",
        help="stream, concurrency-ws, replicas: tokens per SSE chunk from the scripted fake"
        " (vLLM's --stream-interval; the manifests ship 4); one run per N",
    )  # fmt: skip
    ap.add_argument(
        "--profile-admin",
        action="store_true",
        help="also profile the admin page open in Chromium (CPU time per script file)",
    )
    ap.add_argument(
        "--admin-before",
        metavar="REV",
        help="status-page: also time the admin page of git revision REV, alternating loads",
    )
    ap.add_argument(
        "--page-sizes",
        nargs="+",
        metavar="NODESxPODS",
        help="status-page: cluster sizes, e.g. 50x300 (default: 2x1 10x60 50x300)",
    )
    ap.add_argument(
        "--api-latency",
        nargs=2,
        type=float,
        default=(0.0, 0.0),
        metavar=("K8S_MS", "GKE_MS"),
        help="status-page: answer each Kubernetes / GKE API request this much later (a real "
        "cluster's round trip; the fakes answer in ~1 ms)",
    )
    args = ap.parse_args(argv)
    cfg = _config(args.quick)
    if args.page_sizes:
        cfg["page_sizes"] = [tuple(int(n) for n in s.split("x")) for s in args.page_sizes]
    if args.lengths:
        cfg["lengths"] = args.lengths
    if args.runs:
        cfg["runs"] = cfg["vllm_runs"] = cfg["switch_runs"] = args.runs
        cfg["page_loads"] = cfg["page_switch_runs"] = args.runs
    started = time.monotonic()
    res: dict = {"machine": machine(), "config": cfg, "quick": args.quick}
    _log(f"bench: parts {args.parts}, {'quick' if args.quick else 'full'} run")
    needs_browser = BROWSER_PARTS & set(args.parts) or args.profile_admin
    if needs_browser:
        with chromium() as browser:
            if "stream" in args.parts:
                from bench import streaming

                res["stream"] = []
                for interval in args.stream_interval:
                    _log(f"1. streaming overhead (scripted fake, --stream-interval {interval})")
                    res["stream"] += streaming.run_fake(
                        browser, cfg["lengths"], cfg["runs"], _log, interval
                    )
            if "vllm" in args.parts:
                from bench import streaming

                _log("1b. streaming overhead (real vLLM CPU build)")
                try:
                    res["stream_vllm"] = streaming.run_vllm(browser, cfg["vllm_runs"], _log)
                except Exception as e:  # noqa: BLE001 - report it, go on with the other parts
                    res["stream_vllm_error"] = f"{type(e).__name__}: {e}"
                    _log(f"  real vLLM row failed: {res['stream_vllm_error']}")
            if "concurrency" in args.parts:
                from bench import concurrency

                _log("2. concurrency")
                rows, idle = concurrency.run(browser, cfg["levels"], cfg["conc_tokens"], _log)
                res["concurrency"], res["idle_rss"] = rows, idle
            if "status-page" in args.parts:
                _log("3b. admin status at scale, the admin page in Chromium")
                try:
                    res["status_page"] = _status_page(
                        browser, cfg, args.admin_before, tuple(args.api_latency)
                    )
                except Exception as e:  # noqa: BLE001 - report it, go on with the other parts
                    res["status_page_error"] = f"{type(e).__name__}: {e}"
                    _log(f"  admin page rows failed: {res['status_page_error']}")
            if "switch-page" in args.parts:
                from bench import admin_browser

                _log("4b. model switch overhead, admin page + chat page in Chromium")
                try:
                    res["switch_page"] = admin_browser.run_switch_page(
                        browser, cfg["page_switch_runs"], _log
                    )
                except Exception as e:  # noqa: BLE001 - report it, go on with the other parts
                    res["switch_page_error"] = f"{type(e).__name__}: {e}"
                    _log(f"  switch page rows failed: {res['switch_page_error']}")
            if args.profile_admin:
                from bench import admin_browser

                size = cfg["page_sizes"][-1]
                _log(f"3c. profile of the admin page open ({size[0]} nodes / {size[1]} pods)")
                res["page_profile"] = admin_browser.profile_admin_page(browser, size, 3, _log)
                res["page_profile_size"] = size
    if "concurrency-ws" in args.parts:
        from bench import ws_sessions

        res["concurrency_ws"] = []
        for interval in args.stream_interval:
            _log(f"2b. concurrency without the browser (protocol clients, N={interval})")
            res["concurrency_ws"].append(
                ws_sessions.run(cfg["levels"], cfg["conc_tokens"], _log, stream_interval=interval)
            )
    if "replicas" in args.parts:
        from bench import replicas

        res["replicas"] = []
        for interval in args.stream_interval:
            _log(f"2d. two replicas behind the proxy against one (N={interval})")
            try:
                res["replicas"].append(
                    replicas.run(
                        cfg["replica_levels"], cfg["conc_tokens"], _log, stream_interval=interval
                    )
                )
            except Exception as e:  # noqa: BLE001 - report it, go on with the other parts
                res["replicas_error"] = f"N={interval}: {type(e).__name__}: {e}"
                _log(f"  replicas rows failed: {res['replicas_error']}")
    if "status" in args.parts:
        from bench import admin

        _log("3. admin status at scale")
        res["status"] = admin.run_status(cfg["sizes"], cfg["refreshes"], _log)
    if "switch" in args.parts:
        from bench import admin

        _log("4. model switch overhead")
        res["switch"] = admin.run_switch(cfg["polls"], cfg["switch_runs"], _log)
    res["elapsed_s"] = time.monotonic() - started
    text = report.markdown(res)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(text)
    png = report.png(res, args.out / "summary.png")
    _log(f"wrote {args.out / 'latest.md'} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
