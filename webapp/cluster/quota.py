"""Compute Engine GPU quota of the cluster's region, for the capacity guard.

GKE creates GPU nodes as Compute Engine VMs, so a pool that may grow still stops at the
project's regional GPU quota: nodes then never come and the pods stay Pending. The quota is
one read of the region (``GET https://compute.googleapis.com/compute/v1/projects/P/regions/R``,
its ``quotas`` list: ``metric``, ``limit``, ``usage``), authenticated with the pod's Google
credentials (``google_auth``; IAM permission ``compute.regions.get``, which
scripts/setup_gke.sh grants). Spot and preemptible VMs count against ``PREEMPTIBLE_<GPU>``
when the project has that quota, else against the regular ``<GPU>`` quota.

Failures become ``QuotaUnreadable`` with a plain reason (refused, down, garbage): the caller
then says the quota was not checked and never blocks on it. No token or body is logged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from webapp.cluster.errors import NoGoogleCredentials, QuotaUnreadable
from webapp.cluster.google_auth import bearer_token

COMPUTE_API = "https://compute.googleapis.com"
COMPUTE_READ = "https://www.googleapis.com/auth/compute.readonly"
QUOTA_PERMISSION = "compute.regions.get"

#: GKE accelerator label -> Compute Engine quota metric (the regular, on-demand one)
GPU_QUOTA_METRICS: dict[str, str] = {
    "nvidia-l4": "NVIDIA_L4_GPUS",
    "nvidia-tesla-t4": "NVIDIA_T4_GPUS",
    "nvidia-tesla-v100": "NVIDIA_V100_GPUS",
    "nvidia-tesla-p4": "NVIDIA_P4_GPUS",
    "nvidia-tesla-p100": "NVIDIA_P100_GPUS",
    "nvidia-tesla-a100": "NVIDIA_A100_GPUS",
    "nvidia-a100-80gb": "NVIDIA_A100_80GB_GPUS",
    "nvidia-h100-80gb": "NVIDIA_H100_GPUS",
    "nvidia-h100-mega-80gb": "NVIDIA_H100_MEGA_GPUS",
}
_ZONE = re.compile(r"^([a-z]+-[a-z]+\d+)-[a-z]$")


@dataclass(frozen=True)
class Quota:
    """One regional quota: ``limit`` and ``usage`` of ``metric``."""

    metric: str
    limit: float
    usage: float

    @property
    def available(self) -> float:
        return max(0.0, self.limit - self.usage)


@dataclass(frozen=True)
class RegionQuotas:
    """The quotas of one region, by metric name."""

    region: str
    quotas: Mapping[str, Quota]

    def gpu_quota(self, accelerator: str, *, spot: bool) -> Quota | None:
        """The quota new nodes of ``accelerator`` GPUs count against; None if not listed
        (an unknown accelerator, or a metric the region does not have)."""
        metric = GPU_QUOTA_METRICS.get(accelerator)
        if metric is None:
            return None
        if spot and f"PREEMPTIBLE_{metric}" in self.quotas:
            return self.quotas[f"PREEMPTIBLE_{metric}"]
        return self.quotas.get(metric)


def gpu_quota_metric(accelerator: str, *, spot: bool) -> str:
    """The quota metric's name for words (``PREEMPTIBLE_NVIDIA_L4_GPUS``), or "" if unknown."""
    metric = GPU_QUOTA_METRICS.get(accelerator, "")
    return f"PREEMPTIBLE_{metric}" if metric and spot else metric


def region_of(location: str) -> str:
    """The region of a GKE location: ``us-central1`` for ``us-central1-a`` or itself."""
    found = _ZONE.match(location)
    return found.group(1) if found else location


def parse_region_quotas(payload: Any, region: str) -> RegionQuotas:
    """``RegionQuotas`` from a compute#region resource; ``QuotaUnreadable`` if it is not one."""
    items = payload.get("quotas") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise QuotaUnreadable("the Compute Engine API's answer holds no quota list")
    quotas: dict[str, Quota] = {}
    for item in items:
        try:
            q = Quota(str(item["metric"]), float(item["limit"]), float(item.get("usage", 0)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise QuotaUnreadable(
                "the Compute Engine API's answer holds a malformed quota"
            ) from None
        quotas[q.metric] = q
    return RegionQuotas(str(payload.get("name") or region), quotas)


def region_url(project: str, region: str, endpoint: str = "") -> str:
    """``<endpoint>/compute/v1/projects/P/regions/R`` (default endpoint: Compute Engine)."""
    base = (endpoint or COMPUTE_API).rstrip("/")
    return f"{base}/compute/v1/projects/{project}/regions/{region}"


def read_region_quotas(
    project: str,
    location: str,
    *,
    endpoint: str = "",
    credentials: Any = None,
    client: httpx.Client | None = None,
    timeout_s: float = 5.0,
) -> RegionQuotas:
    """The quotas of ``location``'s region: one GET. A plain ``http://`` endpoint is a local
    fake and gets no token. Raises ``QuotaUnreadable`` with a plain reason."""
    region = region_of(location)
    if not project or not region:
        raise QuotaUnreadable("GKE_PROJECT and GKE_LOCATION are not set")
    url = region_url(project, region, endpoint)
    headers = {}
    if not url.startswith("http://"):
        try:
            headers["Authorization"] = f"Bearer {bearer_token(credentials, (COMPUTE_READ,))}"
        except NoGoogleCredentials as exc:
            raise QuotaUnreadable(f"no usable Google credentials ({exc})") from None
    try:
        get = client.get if client is not None else httpx.get
        r = get(url, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException:
        raise QuotaUnreadable(
            f"the Compute Engine API did not answer within {timeout_s:g} s"
        ) from None
    except httpx.HTTPError as exc:
        raise QuotaUnreadable(
            f"the Compute Engine API cannot be reached ({type(exc).__name__})"
        ) from None
    if r.status_code in (401, 403):
        raise QuotaUnreadable(
            f"the Compute Engine API refused to show the quota (HTTP {r.status_code}): the "
            f"admin's Google service account needs {QUOTA_PERMISSION} (scripts/setup_gke.sh)"
        )
    if r.status_code == 404:
        raise QuotaUnreadable(f"region {region} of project {project} was not found (HTTP 404)")
    if r.status_code != 200:
        raise QuotaUnreadable(f"the Compute Engine API answered HTTP {r.status_code}")
    try:
        payload = r.json()
    except ValueError:
        raise QuotaUnreadable("the Compute Engine API's answer is not JSON") from None
    return parse_region_quotas(payload, region)


def gpu_quotas(settings: Any, **kwargs: Any) -> RegionQuotas:
    """The quotas of the cluster's region from ``Settings`` (GKE_PROJECT, GKE_LOCATION,
    COMPUTE_API_ENDPOINT); ``kwargs`` as ``read_region_quotas``."""
    return read_region_quotas(
        settings.gke_project,
        settings.gke_location,
        endpoint=getattr(settings, "compute_api_endpoint", ""),
        **kwargs,
    )
