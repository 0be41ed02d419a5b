"""The new pod of a rollout while it loads: its phases (``webapp.cluster.loading``) read
from the pod, the namespace's events and its log, in the reads the rollout makes anyway
(the pods and events it lists, plus the one log read it made for the log tail).

The log is read with the API server's timestamps (exact times for every line, uvicorn's
included) and a tail long enough for a whole vLLM start-up (a few hundred lines), so each
look finds every phase from the start; the tail shown on the page drops the timestamps.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from webapp.cluster.k8s import Cluster, call
from webapp.cluster.loading import LoadProgress, pod_progress
from webapp.cluster.manifests import ACCELERATOR_LABEL

#: lines of the log read per look: a vLLM start-up writes a few hundred
LOAD_LOG_LINES = 5000
_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d) ")


@dataclass(frozen=True)
class PodLoad:
    """The loading pod: its name, its GPU type (the accelerator its nodeSelector asks for,
    "" without GPUs) and where its load is."""

    pod: str
    gpu_type: str
    progress: LoadProgress


def _running(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running"


def _newest(pods: Sequence[dict]) -> dict | None:
    """The new pod to follow: the most recently created (a replacement after a crash)."""
    return max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", default=None)


def read_pod_load(
    cluster: Cluster,
    namespace: str,
    new_pods: Sequence[dict],
    raw_events: Sequence[dict],
    *,
    log_lines: int,
    now: datetime | None = None,
) -> tuple[PodLoad | None, tuple[str, ...]]:
    """(the load of the newest of ``new_pods``, the last ``log_lines`` of its log without
    timestamps). One log read, when the pod runs (before, it has no log)."""
    pod = _newest(new_pods)
    if pod is None:
        return None, ()
    name = pod["metadata"]["name"]
    text = ""
    if _running(pod):
        text = call(
            f"read the log of pod {name}",
            cluster.core.read_namespaced_pod_log,
            name,
            namespace,
            tail_lines=LOAD_LOG_LINES,
            timestamps=True,
            text=True,
        )
    lines = text.splitlines()
    tail = tuple(_STAMP.sub("", line, count=1) for line in lines[-log_lines:]) if log_lines else ()
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    progress = pod_progress(pod, raw_events, text, now=now or datetime.now(UTC))
    return PodLoad(name, str(selector.get(ACCELERATOR_LABEL, "")), progress), tail
