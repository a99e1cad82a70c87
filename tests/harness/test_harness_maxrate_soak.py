"""``--rate max``'s soak when it fails: repeated once as a whole new soak, then lowered to the median
its checks absorbed; a soak that held confirmed once more after a drain; and on simulated machines
with this one's long slow phases, seeds that agree."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest

from mqbench.harness.maxrate import DONE, DRAIN, HOLD, SOAK, MaxRateSearch, Thresholds
from mqbench.run.orchestrator import RunSettings
from simsystem import (HiccupAt, SlowPhaseBroker, SlowsAfter, TwoLevelBroker, run_search, run_search_within,
                       start_in_hold)

LIMITS = Thresholds(publish_latency_ms_p99_max=200.0)


def test_one_stalled_soak_check_is_repeated_with_a_whole_new_soak():
    # The hold at 9,800 passes, its soak's fourth check stalls (a stall shorter than a check): the
    # rate is unseated and listed in soak_failed, then offered again after a drain with a whole new
    # soak (hold and soak, every check of it). It holds: 9,800 stands, the first unheld rate stays
    # the one that failed twice (10,300). Before, the stall lowered the rate to what the stalled
    # check absorbed, and each such stall in a real search took another step down (`single`'s seeds
    # 20.8 % apart at 180 s).
    search = MaxRateSearch(replace(RunSettings.default_search(), soak_checks=4, confirm_soaks=0), LIMITS)
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
    settings = replace(RunSettings.default_search(), soak_checks=4, confirm_soaks=0)
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


def _triples_apart(settings, system_of_seed, seeds=60, budget_ms=180_000):
    """Capacities of ``seeds`` searches within ``budget_ms`` and how many seed triples are more than
    15 % apart (max/min - 1); every search must end with a rate that held at least its hold."""
    run = RunSettings(source="orders", cells=[])
    found, soaked = [], 0
    for seed in range(1, seeds + 1):
        search = MaxRateSearch(settings, run.thresholds)
        run_search_within(search, system_of_seed(seed), budget_ms, check_ms=run.check_ms, settle_ms=run.settle_ms)
        result = search.result()
        assert result["state"] == DONE, (seed, search.history)
        assert result["capacity_checks_held"] >= settings.hold_checks, (seed, search.history)
        soaked += bool(result["capacity_soaked"])
        found.append(result["capacity_msgs_per_s"])
    return found, soaked, sum(max(found[i:i + 3]) > 1.15 * min(found[i:i + 3]) for i in range(0, seeds, 3))


def test_long_slow_phases_three_seeds_agree_because_a_failed_soak_is_repeated():
    # This machine as the quiet 180-s searches of stop 17 saw it: slow phases of 30-60 s at 62-70 %
    # of the fast speed, fast phases of 20-60 s, and a check in twenty stalled by a fifth
    # (``SlowPhaseBroker``). Each soak failure used to lower the rate to what its one failing check
    # absorbed, so a stall inside a slow phase ratcheted the rate under the slow speed and a soak
    # that fit in a fast phase stood at the fast one: 16 of 20 seed triples more than 15 % apart
    # (`single`'s real seeds: 20.8 %). A failed soak is now repeated once (a whole new soak), and a
    # rate that fails its repeat comes down to the median its soak checks absorbed: 4 of 20 (11 of
    # 100 in `tests/harness` evaluations, 14 before the confirmation soak; the rest are phases of
    # different depth, 13 % apart by themselves), 10 without the repeat. Every capacity held at
    # least its hold, at most the fast speed; all but one held a whole soak (the budget shortened
    # the last one's, as its record says).
    run = RunSettings(source="orders", cells=[])
    fast = 6_000
    assert run.search.soak_repeats == 1
    found, soaked, apart = _triples_apart(run.search, lambda seed: SlowPhaseBroker(fast, random.Random(seed)))
    assert apart <= 5 and soaked >= 58 and 0.55 * fast <= min(found) and max(found) <= fast, found
    found, soaked, apart = _triples_apart(replace(run.search, soak_repeats=0),
                                          lambda seed: SlowPhaseBroker(fast, random.Random(seed)))
    assert apart >= 8, found


@pytest.mark.parametrize("model", ["slow phases after fast ones of 30-90 s", "two speeds, 30-s levels"])
def test_a_confirmation_soak_brings_seeds_whose_soak_fit_in_a_fast_phase_down_to_the_slow_speed(model):
    # raft3's quiet seeds at 180 s (stop 18): seed 1 held 8,169 straight, seeds 2 and 3 came down to
    # 7,055 and 6,818 (19.8 % apart). A soak of 25 s fits inside a fast phase of up to a minute and
    # a half, so a seed that met one stood at the fast speed. Now a soak that held is confirmed once
    # more after a drain, while the budget affords that and a whole soak below it should the
    # confirmation fail: seed triples more than 15 % apart, of 20 (of 100 in `tests/harness`
    # evaluations at 180 s: 35 -> 17 and 36 -> 14).
    run = RunSettings(source="orders", cells=[])
    if model.startswith("slow"):
        def system(seed):
            return SlowPhaseBroker(6_000, random.Random(seed), fast_s=(30.0, 90.0))
    else:
        def system(seed):
            return TwoLevelBroker(6_000, random.Random(seed), mean_level_s=30.0)
    assert run.search.confirm_soaks == 1
    found, soaked, apart = _triples_apart(run.search, system)
    before, _, apart_before = _triples_apart(replace(run.search, confirm_soaks=0), system)
    assert apart <= 3 and apart_before >= 8 and soaked >= 58, (found, before)
    assert max(found) <= 6_000


def test_a_soak_that_held_is_confirmed_by_a_whole_new_soak_after_a_drain():
    # Steady machine: the hold and soak at 9,800 hold (12 checks), then a drain and a whole new soak
    # (12 more), which holds too: the capacity stands, held by two whole soaks.
    search = MaxRateSearch(RunSettings.default_search(), LIMITS)
    start_in_hold(search, 9_800.0, 10_300.0)
    run_search(search, SlowsAfter(10_000, after=10_000))
    result = search.result()
    whole = search.settings.hold_checks + search.settings.soak_checks
    assert [h["state"] for h in search.history] == [HOLD] * 2 + [SOAK] * (whole - 2) + [DRAIN] + [SOAK] * whole
    assert result["capacity_msgs_per_s"] == 9_800.0 and result["capacity_soaks_held"] == 2
    assert result["capacity_soaked"] and result["soak_failed"] == [] and result["capacity_checks_held"] == 2 * whole


def test_a_confirmation_that_fails_lowers_the_rate_at_once_to_what_holds_the_slow_speed():
    # The machine turns slow (70 %) during the confirmation soak: the rate is unseated (listed as a
    # confirming failure, not repeated: the confirmation is the soak's repeat in time) and comes down
    # to the median of its soak checks, then on to what the slow machine carries; the capacity held
    # a whole soak at the slow speed, never above it.
    search = MaxRateSearch(RunSettings.default_search(), LIMITS)
    start_in_hold(search, 9_800.0, 10_300.0)
    run_search(search, SlowsAfter(10_000, after=12 + 1 + 4))
    result = search.result()
    first = result["soak_failed"][0]
    assert first["rate_per_s"] == 9_800.0 and first["confirming"] and not first["repeated"]
    assert result["state"] == DONE and result["capacity_soaked"] and result["capacity_msgs_per_s"] <= 7_000.0
    assert result["capacity_msgs_per_s"] >= 0.8 * 7_000.0
    assert not any(f["confirming"] for f in result["soak_failed"][1:])


def test_no_confirmation_when_the_budget_cannot_afford_one_and_a_soak_below_it():
    # With 30 checks left (less than two whole soaks and a drain), the soak that held stands alone.
    search = MaxRateSearch(RunSettings.default_search(), LIMITS)
    start_in_hold(search, 9_800.0, 10_300.0)
    system = SlowsAfter(10_000, after=10_000)
    while not search.finished:
        search.observe(system.run(search.rate_per_s), checks_left=2 * 12 + 2)
    result = search.result()
    assert result["capacity_msgs_per_s"] == 9_800.0 and result["capacity_soaks_held"] == 1
    assert DRAIN not in [h["state"] for h in search.history]
