"""Client construction and error mapping; the fake API server's protocol details."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.fakes import k8s_server as ks
from tests.support.cluster import LLAMA, NS, seed_vllm
from webapp.cluster import manifests as mf
from webapp.cluster.errors import (
    ApiRejected,
    ClusterNotConfigured,
    ClusterUnavailable,
    Conflict,
    Forbidden,
    NotFound,
)
from webapp.cluster.k8s import call, connect, kubeconfig_user


def test_no_cluster_configured(tmp_path):
    with pytest.raises(ClusterNotConfigured) as err:
        connect(environ={"HOME": str(tmp_path)})
    assert "KUBECONFIG" in str(err.value)


def test_kubeconfig_from_env(fake, tmp_path):
    cluster = connect(environ={"KUBECONFIG": f"{tmp_path}/missing:{fake.kubeconfig_path}"})
    assert cluster.source == f"kubeconfig {fake.kubeconfig_path}"
    assert call("list nodes", cluster.core.list_node)["items"]


def test_broken_kubeconfig(tmp_path):
    path = tmp_path / "config"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    with pytest.raises(ClusterNotConfigured) as err:
        connect(str(path))
    assert str(path) in str(err.value)


SECRET = "kubeconfig-token-that-must-never-be-shown"  # noqa: S105

KUBECONFIG = f"""\
apiVersion: v1
kind: Config
current-context: {{current}}
clusters:
- name: gke_demo
  cluster: {{{{server: https://203.0.113.7}}}}
contexts:
- name: dev
  context: {{{{cluster: gke_demo, user: alice@example.com}}}}
- name: prod
  context: {{{{cluster: gke_demo, user: gke_demo_us-central1_prod}}}}
- name: nobody
  context: {{{{cluster: gke_demo}}}}
users:
- name: alice@example.com
  user: {{{{token: {SECRET}}}}}
"""


@pytest.mark.parametrize(
    ("text", "user_or_error"),
    [
        (KUBECONFIG.format(current="dev"), "alice@example.com"),
        (KUBECONFIG.format(current="prod"), "gke_demo_us-central1_prod"),
        (KUBECONFIG.format(current="nobody"), "the current context 'nobody' of the kubeconfig"),
        (KUBECONFIG.format(current="ghost"), "cannot be used: Invalid kube-config file"),
        (
            KUBECONFIG.format(current="dev").replace("current-context: dev\n", ""),
            "Expected key current-context",
        ),
        ("", "is empty"),
        ("just a string\n", "cannot be used"),
        (f'users:\n- name: a\n  user: {{token: "{SECRET}\n', "is not valid YAML (line"),
    ],
)
def test_kubeconfig_user_is_the_current_contexts_user(tmp_path, text, user_or_error):
    path = tmp_path / "config"
    path.write_text(text)
    if "@" in user_or_error or user_or_error.startswith("gke_"):
        assert kubeconfig_user(str(path)) == user_or_error
        return
    with pytest.raises(ClusterNotConfigured) as err:
        kubeconfig_user(str(path))
    assert user_or_error in str(err.value) and str(path) in str(err.value)
    assert SECRET not in str(err.value)  # a YAML error quotes the file: never shown


def test_kubeconfig_user_finds_the_file_as_connect_does(tmp_path):
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(KUBECONFIG.format(current="dev"))
    assert kubeconfig_user(environ={"HOME": str(tmp_path)}) == "alice@example.com"
    other = tmp_path / "other"
    other.write_text(KUBECONFIG.format(current="prod"))
    env = {"HOME": str(tmp_path), "KUBECONFIG": f"{tmp_path}/missing:{other}"}
    assert kubeconfig_user(environ=env) == "gke_demo_us-central1_prod"
    with pytest.raises(ClusterNotConfigured, match="no kubeconfig was found"):
        kubeconfig_user(environ={"HOME": str(tmp_path / "nowhere")})


def test_unreachable_api_server(fake, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = json.loads(Path(fake.kubeconfig_path).read_text())
    cfg["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{port}"
    path = tmp_path / "config"
    path.write_text(json.dumps(cfg))
    cluster = connect(str(path))
    cluster.api.rest_client.pool_manager.connection_pool_kw["retries"] = False
    with pytest.raises(ClusterUnavailable) as err:
        call("list nodes", cluster.core.list_node)
    assert "list nodes" in str(err.value)


def test_wrong_token_is_forbidden(fake, tmp_path):
    cfg = json.loads(Path(fake.kubeconfig_path).read_text())
    cfg["users"][0]["user"]["token"] = "wrong"  # noqa: S105
    path = tmp_path / "config"
    path.write_text(json.dumps(cfg))
    with pytest.raises(Forbidden) as err:
        call("list nodes", connect(str(path)).core.list_node)
    assert (err.value.action, err.value.operation) == ("list nodes", "list_node")


def test_status_errors_are_typed(fake, cluster):
    seed_vllm(fake)
    with pytest.raises(NotFound):
        call("read", cluster.apps.read_namespaced_deployment, "nope", NS)
    with pytest.raises(Conflict):  # AlreadyExists
        call(
            "create",
            cluster.apps.create_namespaced_deployment,
            NS,
            mf.build_deployment("vllm", NS, LLAMA),
        )
    bad = mf.build_deployment("bad", NS, LLAMA)
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(ApiRejected):
        call("create", cluster.apps.create_namespaced_deployment, NS, bad)


def test_put_with_stale_resource_version_conflicts(fake, cluster):
    seed_vllm(fake)
    svc = call("read", cluster.core.read_namespaced_service, "vllm", NS)
    svc["spec"]["selector"] = {"app": "x"}
    call("replace", cluster.core.replace_namespaced_service, "vllm", NS, svc)
    with pytest.raises(Conflict):  # same (now stale) resourceVersion again
        call("replace", cluster.core.replace_namespaced_service, "vllm", NS, svc)


def test_strategic_merge_patch_merges_containers_by_name(fake, cluster):
    seed_vllm(fake)
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "vllm", "env": [{"name": "EXTRA", "value": "1"}]}]}
            }
        }
    }
    dep = call(
        "patch",
        cluster.apps.patch_namespaced_deployment,
        "vllm",
        NS,
        patch,
        _content_type="application/strategic-merge-patch+json",
    )
    [c] = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == mf.DEFAULT_IMAGE  # untouched fields survive
    assert [e["name"] for e in c["env"]] == ["HF_TOKEN", "EXTRA"]


def test_watch_streams_pod_changes(fake, cluster):
    from kubernetes import watch

    lst = call("list", cluster.core.list_namespaced_pod, NS)
    fake.create("deployments", mf.build_deployment("vllm", NS, LLAMA))
    seen = []
    w = watch.Watch()
    for ev in w.stream(
        cluster.core.list_namespaced_pod,
        NS,
        label_selector="app=vllm",
        resource_version=lst["metadata"]["resourceVersion"],
        timeout_seconds=5,
    ):
        pod = ev["object"]
        seen.append(ev["type"])
        if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
            w.stop()
    assert seen[0] == "ADDED" and "MODIFIED" in seen
    assert fake.request_counts[("watch", "pods")] == 1


@pytest.mark.parametrize(
    ("selector", "labels", "ok"),
    [
        ("app=vllm", {"app": "vllm"}, True),
        ("app==vllm", {"app": "vllm"}, True),
        ("app!=vllm", {"app": "vllm"}, False),
        ("app in (a, vllm)", {"app": "vllm"}, True),
        ("app notin (a,vllm)", {"app": "vllm"}, False),
        ("app,tier=gpu", {"app": "x", "tier": "gpu"}, True),
        ("!app", {"app": "x"}, False),
        ("", {}, True),
    ],
)
def test_fake_label_selectors(selector, labels, ok):
    assert ks.label_matches(selector, labels) is ok


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ([{"op": "replace", "path": "/a/b", "value": 2}], {"a": {"b": 2, "c/d": 1}}),
        ([{"op": "add", "path": "/a/c~1d", "value": 5}], {"a": {"b": 1, "c/d": 5}}),
        ([{"op": "remove", "path": "/a/b"}], {"a": {"c/d": 1}}),
        ([{"op": "test", "path": "/a/b", "value": 1}], {"a": {"b": 1, "c/d": 1}}),
    ],
)
def test_fake_json_patch(ops, expected):
    assert ks.json_patch({"a": {"b": 1, "c/d": 1}}, ops) == expected


def test_fake_json_patch_failed_test_is_invalid():
    with pytest.raises(ks.ApiError) as err:
        ks.json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])
    assert err.value.code == 422
