"""``--rate max``: find the highest publish rate the system under test sustains reliably.

A small state machine, sans-I/O: the driver runs the load at ``search.rate_per_s`` for one check
interval, measures an ``Observation`` of that interval and calls ``search.observe(obs)``, which
returns the rate for the next interval. Nothing here reads a clock or sleeps.

The rule
--------

A check is **healthy** when, at the end of the interval, all of these hold (``Thresholds``):

* publish backlog (messages the schedule wanted sent but the producers have not sent yet)
  ``<= publish_backlog_msgs_max``;
* consume backlog (published but not yet consumed) ``<= consume_backlog_msgs_max``;
* error share ``publish_errors / (published + publish_errors) <= error_share_max``;
* p99 publish latency of the interval ``<= publish_latency_ms_p99_max``;
* when ``published_share_min`` is set: messages acknowledged in the interval ``>=
  published_share_min * intended`` (the system absorbed what was offered; a small overload whose
  backlog grows too slowly to cross a count threshold within one check fails here at once).

States and moves (``TRANSITIONS`` is the table the code reads):

==========  ==========  ====================================================================
state       verdict     move
==========  ==========  ====================================================================
ramp        healthy     ``good = rate``; ``rate *= ramp_factor`` (while nothing failed yet)
ramp        unhealthy   suspect ``rate``: drain, then **confirm** it with a repeat check
bisect      healthy     ``good = rate``; next ``rate = (good + bad) / 2``
bisect      unhealthy   suspect ``rate``: drain, then **confirm** it with a repeat check
confirm     healthy     the failure did not repeat (a busy machine's hiccup): the rate counts
                        as healthy and the suspended ramp or bisection moves on from it
confirm     unhealthy   ``bad = rate`` (failed twice); drain, then bisect between ``good`` and
                        ``bad``
drain       drained     resume the state that was interrupted, at its next rate
drain       backlogged  offer rate 0 and wait (the backlog left by an overload must not be
                        blamed on the next rate); fail after ``drain_checks_max`` checks
hold        healthy     one more healthy check at the candidate rate; after ``hold_checks`` in
                        a row, and if the backlog did not grow over the hold by more than
                        ``hold_growth_share_max`` of the messages offered in it, **done**
hold        unhealthy   ``bad = rate``; drain, then hold again at what the failed hold absorbed
                        (acknowledged msgs/s of the failing check, or over the hold when its
                        growth failed it), kept between ``rate * backoff_floor`` and ``rate *
                        backoff_factor``: a candidate that a lucky check let through comes down
                        to the measured rate at once instead of 3 % per failed hold
==========  ==========  ====================================================================

Bisection stops when ``bad - good <= tolerance * bad``: the candidate is then ``good`` and the
search moves to **hold**. A search that is **done** reports three figures, never an average over
the search (whose ramp, overload and drain checks at rate 0 say nothing about capacity):

* ``capacity_msgs_per_s``: the offered rate that held, every check of the hold in a row (the
  repeat that confirms it);
* ``first_unheld_rate_msgs_per_s``: the lowest rate above it that did not hold, itself confirmed
  by a repeat check (``bad`` at the end);
* ``sustainable_rate_per_s`` (= ``hold_achieved_msgs_per_s``): what the system absorbed during
  the hold (see below), at most ``capacity_msgs_per_s``; sizing uses this one.

The peak seen in a single check is reported separately as ``peak_healthy_rate_per_s``. The
hold's growth check catches a rate a little above capacity whose backlog grows too slowly to cross
the per-check thresholds within the hold; and the reported rate is what the system absorbed during
the hold, ``min(rate, (offered - backlog growth) / hold time)``, so a rate a hair above capacity
whose growth stayed under the share is reported at the capacity it showed, not at the offered rate.
If ``max_checks`` runs out, or the rate falls under
``rate_min_per_s``, the search ends as **failed** with no sustainable rate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from mqbench.errors import InvariantViolation, UserError

RAMP, BISECT, CONFIRM, DRAIN, HOLD, DONE, FAILED = "ramp", "bisect", "confirm", "drain", "hold", "done", "failed"
HEALTHY, UNHEALTHY, DRAINED, BACKLOGGED = "healthy", "unhealthy", "drained", "backlogged"
SEARCH_SCHEMA = "mqbench.max-rate/1"


@dataclass(frozen=True)
class Thresholds:
    """When a check interval counts as keeping up (see the module docstring)."""

    publish_backlog_msgs_max: int = 1000
    consume_backlog_msgs_max: int = 1000
    error_share_max: float = 0.001
    publish_latency_ms_p99_max: float = 1000.0
    published_share_min: float = 0.0  # 0 = not checked


@dataclass(frozen=True)
class SearchSettings:
    """How the search moves: start, ramp, precision, hold length, limits."""

    start_rate_per_s: float = 1000.0
    ramp_factor: float = 2.0
    tolerance: float = 0.02
    hold_checks: int = 5
    hold_growth_share_max: float = 0.005
    backoff_factor: float = 0.97
    backoff_floor: float = 0.8
    drain_checks_max: int = 30
    max_checks: int = 300
    rate_min_per_s: float = 1.0

    def validate(self) -> None:
        problems = []
        if not (self.start_rate_per_s > 0 and math.isfinite(self.start_rate_per_s)):
            problems.append("start_rate_per_s must be > 0")
        if not self.ramp_factor > 1:
            problems.append("ramp_factor must be > 1")
        if not 0 < self.tolerance < 1:
            problems.append("tolerance must be in (0, 1)")
        if self.hold_checks < 1:
            problems.append("hold_checks must be >= 1")
        if not 0 <= self.hold_growth_share_max < 1:
            problems.append("hold_growth_share_max must be in [0, 1)")
        if not 0 < self.backoff_factor < 1:
            problems.append("backoff_factor must be in (0, 1)")
        if not 0 < self.backoff_floor <= self.backoff_factor:
            problems.append("backoff_floor must be in (0, backoff_factor]")
        if self.drain_checks_max < 1 or self.max_checks < 1:
            problems.append("drain_checks_max and max_checks must be >= 1")
        if problems:
            raise UserError("max-rate search settings: " + "; ".join(problems))


@dataclass(frozen=True)
class Observation:
    """What one check interval at the offered rate showed."""

    interval_ms: int  # how long the interval ran at the offered rate
    intended: int  # messages the schedule wanted sent during the interval
    published: int  # acknowledged during the interval
    publish_errors: int
    publish_backlog_msgs: int  # at the end of the interval: intended so far - sent so far
    consume_backlog_msgs: int  # at the end of the interval: published so far - consumed so far
    publish_latency_ms_p99: float | None  # None when nothing was acknowledged


def verdict_of(obs: Observation, limits: Thresholds) -> tuple[bool, list[str]]:
    """(healthy, reasons it is not) for one check."""
    reasons = []
    if obs.publish_backlog_msgs > limits.publish_backlog_msgs_max:
        reasons.append(f"publish backlog {obs.publish_backlog_msgs} > {limits.publish_backlog_msgs_max}")
    if obs.consume_backlog_msgs > limits.consume_backlog_msgs_max:
        reasons.append(f"consume backlog {obs.consume_backlog_msgs} > {limits.consume_backlog_msgs_max}")
    attempts = obs.published + obs.publish_errors
    if attempts and obs.publish_errors / attempts > limits.error_share_max:
        reasons.append(f"error share {obs.publish_errors / attempts:.4f} > {limits.error_share_max}")
    if limits.published_share_min and obs.intended and obs.published < limits.published_share_min * obs.intended:
        reasons.append(f"acknowledged {obs.published} < {limits.published_share_min:g} x {obs.intended} offered")
    if obs.publish_latency_ms_p99 is not None and obs.publish_latency_ms_p99 > limits.publish_latency_ms_p99_max:
        reasons.append(f"p99 publish latency {obs.publish_latency_ms_p99:.1f} ms > {limits.publish_latency_ms_p99_max} ms")
    return not reasons, reasons


@dataclass
class MaxRateSearch:
    """The search state (see the module docstring). Drive it with ``rate_per_s`` and ``observe``."""

    settings: SearchSettings = field(default_factory=SearchSettings)
    limits: Thresholds = field(default_factory=Thresholds)
    state: str = RAMP
    rate_per_s: float = 0.0
    good_per_s: float = 0.0
    bad_per_s: float | None = None
    peak_healthy_rate_per_s: float = 0.0
    sustainable_rate_per_s: float | None = None
    checks: int = 0
    history: list[dict] = field(default_factory=list)
    _resume_state: str = RAMP
    _resume_rate_per_s: float = 0.0
    _drain_checks: int = 0
    _held: int = 0
    _hold_intended: int = 0
    _hold_ms: int = 0
    _hold_start_backlog: int = 0
    _suspect_state: str = RAMP
    capacity_msgs_per_s: float | None = None
    first_unheld_rate_msgs_per_s: float | None = None

    def __post_init__(self) -> None:
        self.settings.validate()
        self.rate_per_s = float(self.settings.start_rate_per_s)

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)

    def observe(self, obs: Observation) -> float:
        """Feed the check just run at ``rate_per_s``; returns the rate for the next interval."""
        if self.finished:
            raise UserError(f"the max-rate search has already ended ({self.state})")
        self.checks += 1
        healthy, reasons = verdict_of(obs, self.limits)
        if self.state == DRAIN:
            drained = (obs.publish_backlog_msgs <= self.limits.publish_backlog_msgs_max
                       and obs.consume_backlog_msgs <= self.limits.consume_backlog_msgs_max)
            verdict = DRAINED if drained else BACKLOGGED
        else:
            verdict = HEALTHY if healthy else UNHEALTHY
        before = (self.state, self.rate_per_s)
        handler = TRANSITIONS.get((self.state, verdict))
        if handler is None:
            raise InvariantViolation(f"max-rate search has no move for ({self.state}, {verdict})")
        handler(self, obs)
        if not self.finished and self.checks >= self.settings.max_checks:
            self._fail()
        self.history.append({"check": self.checks, "state": before[0], "rate_per_s": before[1], "verdict": verdict,
                             "reasons": reasons, "next_state": self.state, "next_rate_per_s": self.rate_per_s,
                             "achieved_msgs_per_s": obs.published / (obs.interval_ms / 1000.0) if obs.interval_ms else None,
                             "publish_latency_ms_p99": obs.publish_latency_ms_p99})
        return self.rate_per_s

    # -- moves (the TRANSITIONS table below names them) --

    def _raise(self, obs: Observation) -> None:
        self._mark_good()
        self.rate_per_s = self.rate_per_s * self.settings.ramp_factor

    def _suspect(self, obs: Observation) -> None:
        self._suspect_state = self.state
        self._drain_then(CONFIRM, self.rate_per_s)

    def _fluke(self, obs: Observation) -> None:
        self.state = self._suspect_state
        if self.state == RAMP:
            self._raise(obs)
        else:
            self._bisect_up(obs)

    def _overload(self, obs: Observation) -> None:
        self.bad_per_s = self.rate_per_s
        self.good_per_s = min(self.good_per_s, self.bad_per_s)
        self._next_bisect_or_hold(after_drain=True, obs=obs)

    def _bisect_up(self, obs: Observation) -> None:
        self._mark_good()
        self._next_bisect_or_hold(after_drain=False, obs=obs)

    def _resume(self, obs: Observation) -> None:
        self.state = self._resume_state
        self.rate_per_s = self._resume_rate_per_s
        self._drain_checks = 0
        if self.state == HOLD:
            self._start_hold(obs)

    def _wait_drain(self, obs: Observation) -> None:
        self._drain_checks += 1
        if self._drain_checks >= self.settings.drain_checks_max:
            self._fail()

    def _hold_ok(self, obs: Observation) -> None:
        self._held += 1
        self._hold_intended += obs.intended
        self._hold_ms += obs.interval_ms
        self._mark_peak()
        if self._held < self.settings.hold_checks:
            return
        backlog = obs.publish_backlog_msgs + obs.consume_backlog_msgs
        growth = backlog - self._hold_start_backlog
        if growth > self.settings.hold_growth_share_max * self._hold_intended:
            self._hold_failed(obs, (self._hold_intended - growth) / (self._hold_ms / 1000.0))
            return
        # What the system actually absorbed over the hold: a rate a hair above capacity that
        # passed the growth check is reported as the capacity it really showed, never above.
        absorbed = self._hold_intended - max(0, growth)
        self.sustainable_rate_per_s = min(self.rate_per_s, absorbed / (self._hold_ms / 1000.0))
        self.capacity_msgs_per_s = self.rate_per_s
        self.first_unheld_rate_msgs_per_s = self.bad_per_s
        self.state = DONE

    def _hold_failed(self, obs: Observation, absorbed_per_s: float | None = None) -> None:
        if absorbed_per_s is None:
            absorbed_per_s = obs.published / (obs.interval_ms / 1000.0) if obs.interval_ms else 0.0
        self.bad_per_s = self.rate_per_s
        settings = self.settings
        candidate = min(self.rate_per_s * settings.backoff_factor,
                        max(absorbed_per_s, self.rate_per_s * settings.backoff_floor))
        self.good_per_s = min(self.good_per_s, candidate)
        if candidate < self.settings.rate_min_per_s:
            self._fail()
            return
        self._drain_then(HOLD, candidate)

    # -- helpers --

    def _mark_good(self) -> None:
        self.good_per_s = self.rate_per_s
        self._mark_peak()

    def _mark_peak(self) -> None:
        self.peak_healthy_rate_per_s = max(self.peak_healthy_rate_per_s, self.rate_per_s)

    def _next_bisect_or_hold(self, after_drain: bool, obs: Observation) -> None:
        bad = self.bad_per_s
        if bad is None:
            raise InvariantViolation("bisecting without a failed rate")
        if bad < self.settings.rate_min_per_s:
            self._fail()
            return
        if bad - self.good_per_s <= self.settings.tolerance * bad and self.good_per_s > 0:
            next_state, next_rate = HOLD, self.good_per_s
        else:
            next_state, next_rate = BISECT, (self.good_per_s + bad) / 2.0
        if after_drain:
            self._drain_then(next_state, next_rate)
        else:
            self.state, self.rate_per_s = next_state, next_rate
            if next_state == HOLD:
                self._start_hold(obs)

    def _drain_then(self, state: str, rate: float) -> None:
        self._resume_state, self._resume_rate_per_s = state, rate
        self._drain_checks = 0
        self.state, self.rate_per_s = DRAIN, 0.0

    def _start_hold(self, obs: Observation) -> None:
        self._held = 0
        self._hold_intended = 0
        self._hold_ms = 0
        self._hold_start_backlog = obs.publish_backlog_msgs + obs.consume_backlog_msgs

    def _fail(self) -> None:
        self.state = FAILED
        self.sustainable_rate_per_s = None
        self.capacity_msgs_per_s = None
        self.rate_per_s = 0.0

    def result(self) -> dict:
        """The outcome as a JSON-ready dict (schema ``mqbench.max-rate/1``)."""
        return {"schema": SEARCH_SCHEMA, "state": self.state, "sustainable_rate_per_s": self.sustainable_rate_per_s,
                "capacity_msgs_per_s": self.capacity_msgs_per_s,
                "first_unheld_rate_msgs_per_s": self.first_unheld_rate_msgs_per_s,
                "hold_achieved_msgs_per_s": self.sustainable_rate_per_s,
                "peak_healthy_rate_per_s": self.peak_healthy_rate_per_s, "checks": self.checks,
                "settings": vars(self.settings).copy(), "thresholds": vars(self.limits).copy(),
                "history": list(self.history)}


TRANSITIONS = {
    (RAMP, HEALTHY): MaxRateSearch._raise,
    (RAMP, UNHEALTHY): MaxRateSearch._suspect,
    (BISECT, HEALTHY): MaxRateSearch._bisect_up,
    (BISECT, UNHEALTHY): MaxRateSearch._suspect,
    (CONFIRM, HEALTHY): MaxRateSearch._fluke,
    (CONFIRM, UNHEALTHY): MaxRateSearch._overload,
    (DRAIN, DRAINED): MaxRateSearch._resume,
    (DRAIN, BACKLOGGED): MaxRateSearch._wait_drain,
    (HOLD, HEALTHY): MaxRateSearch._hold_ok,
    (HOLD, UNHEALTHY): MaxRateSearch._hold_failed,
}


async def drive_search(search: MaxRateSearch, measure: Callable[[float], Awaitable[Observation]]) -> dict:
    """The adapter: run ``measure(rate_per_s)`` (one check interval of real load) until the search
    ends; returns ``search.result()``. ``measure`` owns the clock, the pacer and the metrics."""
    while not search.finished:
        search.observe(await measure(search.rate_per_s))
    return search.result()
