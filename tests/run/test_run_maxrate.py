"""``--rate max`` end to end: the search finds the capacity of a broker whose capacity is known.

The scripted broker takes sends one at a time, holding each for 5 ms: at most 200 msgs/s can be
acknowledged (less with overheads and a busy machine). The producer keeps at most 20 requests in
flight, so an overload turns into publish backlog. The search must end ``done`` with a real hold at
a rate under that capacity, never above it. Marked slow: it runs a dozen or more 1.5-second checks.
"""
from __future__ import annotations

import pytest

from mqbench.harness.maxrate import SearchSettings, Thresholds
from mqbench.run.matrix import CellSettings
from mqbench.run.orchestrator import RunSettings, run
from run_scripted_cluster import ThreadedCluster


@pytest.mark.slow
@pytest.mark.realproc
def test_the_search_settles_just_under_a_known_capacity(tmp_path):
    with ThreadedCluster(("order_events", "order_payment_timeout"), serial_ms=5) as cluster:
        settings = RunSettings(
            source="orders", cells=[CellSettings(delay="off")], target=cluster.namesrv_addr, rate="max",
            duration_ms=60_000, warmup_ms=500, window_ms=5_000, in_flight_max=20, check_ms=1500, drain_ms=3_000,
            out_dir=tmp_path, search=SearchSettings(start_rate_per_s=50.0, tolerance=0.1, hold_checks=3,
                                                    hold_growth_share_max=0.05, max_checks=60),
            # Latency is left loose: on a busy 2-core machine it jitters by hundreds of ms. What
            # decides is whether the offered load was absorbed (acknowledged share, backlog).
            thresholds=Thresholds(publish_backlog_msgs_max=60, consume_backlog_msgs_max=2000,
                                  publish_latency_ms_p99_max=1000.0, published_share_min=0.8))
        doc, failures = run(settings)
    assert failures == []
    cell = doc["cells"][0]
    search = cell["max_rate_search"]
    assert search["state"] == "done", search["history"]
    # Never above the broker's ceiling; how far under it depends on how busy the machine is (the
    # scripted broker shares the cores with everything else), so the lower bound is loose.
    assert 40 <= search["sustainable_rate_per_s"] <= 200
    assert search["sustainable_rate_per_s"] <= search["peak_healthy_rate_per_s"]
    assert cell["aggregates"]["sustainable_rate_per_s"] == search["sustainable_rate_per_s"]
    # The measured phase is what ran: it ended with the search, well before the 60 s budget.
    assert cell["aggregates"]["duration_ms"] < 60_000
    assert any(step["verdict"] == "unhealthy" for step in search["history"])
    # The capacity is the rate that held on repeat, never above what the broker can do; the first
    # unheld rate is above it; the cell is held, offered = capacity, achieved = absorbed in the hold.
    assert cell["verdict"] == "held" and cell["capacity_msgs_per_s"] == search["capacity_msgs_per_s"] <= 200
    assert cell["first_unheld_rate_msgs_per_s"] > cell["capacity_msgs_per_s"]
    assert cell["offered_msgs_per_s"] == cell["capacity_msgs_per_s"]
    assert cell["achieved_msgs_per_s"] == search["sustainable_rate_per_s"]
    # The capacity held for a whole hold: 3 healthy checks in a row at it (a hold restarted after a
    # stall counts the repeat that cleared it as its first check; drains between do not count).
    streak = best = 0
    for h in search["history"]:
        if h["state"] in ("hold", "confirm") and h["rate_per_s"] == search["capacity_msgs_per_s"] \
                and h["verdict"] == "healthy":
            streak += 1
            best = max(best, streak)
        elif h["state"] != "drain":
            streak = 0
    assert best >= 3, search["history"]
    assert search["bracket_msgs_per_s"] == [cell["capacity_msgs_per_s"], cell["first_unheld_rate_msgs_per_s"]]
