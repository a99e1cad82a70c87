"""Cell verdicts (finding 1: saturated runs used to pass as capacity) from simulated runs and figures."""
from __future__ import annotations

import pytest

from mqbench.harness.metrics import merge_runs
from mqbench.harness.results import build_cell
from mqbench.harness.verdict import Bounds, judge_fixed, judge_search
from simsystem import simulate_run


def _cell(rate, service_us):
    parts = simulate_run(rate=rate, seed=3, duration_ms=10_000, warmup_ms=2_000, service_us_mean=service_us)
    return build_cell("c", {"rate": rate}, merge_runs(parts), offered_msgs_per_s=rate)


def test_a_broker_slower_than_the_offered_rate_is_saturated_and_has_no_capacity():
    # ~1.2 ms mean service time: about 830 msgs/s; 1,500 are offered.
    cell = _cell(1500, 1000)
    assert cell["verdict"] == "saturated"
    assert "achieved under offered" in cell["verdict_signals"]
    assert cell["offered_msgs_per_s"] == 1500 and cell["achieved_msgs_per_s"] < 1000
    assert cell["capacity_msgs_per_s"] is None


def test_a_broker_that_keeps_up_held():
    cell = _cell(500, 200)
    assert cell["verdict"] == "held" and cell["verdict_signals"] == []
    assert cell["achieved_msgs_per_s"] == pytest.approx(500, rel=0.02)
    assert cell["capacity_msgs_per_s"] is None  # held at a fixed rate is still not a capacity


BASE = {"duration_ms": 10_000, "published": 10_000, "publish_latency_ms_p99": 5.0, "publish_delay_ms_p99": 2.0,
        "publish_backlog_msgs_end": 0, "consume_backlog_msgs_end": 0, "consume_backlog_msgs_after_drain": 0,
        "publish_errors": 0, "acked_msgs_total": 12_000, "expected_deliveries_total": 24_000}


@pytest.mark.parametrize("change, signal", [
    ({"published": 9_500}, "achieved under offered"),
    ({"publish_delay_ms_p99": 3_500.0}, "publish delay growing"),
    ({"publish_backlog_msgs_end": 4_000}, "send backlog"),
    ({"consume_backlog_msgs_end": 2_500}, "consume backlog"),   # bound: 2 groups x 1,000 msgs/s x 1 s
    ({"consume_backlog_msgs_after_drain": 7}, "consume backlog"),
    ({"publish_errors": 50}, "errors"),
])
def test_each_signal_is_named(change, signal):
    held = judge_fixed(BASE, [], 1000.0)
    assert held.verdict == "held"
    verdict = judge_fixed({**BASE, **change}, [], 1000.0)
    assert verdict.verdict == "saturated" and verdict.signals == (signal,)
    assert len(verdict.detail) == 1


def test_bounds_sit_where_the_docstring_says():
    # 1,900 owed at 1,000 msgs/s with a fan-out of 2 is within one second of deliveries: bounded.
    assert judge_fixed({**BASE, "consume_backlog_msgs_end": 1_900}, [], 1000.0).verdict == "held"
    # A shortfall no larger than one p99 publish latency of offered load is in flight, not short.
    assert judge_fixed({**BASE, "published": 9_800, "publish_latency_ms_p99": 150.0}, [], 1000.0).verdict == "held"
    # The last window's lateness counts even when the whole-run p99 still looks fine.
    windows = [{"publish_delay_ms_p99": 3.0}, {"publish_delay_ms_p99": 1_800.0}]
    verdict = judge_fixed(BASE, windows, 1000.0, Bounds())
    assert verdict.signals == ("publish delay growing",) and "first window 3 ms, last 1,800 ms" in verdict.detail[0]


def test_nothing_acknowledged_is_failed():
    assert judge_fixed({**BASE, "published": 0}, [], 1000.0).verdict == "failed"


def test_a_search_is_held_only_when_done():
    done = {"state": "done", "capacity_msgs_per_s": 1200.0, "first_unheld_rate_msgs_per_s": 1300.0,
            "sustainable_rate_per_s": 1195.0, "checks": 30}
    verdict = judge_search(done)
    assert (verdict.verdict, verdict.capacity_msgs_per_s, verdict.first_unheld_rate_msgs_per_s) == ("held", 1200.0, 1300.0)
    assert verdict.offered_msgs_per_s == 1200.0 and verdict.achieved_msgs_per_s == 1195.0
    assert verdict.detail == ("held 1,200 msgs/s for the whole hold; 1,300 msgs/s did not hold (bracket 7.7% wide)",)
    from mqbench.harness.report import _verdict_text
    assert _verdict_text(verdict) == "held (capacity; 1,300 did not hold: bracket 7.7%)"
    soaked = judge_search({**done, "capacity_checks_held": 12, "capacity_soaked": True, "settings": {"soak_checks": 10}})
    assert soaked.detail[0].startswith("held 1,200 msgs/s for 12 checks in a row (hold and soak); 1,300")
    confirmed = judge_search({**done, "capacity_checks_held": 24, "capacity_soaked": True, "capacity_soaks_held": 2,
                              "settings": {"soak_checks": 10}})
    assert confirmed.detail[0].startswith("held 1,200 msgs/s for 24 checks in a row (hold and soak, confirmed by 1 "
                                          "more after a drain); 1,300")
    short = judge_search({**done, "capacity_checks_held": 5, "capacity_soaked": False, "settings": {"soak_checks": 10}})
    assert short.detail[0].startswith("held 1,200 msgs/s for 5 checks in a row (hold and soak, the soak shortened")
    for state in ("ramp", "bisect", "hold", "soak", "drain", "failed"):
        unfinished = judge_search({"state": state, "sustainable_rate_per_s": None, "checks": 9})
        assert unfinished.verdict == "failed" and unfinished.capacity_msgs_per_s is None
        assert unfinished.signals == ("search unfinished",)
    seen = judge_search({"state": "failed", "checks": 33, "peak_healthy_rate_per_s": 800.0})
    assert seen.detail == ("max-rate search ended failed after 33 checks: no rate held on repeat (single checks "
                           "passed up to 800 msgs/s)",) and seen.capacity_msgs_per_s is None


def test_counts_by_intended_time_decide_when_present():
    # A 2 s phase whose latency straddles its edges: 502 acknowledged by ack time of 600 offered,
    # yet every message offered in the phase was acknowledged. That held.
    figures = {**BASE, "duration_ms": 2_000, "published": 502, "publish_latency_ms_p99": 800.0,
               "measured_offered_msgs": 600, "measured_acked_msgs": 600}
    assert judge_fixed(figures, [], 300.0).verdict == "held"
    short = judge_fixed({**figures, "measured_acked_msgs": 580}, [], 300.0)
    assert short.signals == ("achieved under offered",) and "580 of the 600" in short.detail[0]

    # 16 messages still due at the end of a 1.5 s phase at 200 msgs/s (80 ms of send lag) are late,
    # not missing; 60 (300 ms) are more than a lag.
    lag = {**figures, "measured_offered_msgs": 300, "measured_acked_msgs": 284, "publish_backlog_msgs_end": 16}
    assert judge_fixed(lag, [], 200.0).verdict == "held"
    behind = {**lag, "measured_acked_msgs": 240, "publish_backlog_msgs_end": 60}
    assert judge_fixed(behind, [], 200.0).signals == ("achieved under offered",)


def test_acks_that_come_long_after_the_phase_do_not_make_an_overload_held():
    # Issue 16, the Ray run: 200 msgs/s offered for 10 s to a broker that carries about 133. The
    # open-loop sender never fell behind (in-flight window not full), the queue of unacknowledged
    # sends grew to ~4.6 s, and every message was acknowledged in the end, after the phase:
    # publish p50 2.3 s, 133 msgs/s acknowledged in the phase. Counted "whenever the ack came", that
    # was held. Counted within the ack grace after the phase (1 s), it is what it was: saturated.
    figures = {**BASE, "duration_ms": 10_000, "published": 1_330, "publish_latency_ms_p50": 2_300.0,
               "publish_latency_ms_p99": 4_500.0, "measured_offered_msgs": 2_000, "measured_acked_msgs": 2_000,
               "measured_acked_on_time_msgs": 1_420, "acked_msgs_total": 2_600, "expected_deliveries_total": 2_600}
    verdict = judge_fixed(figures, [], 200.0)
    assert verdict.verdict == "saturated" and verdict.signals == ("achieved under offered",)
    assert "1,420 of the 2,000" in verdict.detail[0] and "within 1 s after" in verdict.detail[0]
    # Acks that lag by less than the grace (a 2 s phase, p99 800 ms) still count: held.
    short_phase = {**BASE, "duration_ms": 2_000, "published": 502, "publish_latency_ms_p99": 800.0,
                   "measured_offered_msgs": 600, "measured_acked_msgs": 600, "measured_acked_on_time_msgs": 600}
    assert judge_fixed(short_phase, [], 300.0).verdict == "held"


def test_achieved_counts_the_same_messages_as_the_verdict_so_it_never_exceeds_offered():
    # test_run_cli saw 256-258 "achieved" of 200 offered under load: a warm-up that stalled had its
    # backlog acknowledged inside the 1 s measured phase, and achieved counted acks by ack time. The
    # verdict counts by intended time; achieved now counts the same messages over the same phase.
    stalled = {**BASE, "duration_ms": 1_000, "published": 258, "publish_latency_ms_p99": 600.0,
               "measured_offered_msgs": 200, "measured_acked_msgs": 200, "measured_acked_on_time_msgs": 200}
    verdict = judge_fixed(stalled, [], 200.0)
    assert verdict.verdict == "held" and verdict.achieved_msgs_per_s == 200.0
    # acks that came after the grace are not achieved either (the overload above: 1,420 in 10 s)
    late = {**stalled, "duration_ms": 10_000, "published": 1_330, "measured_offered_msgs": 2_000,
            "measured_acked_msgs": 2_000, "measured_acked_on_time_msgs": 1_420}
    assert judge_fixed(late, [], 200.0).achieved_msgs_per_s == 142.0
    # a result without the counts keeps the acks of the phase by ack time
    old = {key: value for key, value in stalled.items() if not key.startswith("measured_")}
    assert judge_fixed(old, [], 200.0).achieved_msgs_per_s == 258.0
