"""AppTest of the status view's tables (issue 12.4): static HTML tables at a page open,
the interactive grid of a long list only while its "Show all" expander is open, and every
cell from the cluster shown literally."""

from __future__ import annotations

from tests.admin.ui.test_admin_page import page, world  # noqa: F401 - fixtures
from tests.support.cluster import NS
from tests.support.html_tables import static_tables
from webapp.admin.ui.status import FIRST_ROWS


def test_markup_in_an_event_from_the_cluster_is_shown_literally(world, page):  # noqa: F811
    pod = world.fc.list("pods", NS)[0]["metadata"]["name"]
    world.fc.create(
        "events",
        {"metadata": {"name": f"{pod}.evil"}, "involvedObject": {"kind": "Pod", "name": pod},
         "reason": "BackOff", "message": "<b>x</b> **y** <script>alert(1)</script>",
         "type": "Warning", "lastTimestamp": "2099-01-01T00:00:00Z"},
        NS,
    )  # fmt: skip
    at = page(world)
    assert not at.exception, at.exception
    pods, _ = static_tables(at)["pods"]
    assert list(pods["recent events"])[0].startswith(
        "BackOff: <b>x</b> **y** <script>alert(1)</script>"
    )
    (markup,) = [h.value for h in at.html if 'data-table="pods"' in h.value]
    assert "<b>x" not in markup and "<script>" not in markup
    assert "&lt;b&gt;x&lt;/b&gt; **y** &lt;script&gt;" in markup


def test_a_long_list_shows_its_first_rows_not_ready_first_and_all_on_demand(world, page):  # noqa: F811
    node = world.fc.list("nodes")[0]["metadata"]["name"]
    for i in range(FIRST_ROWS + 4):
        world.fc.add_pod(f"worker-{i:02d}", node=node, namespace=NS, ready=i != 20)
    at = page(world)
    assert not at.exception, at.exception
    pods, total = static_tables(at)["pods"]
    assert total == FIRST_ROWS + 5 and len(pods) == FIRST_ROWS
    assert list(pods["pod"])[0] == "worker-20" and list(pods["ready"])[:2] == ["no", "yes"]
    assert f"The first {FIRST_ROWS} of {total} pods, those not ready first." in at.html[0].value
    # the grid of all rows is built only while its expander is open
    assert "Show all pods" in [e.label for e in at.expander] and not at.dataframe
    at.session_state["pods_all"] = True  # the admin opens it
    at.run()
    (grid,) = [d.value for d in at.dataframe if "recent events" in d.value.columns]
    assert len(grid) == total and list(grid["pod"])[0] == "worker-20"
    # the next status refresh shows a new pod, in the grid and in the static table's count
    world.fc.add_pod("bench-new-pod", node=node, namespace=NS, ready=False)
    at.run()
    (grid,) = [d.value for d in at.dataframe if "recent events" in d.value.columns]
    assert "bench-new-pod" in list(grid["pod"]) and at.session_state["pods_all"]
    pods, total = static_tables(at)["pods"]
    assert total == FIRST_ROWS + 6 and "bench-new-pod" in list(pods["pod"])[:2]


def test_short_lists_have_no_show_all_control(world, page):  # noqa: F811
    at = page(world)
    tables = static_tables(at)
    assert {name: total for name, (_, total) in tables.items()} == {
        "pods": 1,
        "nodes": 2,
        "pools": 2,
    }
    assert not [e for e in at.expander if e.label.startswith("Show all")]
