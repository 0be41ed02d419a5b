"""The region's GPU quota (``webapp.cluster.quota``): parsing, which metric a pool counts
against, and the reader against the fake Compute Engine endpoint (up, refused, down, garbage)."""

from __future__ import annotations

import re

import httpx
import pytest
from google.oauth2.credentials import Credentials

from tests.support.admin_world import DEMO_QUOTAS, LOCATION, PROJECT, fake_gke, gke_settings
from webapp.cluster.errors import QuotaUnreadable
from webapp.cluster.quota import (
    Quota,
    RegionQuotas,
    gpu_quota_metric,
    gpu_quotas,
    parse_region_quotas,
    read_region_quotas,
    region_of,
    region_url,
)


@pytest.fixture
def gke():
    with fake_gke() as server:
        yield server


@pytest.mark.parametrize(
    ("location", "region"),
    [("us-central1", "us-central1"), ("us-central1-a", "us-central1"),
     ("europe-west4-b", "europe-west4"), ("", "")],
)  # fmt: skip
def test_region_of_a_gke_location(location, region):
    assert region_of(location) == region


QUOTAS = RegionQuotas(
    "us-central1",
    {
        "NVIDIA_L4_GPUS": Quota("NVIDIA_L4_GPUS", 8, 6),
        "PREEMPTIBLE_NVIDIA_L4_GPUS": Quota("PREEMPTIBLE_NVIDIA_L4_GPUS", 16, 1),
        "NVIDIA_T4_GPUS": Quota("NVIDIA_T4_GPUS", 4, 4),
    },
)


@pytest.mark.parametrize(
    ("accelerator", "spot", "metric", "available"),
    [
        ("nvidia-l4", False, "NVIDIA_L4_GPUS", 2),
        ("nvidia-l4", True, "PREEMPTIBLE_NVIDIA_L4_GPUS", 15),
        # no preemptible T4 quota in the region: spot VMs count against the regular one
        ("nvidia-tesla-t4", True, "NVIDIA_T4_GPUS", 0),
        ("nvidia-h100-80gb", False, None, None),  # not listed in the region
        ("nvidia-unknown", False, None, None),  # no metric known for the label
    ],
)  # fmt: skip
def test_which_quota_new_nodes_count_against(accelerator, spot, metric, available):
    q = QUOTAS.gpu_quota(accelerator, spot=spot)
    assert (q.metric if q else None) == metric
    assert (q.available if q else None) == available


def test_quota_metric_names_for_words():
    assert gpu_quota_metric("nvidia-l4", spot=True) == "PREEMPTIBLE_NVIDIA_L4_GPUS"
    assert gpu_quota_metric("nvidia-a100-80gb", spot=False) == "NVIDIA_A100_80GB_GPUS"
    assert gpu_quota_metric("nvidia-unknown", spot=True) == ""


@pytest.mark.parametrize(
    "payload",
    [None, [], "text", {"name": "us-central1"}, {"quotas": "many"},
     {"quotas": [{"limit": 8}]}, {"quotas": [{"metric": "X", "limit": "lots"}]},
     {"quotas": [None]}],
)  # fmt: skip
def test_an_answer_that_is_no_region_is_unreadable(payload):
    with pytest.raises(QuotaUnreadable):
        parse_region_quotas(payload, "us-central1")


def test_reads_the_region_quotas_from_the_compute_api(gke):
    got = gpu_quotas(gke_settings(gke))
    assert got.region == LOCATION
    assert {m: (q.limit, q.usage) for m, q in got.quotas.items()} == DEMO_QUOTAS
    (req,) = [r for r in gke.fake.requests if "/regions/" in r["path"]]
    assert req["method"] == "GET"
    assert req["path"] == f"/compute/v1/projects/{PROJECT}/regions/{LOCATION}"


def test_a_zonal_cluster_reads_its_region(gke):
    got = read_region_quotas(PROJECT, f"{LOCATION}-a", endpoint=gke.endpoint)
    assert got.region == LOCATION


def test_the_production_address_and_a_bearer_token():
    assert region_url("p", "us-central1") == (
        "https://compute.googleapis.com/compute/v1/projects/p/regions/us-central1"
    )
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("Authorization")))
        return httpx.Response(200, json={"name": "us-central1", "quotas": []})

    creds = Credentials(token="tok-123")  # valid: never refreshed
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        got = read_region_quotas("p", "us-central1", credentials=creds, client=client)
    assert got.quotas == {}
    assert seen == [(region_url("p", "us-central1"), "Bearer tok-123")]


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("deny_quota", "needs compute.regions.get"),
        ("garbage", "not JSON"),
        ("garbage_json", "no quota list"),
        ("missing", "not found (HTTP 404)"),
        ("server_error", "HTTP 503"),
    ],
)
def test_an_unreadable_quota_says_why(gke, fault, said):
    project = PROJECT
    if fault == "deny_quota":
        gke.fake.deny_quota = True
    elif fault == "garbage":
        gke.fake.garbage_region = "<html>proxy error</html>"
    elif fault == "garbage_json":
        gke.fake.garbage_region = '{"kind": "compute#region"}'
    elif fault == "missing":
        project = "other-project"
    else:
        gke.fake.fail_next(503, "UNAVAILABLE", "backend error")
    with pytest.raises(QuotaUnreadable, match=re.escape(said)) as err:
        read_region_quotas(project, LOCATION, endpoint=gke.endpoint)
    assert "://" not in str(err.value)  # never the request's address


def test_an_api_that_is_down_is_unreadable(gke):
    endpoint = gke.endpoint
    gke.stop()
    with pytest.raises(QuotaUnreadable, match="cannot be reached"):
        read_region_quotas(PROJECT, LOCATION, endpoint=endpoint, timeout_s=2)


def test_no_project_is_unreadable_without_a_call():
    with pytest.raises(QuotaUnreadable, match="GKE_PROJECT"):
        read_region_quotas("", LOCATION, endpoint="http://127.0.0.1:9")
