"""Which session keys the admin page keeps while their tab is closed (``webapp.ui.entries``)."""

from __future__ import annotations

import pytest

from webapp.admin.ui import canary, deploy, fleet, pools, usage
from webapp.ui.entries import kept

NAMES = ("deploy_model", "count_", "strategy")
ALL = deploy.ENTRIES + fleet.ENTRIES + canary.ENTRIES + pools.ENTRIES + usage.ENTRIES


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("deploy_model", True),  # a name: that key
        ("deploy_model_2", False),  # not a prefix
        ("count_mistral-7b", True),  # a name ending in "_": every key it begins
        ("count_", True),
        ("count", False),
        ("strategy", True),
        ("tab", False),
        (7, False),  # not a widget key
    ],
)
def test_a_key_is_kept_when_named(key, expected):
    assert kept(key, NAMES) is expected


@pytest.mark.parametrize(
    "key",
    # buttons, tables and expanders of the admin page (their state cannot be assigned), and
    # the chat's own keys (the same session in APP_MODE=all): none of them is ever kept
    ["deploy", "pool_deploy", "canary_start", "resize_go", "auto_go", "cancel_canary", "remove_vllm-a", "scale_vllm-a",
     "switch_vllm-a", "autoscale_vllm-a", "autoscale_pool", "gpu_table", "gpu_turn_on",
     "pod_log", "pods_all", "usage_csv", "usage_users", "canary_windows", "model", "tab",
     "new_chat", "prompt", "stop", "redo", "max_tokens", "temperature", "top_p",
     "system_prompt"],
)  # fmt: skip
def test_no_button_table_or_chat_key_is_kept(key):
    assert not kept(key, ALL)
