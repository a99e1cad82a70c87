"""The machine's pace during a --rate max search (``run.pace``): context recorded beside the capacity."""
from __future__ import annotations

from mqbench.run.pace import PaceMeter, PaceSample, machine_pace, pace_ns_per_step, steal_ticks


def test_steal_ticks_reads_the_cpu_line_and_refuses_other_shapes():
    assert steal_ticks("cpu  100 5 50 800 10 0 5 30 0 0\n") == (30, 1000)
    for line in ("cpu0 100 5 50 800 10 0 5 30 0 0", "cpu 1 2 3", "cpu 1 2 3 4 5 6 7 x", "", "intr 5"):
        assert steal_ticks(line) is None, line
    found = steal_ticks()  # this machine: Linux, so a line; totals only grow
    assert found is None or (0 <= found[0] <= found[1])


def test_a_pace_is_cpu_time_per_step_and_a_meter_closes_one_sample_per_check():
    assert pace_ns_per_step(2_000) > 0
    meter = PaceMeter()
    meter.start()
    for _ in range(3):
        meter.sample()
    meter.close(7)
    meter.start()
    meter.close(8)  # a check too short to be sampled
    [first, second] = meter.samples
    assert first.check == 7 and first.pace_ns_per_step > 0 and second.pace_ns_per_step is None
    assert first.steal_share is None or 0.0 <= first.steal_share <= 1.0


def test_machine_pace_compares_the_checks_at_the_capacity_with_the_whole_search():
    # The capacity (1,000) held its hold and soak at a quick pace (10 ns/step) while the search's
    # other checks ran slower (20): the record shows the capacity held in a fast phase.
    history = [{"check": 1, "state": "ramp", "rate_per_s": 500.0}, {"check": 2, "state": "ramp", "rate_per_s": 2000.0},
               {"check": 3, "state": "drain", "rate_per_s": 0.0}, {"check": 4, "state": "hold", "rate_per_s": 1000.0},
               {"check": 5, "state": "soak", "rate_per_s": 1000.0}, {"check": 6, "state": "soak", "rate_per_s": 1000.0}]
    samples = [PaceSample(1, 20.0, 0.0), PaceSample(2, 21.0, 0.02), PaceSample(3, 22.0, None),
               PaceSample(4, 10.0, 0.0), PaceSample(5, 11.0, 0.01), PaceSample(6, None, None)]
    pace = machine_pace(history, samples, 1000.0)
    assert pace["by_check"][0] == [1, 20.0, 0.0] and len(pace["by_check"]) == 6
    assert pace["pace_ns_per_step_p50_at_capacity"] == 11.0 and pace["pace_ns_per_step_p50_search"] == 20.0
    assert pace["steal_share_p50_at_capacity"] == 0.01 and pace["steal_share_p50_search"] == 0.01
    none = machine_pace(history, samples, None)
    assert none["pace_ns_per_step_p50_at_capacity"] is None and none["steal_share_p50_at_capacity"] is None
