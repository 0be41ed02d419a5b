"""Fixtures: fake Kubernetes API servers (two GPU nodes, or one) and real clients to them.

What to seed them with (models, ``seed_vllm``) is in ``tests/support/cluster.py``.
"""

from __future__ import annotations

import pytest

from tests.fakes.k8s_server import FakeCluster
from webapp.cluster.k8s import connect


@pytest.fixture
def fake():
    """A fake cluster with two 1-GPU L4 nodes, nothing deployed."""
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}, {"name": "gpu-b"}]) as fc:
        yield fc


@pytest.fixture
def one_node():
    """A fake cluster whose pool holds exactly one vLLM pod."""
    with FakeCluster(gpu_nodes=[{"name": "gpu-a"}]) as fc:
        yield fc


@pytest.fixture
def cluster(fake):
    """Real kubernetes clients talking to ``fake`` through its kubeconfig."""
    return connect(fake.kubeconfig_path)
