"""The max-sustainable-rate search against simulated systems whose capacity is known."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest

from mqbench.errors import UserError
from mqbench.harness.maxrate import (BACKLOGGED, BISECT, CONFIRM, DONE, DRAIN, DRAINED, FAILED, HEALTHY, HOLD, RAMP,
                                     SOAK, TRANSITIONS, UNHEALTHY, VERIFY, MaxRateSearch, Observation, SearchSettings,
                                     Thresholds, verdict_of)
from mqbench.run.orchestrator import RunSettings
from simsystem import (FluidBroker, HiccupAt, NoisyEdgeBroker, SaggingBroker, StallingBroker, TwoLevelBroker,
                       run_search, run_search_within, start_in_hold)

LIMITS = Thresholds(publish_latency_ms_p99_max=200.0)


def held_run(search, rate):
    """The longest run of consecutive healthy checks at ``rate`` in a hold or soak (a hold restarted
    by a repeat that cleared a stall counts that repeat as its first check)."""
    best = run = 0
    for h in search.history:
        if h["state"] in (HOLD, SOAK, CONFIRM) and h["rate_per_s"] == rate and h["verdict"] == HEALTHY:
            run += 1
            best = max(best, run)
        elif h["state"] != DRAIN:
            run = 0
    return best


@pytest.mark.parametrize("capacity", [800, 3_000, 10_000, 47_500, 123_456, 1_000_000])
def test_settles_just_under_an_exact_capacity(capacity):
    system = FluidBroker(capacity)
    search = run_search(MaxRateSearch(SearchSettings(), LIMITS), system)
    assert search.state == DONE
    found = search.sustainable_rate_per_s
    assert 0.95 * capacity <= found <= capacity
    # "Reliably": the reported rate held for the whole hold; the transient peak is reported apart.
    assert search.peak_healthy_rate_per_s >= found
    assert held_run(search, search.capacity_msgs_per_s) >= search.settings.hold_checks


@pytest.mark.parametrize("seed", range(8))
def test_noisy_system_settles_within_a_few_percent_and_never_above(seed):
    capacity = 20_000
    # Interference takes up to ~10 % of the capacity away in any one interval (seeded).
    system = FluidBroker(capacity, noise_share=0.04, rng=random.Random(seed))
    search = run_search(MaxRateSearch(SearchSettings(hold_checks=10), LIMITS), system)
    assert search.state == DONE
    assert 0.90 * capacity <= search.sustainable_rate_per_s <= capacity


def test_a_rate_a_hair_above_capacity_is_reported_at_the_capacity_it_showed():
    # Start exactly 0.1 % above capacity: backlog grows too slowly to trip the per-check limits,
    # so only the hold's growth accounting keeps the report at or under the capacity.
    capacity = 50_000
    search = MaxRateSearch(SearchSettings(start_rate_per_s=capacity * 1.001, ramp_factor=1.5), LIMITS)
    run_search(search, FluidBroker(capacity))
    assert search.state == DONE
    assert search.sustainable_rate_per_s <= capacity


def test_latency_bound_limits_the_rate_below_raw_capacity():
    # Consumers keep up and producers may queue 20,000 in flight: only the p99 bound stops the ramp.
    capacity = 10_000
    limits = Thresholds(publish_backlog_msgs_max=10**9, consume_backlog_msgs_max=10**9, publish_latency_ms_p99_max=50.0)
    search = run_search(MaxRateSearch(SearchSettings(), limits), FluidBroker(capacity, window_msgs=20_000))
    assert search.state == DONE
    assert search.sustainable_rate_per_s <= capacity
    unhealthy = [h for h in search.history if h["verdict"] == UNHEALTHY]
    assert unhealthy and any("p99 publish latency" in r for h in unhealthy for r in h["reasons"])


class ErroringSystem:
    """Publishes fail above ``error_above_per_s`` (e.g. a broker flow-control limit)."""

    def __init__(self, error_above_per_s: float):
        self.error_above_per_s = error_above_per_s

    def run(self, rate_per_s: float) -> Observation:
        intended = int(rate_per_s)
        errors = max(0, intended - int(self.error_above_per_s))
        return Observation(interval_ms=1000, intended=intended, published=intended - errors, publish_errors=errors,
                           publish_backlog_msgs=0, consume_backlog_msgs=0, publish_latency_ms_p99=3.0)


def test_error_share_limits_the_rate():
    search = run_search(MaxRateSearch(SearchSettings(), Thresholds(error_share_max=0.001)), ErroringSystem(6_000))
    assert search.state == DONE
    # Up to 0.1 % errors are tolerated: 6006 msgs/s gives 6 errors in 6006.
    assert 0.95 * 6_000 <= search.sustainable_rate_per_s <= 6_000 / (1 - 0.001)


def test_a_system_that_never_keeps_up_fails_the_search():
    search = run_search(MaxRateSearch(SearchSettings(max_checks=100), LIMITS), FluidBroker(0.5))
    assert search.state == FAILED
    assert search.sustainable_rate_per_s is None
    assert search.result()["state"] == FAILED


def test_drain_offers_no_load_until_the_backlog_is_gone():
    system = FluidBroker(10_000, consumer_capacity_per_s=10_500)
    search = run_search(MaxRateSearch(SearchSettings(), LIMITS), system)
    drains = [h for h in search.history if h["state"] == DRAIN]
    assert drains and all(h["rate_per_s"] == 0.0 for h in drains)
    # After every drain the next check is judged on a system with its backlog below the limits.
    for h in search.history:
        if h["state"] == DRAIN and h["verdict"] == DRAINED:
            assert h["next_state"] in (BISECT, HOLD, CONFIRM)


def test_every_state_and_verdict_has_a_move_and_a_finished_search_refuses_more():
    for state in (RAMP, BISECT, CONFIRM, HOLD):
        assert (state, HEALTHY) in TRANSITIONS and (state, UNHEALTHY) in TRANSITIONS
    assert (DRAIN, DRAINED) in TRANSITIONS and (DRAIN, BACKLOGGED) in TRANSITIONS
    search = run_search(MaxRateSearch(SearchSettings(), LIMITS), FluidBroker(5_000))
    with pytest.raises(UserError, match="already ended"):
        search.observe(FluidBroker(5_000).run(1000))


def test_verdict_names_every_reason():
    obs = Observation(interval_ms=1000, intended=100, published=90, publish_errors=10, publish_backlog_msgs=5000,
                      consume_backlog_msgs=7000, publish_latency_ms_p99=9000.0)
    healthy, reasons = verdict_of(obs, Thresholds())
    assert not healthy and len(reasons) == 5


@pytest.mark.parametrize("settings", [
    SearchSettings(start_rate_per_s=0), SearchSettings(ramp_factor=1.0), SearchSettings(tolerance=0),
    SearchSettings(hold_checks=0), SearchSettings(backoff_factor=1.0),
])
def test_bad_settings_are_user_errors(settings):
    with pytest.raises(UserError, match="max-rate search settings"):
        MaxRateSearch(settings)


def test_a_hold_whose_backlog_keeps_growing_fails_even_when_every_check_looks_healthy():
    # 1 % above capacity: 100 msgs of backlog per check never crosses the 1000 limit within a
    # 5-check hold, but the growth over the hold (500 > 0.5 % of 50,500 offered) fails it.
    # The hold starts there directly (bisection lands where it lands; a failed per-check hold now
    # comes down to the absorbed rate, so a search from the ramp rarely meets this case).
    capacity = 10_000
    search = MaxRateSearch(SearchSettings(), LIMITS)
    search.state, search.rate_per_s, search.good_per_s, search.bad_per_s = HOLD, capacity * 1.01, capacity * 1.01, 20_000.0
    search._start_hold(0)
    run_search(search, FluidBroker(capacity))
    growth_failures = [h for h in search.history
                       if h["state"] == HOLD and h["verdict"] == HEALTHY and h["next_state"] == DRAIN]
    assert growth_failures and growth_failures[0]["rate_per_s"] > capacity
    assert search.state == DONE and search.sustainable_rate_per_s <= capacity


def test_async_driver_runs_the_search_to_the_end():
    import asyncio

    from mqbench.harness.maxrate import drive_search

    system = FluidBroker(7_000)

    async def measure(rate_per_s):
        await asyncio.sleep(0)
        return system.run(rate_per_s)

    result = asyncio.run(drive_search(MaxRateSearch(SearchSettings(), LIMITS), measure))
    assert result["schema"] == "mqbench.max-rate/1" and result["state"] == DONE
    assert 0.95 * 7_000 <= result["sustainable_rate_per_s"] <= 7_000
    assert len(result["history"]) == result["checks"] == len(system.rates_offered)


def _hold_rates(search):
    return {h["rate_per_s"] for h in search.history if h["state"] == HOLD and h["verdict"] == HEALTHY}


@pytest.mark.parametrize("capacity", [900, 12_000])
def test_capacity_is_a_rate_that_held_and_the_first_unheld_failed_twice(capacity):
    search = run_search(MaxRateSearch(SearchSettings(), LIMITS), FluidBroker(capacity))
    result = search.result()
    assert result["state"] == DONE
    held = result["capacity_msgs_per_s"]
    # The capacity is an offered rate whose every hold check held, in a row ...
    assert held_run(search, held) >= search.settings.hold_checks
    # ... never an average over the search, and what it absorbed there is at most that rate.
    assert result["sustainable_rate_per_s"] == result["hold_achieved_msgs_per_s"] <= held
    unheld = result["first_unheld_rate_msgs_per_s"]
    assert unheld > held
    # It failed on repeat: twice in a row (confirm), or over a hold of several checks (growth).
    failed = [h for h in search.history if h["rate_per_s"] == unheld and h["next_state"] in (DRAIN, DONE)]
    assert failed and all(h["state"] in (CONFIRM, HOLD) for h in failed)
    assert all(h["verdict"] == HEALTHY for h in search.history if h["rate_per_s"] == held and h["state"] == HOLD)
    assert 0.93 * capacity <= held <= capacity * 1.01


class OneHiccup:
    """A broker of ``capacity`` whose ``hiccup_at``-th check is ruined by the machine (once)."""

    def __init__(self, capacity, hiccup_at):
        self.system = FluidBroker(capacity)
        self.rates_offered = self.system.rates_offered
        self.hiccup_at = hiccup_at

    def run(self, rate_per_s):
        obs = self.system.run(rate_per_s)
        if len(self.rates_offered) == self.hiccup_at:
            return Observation(interval_ms=obs.interval_ms, intended=obs.intended, published=obs.published,
                               publish_errors=obs.publish_errors, publish_backlog_msgs=obs.publish_backlog_msgs,
                               consume_backlog_msgs=obs.consume_backlog_msgs, publish_latency_ms_p99=5_000.0)
        return obs


def test_a_single_hiccup_during_the_ramp_does_not_set_the_capacity():
    # The second ramp check (2,000 msgs/s on a 10,000 msgs/s broker) sees one latency spike: without
    # the repeat the search would bisect between 1,000 and 2,000 and report a fifth of the capacity.
    search = run_search(MaxRateSearch(SearchSettings(), LIMITS), OneHiccup(10_000, hiccup_at=2))
    assert search.state == DONE
    assert search.capacity_msgs_per_s >= 0.93 * 10_000
    assert search.history[1]["verdict"] == UNHEALTHY and search.history[1]["next_state"] == DRAIN


def test_a_hold_that_fails_comes_down_to_what_it_absorbed_not_three_percent_at_a_time():
    # Bisection let a candidate 15 % over the capacity through (a lucky check): the failed hold
    # measured what the broker absorbed, so the next hold starts near the capacity.
    capacity = 10_000
    search = MaxRateSearch(SearchSettings(), LIMITS)
    search.state, search.rate_per_s, search.good_per_s, search.bad_per_s = HOLD, 11_500.0, 11_500.0, 12_000.0
    search._start_hold(0)
    run_search(search, FluidBroker(capacity))
    assert search.state == DONE and 0.9 * capacity <= search.capacity_msgs_per_s <= capacity
    failed_holds = [h for h in search.history if h["state"] == HOLD and h["next_state"] == DRAIN]
    assert len(failed_holds) <= 3  # 3 % steps would need five or more
    with pytest.raises(UserError, match="backoff_floor"):
        MaxRateSearch(SearchSettings(backoff_floor=0.99))


def test_one_stall_in_a_hold_is_repeated_not_taken_as_the_capacity():
    # Before: the stalled hold check failed the hold at once, the absorbed rate it measured (30 %)
    # set the next candidate to the backoff floor (80 %) and nothing ever went back up.
    capacity = 10_000
    search = MaxRateSearch(SearchSettings(), LIMITS)
    start_in_hold(search, 9_800.0, 10_300.0)
    run_search(search, HiccupAt(capacity, at={2}))
    assert search.state == DONE
    assert search.capacity_msgs_per_s >= 9_800.0 and search.sustainable_rate_per_s <= capacity
    assert search.first_unheld_rate_msgs_per_s > search.capacity_msgs_per_s
    stalled = search.history[1]
    assert stalled["state"] == HOLD and stalled["verdict"] == UNHEALTHY and stalled["next_state"] == DRAIN
    assert search.history[3]["state"] == CONFIRM and search.history[3]["next_state"] == HOLD


def test_a_backed_off_hold_is_followed_by_an_upward_bisection():
    # The hold at 9,800 fails for real (the broker is slower than it looked) and its failing check
    # measured a stall too: the backoff lands at the floor (7,840). Before, that was the capacity, 20 %
    # under the first unheld rate; now the search bisects back up between what held and what failed.
    capacity = 9_500
    search = MaxRateSearch(SearchSettings(), LIMITS)
    start_in_hold(search, 9_800.0, 10_300.0)
    run_search(search, HiccupAt(capacity, at={3, 4}, share=0.2))
    assert search.state == DONE
    held, unheld = search.capacity_msgs_per_s, search.first_unheld_rate_msgs_per_s
    assert held <= capacity and unheld > held
    assert (unheld - held) / unheld <= 2 * search.settings.tolerance + 1e-9
    result = search.result()
    assert result["bracket_msgs_per_s"] == [held, unheld]
    assert result["bracket_width_share"] == pytest.approx((unheld - held) / unheld)
    assert any(h["state"] == BISECT and h["rate_per_s"] > 7_840.0 for h in search.history)


def test_a_budget_that_ends_after_a_hold_keeps_the_rate_that_held():
    capacity = 9_500
    search = MaxRateSearch(SearchSettings(), LIMITS)
    start_in_hold(search, 9_800.0, 10_300.0)
    system = HiccupAt(capacity, at={3, 4}, share=0.2)
    while search.rebisections == 0 and not search.finished:
        search.observe(system.run(search.rate_per_s))
    assert not search.finished
    search.give_up()
    assert search.state == DONE and search.capacity_msgs_per_s is not None
    assert search.capacity_msgs_per_s <= capacity
    fresh = MaxRateSearch(SearchSettings(), LIMITS)
    fresh.observe(FluidBroker(capacity).run(fresh.rate_per_s))
    fresh.give_up()
    assert fresh.state == FAILED and fresh.capacity_msgs_per_s is None


def test_a_drain_waits_for_the_requests_still_in_flight():
    # An overload leaves up to the in-flight window of sends unacknowledged; the next check would
    # otherwise start with their latency (and a broker still busy with them).
    search = MaxRateSearch(SearchSettings(), LIMITS)
    search._drain_then(CONFIRM, 1000.0)
    search.observe(Observation(1000, 0, 0, 0, 0, 0, None, publish_in_flight=800))
    assert search.state == DRAIN
    search.observe(Observation(1000, 0, 0, 0, 0, 0, None, publish_in_flight=0))
    assert search.state == CONFIRM


@pytest.mark.parametrize("capacity", [400, 1_200, 6_000])
def test_three_seeds_on_a_stalling_machine_agree_within_15_percent(capacity):
    # A machine that stalls one check in seven (a checkpoint, GC, a neighbour) and jitters by a few
    # %: every three searches (different seeds) must agree within 15 %, never report more than the
    # tolerance above the ceiling, and stay within the check count a 90 s search affords. Before: 9 to 11 of 13 such
    # triples were more than 15 % apart (the backoff floor after a stalled hold, no way back up).
    # The backlogs are as noisy as worker reports up to 0.5 s old make them; the settings are
    # `mqbench run`'s (RunSettings) without the soak (`--soak-checks 0`): with it, the capacity
    # is what holds through such stalls (test below).
    settings = replace(RunSettings.default_search(), soak_checks=0)
    found, checks = [], []
    for seed in range(1, 13):
        search = run_search(MaxRateSearch(settings, RunSettings(source="orders", cells=[]).thresholds),
                            StallingBroker(capacity, random.Random(seed), backlog_noise_s=0.5))
        assert search.state == DONE, search.history
        found.append(search.capacity_msgs_per_s)
        checks.append(sum(1 for h in search.history if h["state"] != DRAIN))
        assert search.result()["bracket_width_share"] <= 2 * settings.tolerance + 1e-9
    # Backlog growth under half a second of load counts as report noise, so a rate up to the
    # tolerance over the ceiling can hold; never more.
    assert max(found) <= capacity * (1 + settings.tolerance)
    for first in range(0, len(found), 3):
        triple = found[first:first + 3]
        assert (max(triple) - min(triple)) / max(triple) <= 0.15, found
    assert sum(checks) / len(checks) <= 18, checks


def test_a_ramp_rate_that_failed_twice_in_one_long_stall_is_offered_again_after_the_hold():
    # 200 msgs/s on a 400 msgs/s broker fails twice in a row (one stall across both checks): the
    # search converges under 200 and holds there, then offers 200 once more, which now passes,
    # and searches on above it.
    search = run_search(MaxRateSearch(SearchSettings(start_rate_per_s=200.0, hold_checks=2, tolerance=0.05),
                                      Thresholds(publish_latency_ms_p99_max=1000.0)),
                        HiccupAt(400, at={1, 3}, share=0.3))
    assert search.state == DONE
    assert any(h["state"] == VERIFY and h["rate_per_s"] == 200.0 and h["verdict"] == HEALTHY
               for h in search.history)
    assert 0.9 * 400 <= search.capacity_msgs_per_s <= 400


def test_a_soaked_capacity_on_a_stalling_machine_held_through_every_stall():
    # The same machine with `mqbench run`'s soak: a check in seven loses 60 % of the capacity, so a
    # rate near the capacity fails one check of every 25-s soak. A failed soak is repeated once (a
    # whole new soak), then the rate comes down: the search ends on a rate that held every check of
    # a whole soak, stalls included, and says so; never above the capacity. A soak failure at the
    # capacity itself is one that its repeat cleared.
    run = RunSettings(source="orders", cells=[])
    for seed in range(1, 7):
        search = run_search(MaxRateSearch(run.search, run.thresholds),
                            StallingBroker(1_200, random.Random(seed), backlog_noise_s=0.5))
        result = search.result()
        assert result["state"] == DONE and result["capacity_soaked"], search.history
        held = result["capacity_msgs_per_s"]
        assert result["capacity_checks_held"] >= run.search.hold_checks + run.search.soak_checks
        assert held_run(search, held) >= run.search.hold_checks + run.search.soak_checks
        assert held <= 1_200 * (1 + run.search.tolerance)
        assert all(f["rate_per_s"] > held or (f["rate_per_s"] == held and f["repeated"])
                   for f in result["soak_failed"])


@pytest.mark.parametrize("capacity, edge_share", [(2_500, 0.2), (4_000, 0.2), (2_500, 0.3), (4_000, 0.3)])
def test_a_noisy_edge_settles_within_the_budget_and_three_seeds_agree(capacity, edge_share):
    # raft3 on a loaded machine: checks up to 20-30 % under the capacity alternate held/unheld, and
    # a failing check still absorbs about 92 % of its load. With one 3 % back-off per failed hold
    # and no eye on the time budget, `mqbench run`'s settings ran out of their 60 s before any rate
    # held on 1 of 12 seeds at 2,500 and 2 of 12 at 4,000 (2 of 3 on the real raft3). Now: back-offs
    # that double, a hold secured when the budget runs short, a soak shortened to what the budget
    # affords with room for one more hold. Every search ends done within the budget with a
    # capacity that held every check of its hold and soak: at the edge's lower end, where checks
    # stop failing (the old search, without the soak, reported rates up to the middle of the edge,
    # which fail a check in every few), never under the back-off floor below it nor above the
    # ceiling; every seed triple agrees within 15 %.
    run = RunSettings(source="orders", cells=[])
    found = []
    for seed in range(1, 13):
        search = MaxRateSearch(run.search, run.thresholds)
        used_ms = run_search_within(search, NoisyEdgeBroker(capacity, random.Random(seed), edge_share=edge_share), 60_000,
                                    check_ms=run.check_ms, settle_ms=run.settle_ms)
        result = search.result()
        assert result["state"] == DONE and result["capacity_msgs_per_s"] is not None, (seed, used_ms, search.history)
        held = result["capacity_msgs_per_s"]
        assert held_run(search, held) >= run.search.hold_checks and held <= capacity
        assert result["capacity_checks_held"] >= held_run(search, held)
        unheld = result["first_unheld_rate_msgs_per_s"]
        assert unheld is None or result["bracket_msgs_per_s"] == [held, unheld]
        found.append(held)
    low = capacity * (1 - edge_share)
    assert min(found) >= run.search.backoff_floor * low and max(found) <= capacity, found
    for first in range(0, len(found), 3):
        triple = found[first:first + 3]
        assert (max(triple) - min(triple)) / max(triple) <= 0.15, found


def test_a_broker_that_bursts_then_sags_ends_with_a_rate_that_held_within_the_budget():
    # `single` with the lean load generator (quiet machine, seed 2): the ramp passed 6,400 in one
    # check, every hold from 6,720 down failed, and each failed hold was repeated after a drain
    # (four checks per candidate), so the 60 s budget ended with no rate held. When the budget is
    # short a failed hold is no longer repeated: it backs off at once.
    run = RunSettings(source="orders", cells=[])
    found = []
    for seed in range(1, 13):
        search = MaxRateSearch(run.search, run.thresholds)
        run_search_within(search, SaggingBroker(5_000, random.Random(seed)), 60_000,
                          check_ms=run.check_ms, settle_ms=run.settle_ms)
        result = search.result()
        assert result["state"] == DONE and result["capacity_msgs_per_s"] is not None, (seed, search.history)
        assert held_run(search, result["capacity_msgs_per_s"]) >= run.search.hold_checks
        # A hold passes at the acknowledged share the thresholds allow (95 %), so the offered rate
        # may stand a little above the sustained ceiling (its first check, after a drain, bursts).
        assert result["capacity_msgs_per_s"] <= 5_000 / run.thresholds.published_share_min
        found.append(result["capacity_msgs_per_s"])
    assert min(found) >= 0.7 * 5_000, found


@pytest.mark.parametrize("mean_level_s", [2.0, 5.0, 10.0, 30.0])
def test_a_machine_with_two_speeds_gives_the_slow_speeds_capacity_on_every_seed(mean_level_s):
    # `single` and raft3 here: the same code costs 54 or 75 broker µs/msg as the machine's speed
    # changes every few seconds (README, "Two cost levels"). Before the soak, a search held the
    # rate of whichever level its 2-check hold met: 3-4 of 4 seed triples ended more than 15 %
    # apart (25-32 of 40 in `tests/harness` evaluations with levels of 2-30 s), and most capacities
    # failed a check within a minute at that rate. With `mqbench run`'s 25-s soak (10 checks in a
    # row after the hold, none failing) and its `--duration 120s` budget, every capacity held every
    # check of its soak, lies at the slow level, and every seed triple agrees within 15 %.
    run = RunSettings(source="orders", cells=[])
    fast, slow_share = 6_000, 0.72
    slow = fast * slow_share
    found = []
    for seed in range(1, 13):
        search = MaxRateSearch(run.search, run.thresholds)
        run_search_within(search, TwoLevelBroker(fast, random.Random(seed), slow_share=slow_share,
                                                 mean_level_s=mean_level_s), 120_000,
                          check_ms=run.check_ms, settle_ms=run.settle_ms)
        result = search.result()
        assert result["state"] == DONE and result["capacity_msgs_per_s"] is not None, (seed, search.history)
        assert result["capacity_checks_held"] >= held_run(search, result["capacity_msgs_per_s"]) >= run.search.hold_checks
        found.append(result["capacity_msgs_per_s"])
    # A soak check's share may be judged with the check before it (acks lagging into the next
    # check), so a one-check slow phase passes at 2 x 95 % - 100 % = 90 % absorbed: up to 1/0.9.
    assert 0.85 * slow <= min(found) and max(found) <= slow / (2 * run.thresholds.published_share_min - 1), found
    for first in range(0, len(found), 3):
        triple = found[first:first + 3]
        assert (max(triple) - min(triple)) / max(triple) <= 0.15, found


def test_without_the_soak_a_machine_with_two_speeds_gives_either_speed():
    # The same machine, `--soak-checks 0` (the search before the soak): a 2-check hold meets either
    # level, so seeds land at either speed; each capacity still held its hold.
    run = RunSettings(source="orders", cells=[])
    settings = replace(run.search, soak_checks=0)
    found = []
    for seed in range(1, 13):
        search = MaxRateSearch(settings, run.thresholds)
        run_search_within(search, TwoLevelBroker(6_000, random.Random(seed)), 120_000,
                          check_ms=run.check_ms, settle_ms=run.settle_ms)
        assert search.state == DONE and held_run(search, search.capacity_msgs_per_s) >= settings.hold_checks
        found.append(search.capacity_msgs_per_s)
    assert max(found) > 1.2 * 0.72 * 6_000 and min(found) < 1.1 * 0.72 * 6_000, found


def test_a_soak_the_budget_cannot_afford_is_shortened_and_says_so():
    # 30 judged checks: the soak is cut to leave room for one more hold, and the result says the
    # capacity held fewer checks than a whole soak.
    search = MaxRateSearch(replace(RunSettings.default_search(), soak_checks=40), LIMITS)
    used = run_search_within(search, FluidBroker(5_000), 30 * 2_500)
    result = search.result()
    assert result["state"] == DONE and not result["capacity_soaked"] and used <= 30 * 2_500
    assert search.settings.hold_checks < result["capacity_checks_held"] < search.settings.hold_checks + 40


class LaggingAcks:
    """A ``TwoLevelBroker`` whose acks are counted with jitter: each check hands a seeded share of its
    load (gaussian, ``sd`` of what it offered) over to the next check's count, as publish latency
    moving by a tenth of a second does with a 2-s check. Nothing is lost: the system absorbed it."""

    def __init__(self, inner, rng, sd):
        self.inner, self.rng, self.sd, self.owed = inner, rng, sd, 0

    def run(self, rate_per_s):
        obs = self.inner.run(rate_per_s)
        shift = int(self.rng.gauss(0.0, self.sd) * obs.intended) if rate_per_s else 0
        published = max(0, obs.published + self.owed - shift)
        self.owed = shift
        return Observation(obs.interval_ms, obs.intended, published, obs.publish_errors, obs.publish_backlog_msgs,
                           obs.consume_backlog_msgs, obs.publish_latency_ms_p99, obs.publish_in_flight)


def test_acks_that_lag_into_the_next_check_do_not_fail_a_soak():
    # Judged check by check, a soak on a two-speed machine whose ack counts jitter by 2-3 % of a
    # check came down on spurious failures (the soak repeats nothing): 4-11 of 20 seed triples
    # apart, capacities down to half the slow speed. A soak check that fails on its share alone is
    # judged with the check before it: 1-2 of 20 (20 triples of `tests/harness` evaluations).
    run = RunSettings(source="orders", cells=[])
    slow = 6_000 * 0.72
    found = []
    for seed in range(1, 13):
        search = MaxRateSearch(run.search, run.thresholds)
        system = LaggingAcks(TwoLevelBroker(6_000, random.Random(seed)), random.Random(seed + 999), 0.03)
        run_search_within(search, system, 120_000, check_ms=run.check_ms, settle_ms=run.settle_ms)
        assert search.state == DONE and search.capacity_msgs_per_s is not None, search.history
        found.append(search.capacity_msgs_per_s)
    assert min(found) >= 0.75 * slow and max(found) <= slow / (2 * run.thresholds.published_share_min - 1), found
    for first in range(0, len(found), 3):
        triple = found[first:first + 3]
        assert (max(triple) - min(triple)) / max(triple) <= 0.15, found
