"""``--rate max``'s soak when it fails: repeated once as a whole new soak, then lowered to the median
its checks absorbed; and on a simulated machine with this one's long slow phases, seeds that agree."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest

from mqbench.harness.maxrate import DONE, DRAIN, SOAK, MaxRateSearch, Thresholds
from mqbench.run.orchestrator import RunSettings
from simsystem import HiccupAt, SlowPhaseBroker, run_search, run_search_within, start_in_hold

LIMITS = Thresholds(publish_latency_ms_p99_max=200.0)


def test_one_stalled_soak_check_is_repeated_with_a_whole_new_soak():
    # The hold at 9,800 passes, its soak's fourth check stalls (a stall shorter than a check): the
    # rate is unseated and listed in soak_failed, then offered again after a drain with a whole new
    # soak (hold and soak, every check of it). It holds: 9,800 stands, the first unheld rate stays
    # the one that failed twice (10,300). Before, the stall lowered the rate to what the stalled
    # check absorbed, and each such stall in a real search took another step down (`single`'s seeds
    # 20.8 % apart at 180 s).
    search = MaxRateSearch(replace(RunSettings.default_search(), soak_checks=4), LIMITS)
    start_in_hold(search, 9_800.0, 10_300.0)
    run_search(search, HiccupAt(10_000, at={2 + 4}, share=0.7))
    result = search.result()
    assert result["state"] == DONE and result["capacity_soaked"]
    assert result["capacity_msgs_per_s"] == 9_800.0 and result["first_unheld_rate_msgs_per_s"] == 10_300.0
    [failure] = result["soak_failed"]
    assert failure["rate_per_s"] == 9_800.0 and failure["repeated"] and failure["checks_held"] == 5
    assert failure["absorbed_msgs_per_s"] == 7_000.0 and not failure["backlog_grew"]
    after = [h["state"] for h in search.history[failure["check"]:]]
    assert after == [DRAIN] + [SOAK] * 6 and result["capacity_checks_held"] == 6


def test_a_soak_that_fails_its_repeat_comes_down_to_the_median_its_checks_absorbed():
    # Both the soak at 9,800 and its repeat meet a stall: 9,800 failed twice, so it is the first
    # unheld rate now; the next candidate is the median of what its soak checks absorbed (9,800:
    # the stalls' 7,000 do not drag it down), kept a tolerance under the rate, and soaked.
    settings = replace(RunSettings.default_search(), soak_checks=4)
    search = MaxRateSearch(settings, LIMITS)
    start_in_hold(search, 9_800.0, 10_300.0)
    run_search(search, HiccupAt(10_000, at={2 + 4, 2 + 4 + 1 + 4}, share=0.7))
    result = search.result()
    assert result["state"] == DONE and result["capacity_soaked"]
    assert [(f["rate_per_s"], f["repeated"]) for f in result["soak_failed"]] == [(9_800.0, True), (9_800.0, False)]
    assert result["first_unheld_rate_msgs_per_s"] == 9_800.0
    assert result["capacity_msgs_per_s"] == pytest.approx(9_800.0 * (1 - settings.tolerance))
    assert result["capacity_checks_held"] == settings.hold_checks + settings.soak_checks


def test_a_failed_soak_is_not_repeated_when_the_budget_cannot_afford_it():
    # A repeat costs a whole soak after a drain; with less budget than that and one more hold, the
    # rate is lowered at once (to what its failing check absorbed), so the search still ends with
    # a rate that held rather than out of time in the middle of a repeat.
    search = MaxRateSearch(replace(RunSettings.default_search(), soak_checks=4), LIMITS)
    start_in_hold(search, 9_800.0, 10_300.0)
    system = HiccupAt(10_000, at={2 + 4}, share=0.7)
    while not search.finished:
        search.observe(system.run(search.rate_per_s), checks_left=10)
    result = search.result()
    assert [(f["rate_per_s"], f["repeated"]) for f in result["soak_failed"]] == [(9_800.0, False)]
    assert result["state"] == DONE and 7_000.0 <= result["capacity_msgs_per_s"] < 9_800.0


def test_long_slow_phases_three_seeds_agree_because_a_failed_soak_is_repeated():
    # This machine as the quiet 180-s searches of stop 17 saw it: slow phases of 30-60 s at 62-70 %
    # of the fast speed, fast phases of 20-60 s, and a check in twenty stalled by a fifth
    # (``SlowPhaseBroker``). Each soak failure used to lower the rate to what its one failing check
    # absorbed, so a stall inside a slow phase ratcheted the rate under the slow speed and a soak
    # that fit in a fast phase stood at the fast one: 16 of 20 seed triples more than 15 % apart
    # (`single`'s real seeds: 20.8 %). A failed soak is now repeated once (a whole new soak), and a
    # rate that fails its repeat comes down to the median its soak checks absorbed: at most 4 of
    # 20 (3 in `tests/harness` evaluations; the rest are phases of different depth, 13 % apart by
    # themselves). Every capacity held a whole hold and soak, at most the fast speed.
    run = RunSettings(source="orders", cells=[])
    fast = 6_000

    def triples_apart(settings):
        found = []
        for seed in range(1, 61):
            search = MaxRateSearch(settings, run.thresholds)
            system = SlowPhaseBroker(fast, random.Random(seed))
            run_search_within(search, system, 180_000, check_ms=run.check_ms, settle_ms=run.settle_ms)
            result = search.result()
            assert result["state"] == DONE and result["capacity_soaked"], (seed, search.history)
            assert result["capacity_checks_held"] >= settings.hold_checks + settings.soak_checks
            found.append(result["capacity_msgs_per_s"])
        assert max(found) <= fast, found
        return found, sum(max(found[i:i + 3]) > 1.15 * min(found[i:i + 3]) for i in range(0, 60, 3))

    assert run.search.soak_repeats == 1
    found, apart = triples_apart(run.search)
    assert apart <= 4 and min(found) >= 0.55 * fast, found
    found, apart = triples_apart(replace(run.search, soak_repeats=0))
    assert apart >= 12, found
