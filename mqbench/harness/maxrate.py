"""``--rate max``: find the highest publish rate the system under test sustains reliably.

A small state machine, sans-I/O: the driver runs the load at ``search.rate_per_s`` for one check
interval, measures an ``Observation`` of that interval and calls ``search.observe(obs)``, which
returns the rate for the next interval. Nothing here reads a clock or sleeps.

The rule
--------

A drain check (rate 0) is **drained** when both backlogs are at most ``drained_msgs_max`` and
at most ``drained_msgs_max`` send requests are still unacknowledged (``publish_in_flight``).

A check is **healthy** when, at the end of the interval, all of these hold (``Thresholds``):

* publish backlog (messages the schedule wanted sent but the producers have not sent yet)
  ``<= max(publish_backlog_msgs_max, backlog_s_max x the check's offered msgs/s)``;
* consume backlog (published but not yet consumed) ``<= max(consume_backlog_msgs_max,
  backlog_s_max x offered msgs/s)`` (the same bound as a fixed-rate cell's verdict);
* error share ``publish_errors / (published + publish_errors) <= error_share_max``;
* p99 publish latency of the interval ``<= publish_latency_ms_p99_max``;
* when ``published_share_min`` is set: see below; the interval's ``intended`` and ``published``
  must span the same time (the driver counts both between the same two producer reports);
* when ``published_share_min`` is set: messages acknowledged in the interval ``>=
  published_share_min * intended`` (the system absorbed what was offered; a small overload whose
  backlog grows too slowly to cross a count threshold within one check fails here at once).

States and moves (``TRANSITIONS`` is the table the code reads):

==========  ==========  ====================================================================
state       verdict     move
==========  ==========  ====================================================================
ramp        healthy     ``good = rate``; ``rate *= ramp_factor`` (while nothing failed yet)
ramp        unhealthy   suspect ``rate``: drain, then **confirm** it with a repeat check
bisect      healthy     ``good = rate``; next rate: see ``_next_candidate`` (the midpoint of
                        ``(good, bad)`` or, after an overload that showed what the system
                        absorbed, just above ``good`` near that estimate)
bisect      unhealthy   suspect ``rate``: drain, then **confirm** it with a repeat check
confirm     healthy     the failure did not repeat (a busy machine's hiccup): the rate counts
                        as healthy and the suspended ramp or bisection moves on from it; a
                        suspended hold starts again at the same rate (once per rate)
confirm     unhealthy   ``bad = rate`` (failed twice); drain, then bisect between ``good`` and
                        ``bad`` (a suspended hold: back off, as a failed hold below)
drain       drained     resume the state that was interrupted, at its next rate
drain       backlogged  offer rate 0 and wait (the backlog and the requests still in flight
                        after an overload must not be blamed on the next rate); fail after
                        ``drain_checks_max`` checks
hold        healthy     one more healthy check at the candidate rate; after ``hold_checks`` in
                        a row, and if the backlog did not grow over the hold by more than
                        ``hold_growth_share_max`` of the messages offered in it (nor by more
                        than ``hold_growth_floor_s`` of load at the rate: backlogs sampled from
                        reports up to half a second old are that noisy), the rate
                        **held**: done, unless the bracket (held, ``bad``) is wider than
                        ``tolerance``, then bisect up between them (at most
                        ``rebisect_max`` times) and hold the new candidate; else done (with
                        ``soak_checks``: **soak** first), but when ``bad`` is still the
                        ramp's (no rate between failed): **verify**
verify      unhealthy   the first unheld rate, offered once more straight after the hold (so
                        its failures are spread in time, not one long stall; it must absorb
                        ``VERIFY_SHARE_MIN`` of its load to pass): done
verify      healthy     its earlier failures were the machine's: ``bad`` is forgotten and the
                        ramp goes on above it (counts against ``rebisect_max``; when spent,
                        done with no first unheld rate)
soak        healthy     the hold goes on at the same rate; after ``hold_checks + soak_checks``
                        checks in a row (the hold's included; fewer when the budget cannot
                        afford them, see below), if the backlog did not grow over them (as
                        for a hold), the rate **stands**: done; but first, ``confirm_soaks``
                        times while the budget affords a whole soak and, should it fail,
                        a whole soak below it, it is **confirmed**: drain, then a whole new
                        soak at the same rate
soak        unhealthy   the rate is unseated (``soak_failed``; ``bad`` only if it failed
                        twice) and the highest rate held below it is the floor again. The
                        first ``soak_repeats`` failures at a rate are **repeated**, while the
                        budget affords a whole soak and one more hold: drain, then a whole new
                        soak at the same rate (every check of it must hold; one stall shorter
                        than a check no longer lowers the capacity). Past its repeats the
                        search only comes down: soak next at the median of what every soak
                        check at the rate absorbed (lowered after fewer than
                        ``SOAK_MEDIAN_CHECKS_MIN`` soak checks: what its failing checks
                        absorbed), kept between ``rate * backoff_floor`` and ``rate *
                        (1 - tolerance)``; a candidate at or under a held rate soaks that rate.
                        A failed confirmation is not repeated (it is the soak's repeat,
                        later): the rate comes down at once.
                        A soak check that failed on its acknowledged share alone is judged with
                        the check before it at the rate (acks lagging at one check's end land
                        in the next: ``_soak_pair_verdict``)
hold        unhealthy   suspect the hold (a stall in one check must not set the capacity):
                        drain, then **confirm** at the same rate; the second failure at a rate
                        fails the hold at once
(failed hold)           ``bad = rate``; drain, then hold again lower. Nothing held yet: at what
                        the checks at this rate absorbed (the most any of them acknowledged per
                        second, so one stalled check does not drag it down; over the hold when
                        its growth failed it), kept between ``rate * backoff_floor`` and
                        ``rate * (1 - step)``, where ``step`` is ``1 - backoff_factor`` (3 %)
                        for the first failed hold and doubles with each failed hold in a row (a
                        noisy edge, whose failing checks absorb nearly all their load, is left
                        in a few holds). A rate held already: the bracket (held, rate) is
                        narrowed from above, to what was absorbed but at least to its midpoint;
                        a bracket within ``tolerance``, or a candidate at or under the rate
                        that held, ends the search with that
==========  ==========  ====================================================================

**The time budget.** ``observe(obs, checks_left=n)`` says how many more judged checks the driver's
budget affords. While nothing has held and ``n < 3 x (hold_checks + 2)`` (about two more holds with
a failure each: a failure costs a repeat and two drains), the search **secures** a hold instead of
probing: a healthy ramp or bisection check becomes the hold's first check, and a failed hold is not
repeated but backs off at once, at least ``SECURE_STEP_SHARE`` (10 %). So a search on a noisy edge ends with a rate that held and the bracket it knows, rather than
running out of time with none. With ``soak_checks``, once a rate held and the budget affords
only a soak, one more hold and two checks (``n < 2 x hold_checks + soak_checks + 3``), the search
stops probing and soaks that rate; a soak is shortened to what the budget affords while one more
hold still fits after it (``capacity_soaked`` false in the result).

**The soak** (``soak_checks`` > 0; ``mqbench run`` uses 10). A hold of two checks meets whichever
speed a machine with two speeds runs at (a 2-core VM here: 28 % apart, switching every few
seconds), so seeds ended at either. The soak keeps the rate the search would report on for
``soak_checks`` more checks, none failing: the capacity is then a rate that held through the slow
phases too. With a soak, a failed hold backs off towards what its failing checks absorbed (they
show the slow speed), not the best check at that rate. A failed soak is repeated (``soak_repeats``;
``mqbench run`` uses 1) before the rate comes down, and then it comes down to the median its soak
checks absorbed: lowering at each failure to what that one check absorbed made a stall inside a
slow phase (this machine's last 30-60 s) ratchet the rate below the slow speed, so where the
ratchet stopped decided the figure (`single`'s seeds 20.8 % apart at 180 s). A 25-s soak still
fits inside one fast phase (raft3's seeds at 180 s: one held 8,169 straight, the others came down
to about 7,000), so a soak that held is **confirmed** (``confirm_soaks``; ``mqbench run`` uses 1):
a drain (the rate is met again from idle, not carried by the soak's momentum), then a whole new
soak; only when the budget affords it and, should it fail, a whole soak of a lower rate after it
(so a failed confirmation does not end the search on a soak the budget shortened).

Bisection stops when ``bad - good <= tolerance * bad``: the candidate is then ``good`` and the
search moves to **hold**. A search that is **done** reports these figures, never an average over
the search (whose ramp, overload and drain checks at rate 0 say nothing about capacity):

* ``capacity_msgs_per_s``: the highest offered rate that held, every check of a hold in a row
  (the repeat that confirms it) and, with ``soak_checks``, of its soak;
* ``capacity_checks_held``: the most judged checks in a row at the capacity that all held;
  ``capacity_soaked``: they were a whole hold and soak (not one shortened by the budget);
  ``soak_failed``: each failed soak (``rate_per_s``, ``check``, ``checks_held`` before,
  ``absorbed_msgs_per_s`` of the failing check or, when the backlog grew, over the hold and soak,
  ``backlog_grew``, ``repeated``: the rate was soaked again rather than lowered, ``confirming``:
  it was the confirmation of a soak that had held); ``capacity_soaks_held``: the whole soaks at the
  capacity that held (2: its confirmation held too; 0 when its soak was shortened);
* ``first_unheld_rate_msgs_per_s``: the lowest rate above it that did not hold, itself confirmed
  by a repeat check, a failed hold or two failed checks (``bad`` at the end);
* ``bracket_msgs_per_s`` = ``[capacity, first unheld]`` and ``bracket_width_share`` =
  ``(first unheld - capacity) / first unheld``: how precisely the capacity is known (the true
  capacity lies in the bracket; within ``tolerance`` unless the time budget ended the search);
* ``sustainable_rate_per_s`` (= ``hold_achieved_msgs_per_s``): what the system absorbed during
  the hold (see below), at most ``capacity_msgs_per_s``; sizing uses this one.

The driver ends a search whose time budget ran out with ``give_up()``: done with the highest rate
that held, if one has (the bracket says how wide it still was), else failed.

The peak seen in a single check is reported separately as ``peak_healthy_rate_per_s``. The
hold's growth check catches a rate a little above capacity whose backlog grows too slowly to cross
the per-check thresholds within the hold; and the reported rate is what the system absorbed during
the hold, ``min(rate, (offered - backlog growth) / hold time)``, so a rate a hair above capacity
whose growth stayed under the share is reported at the capacity it showed, not at the offered rate.
If ``max_checks`` runs out before any rate held, or the rate falls under
``rate_min_per_s``, the search ends as **failed** with no sustainable rate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Awaitable, Callable

from mqbench.errors import InvariantViolation, UserError
from mqbench.harness.maxrate_checks import (BACKLOGGED, BISECT, CONFIRM, DONE, DRAIN, DRAINED, FAILED, HEALTHY, HOLD,
                                            RAMP, SOAK, UNHEALTHY, VERIFY, Observation, SearchSettings, Thresholds,
                                            verdict_of)
from mqbench.harness.maxrate_soak import SoakSteps

SEARCH_SCHEMA = "mqbench.max-rate/1"
SECURE_STEP_SHARE = 0.10  # a hold that fails when the budget is short backs off at least this far
VERIFY_SHARE_MIN = 0.99  # a verify check clears the first unheld rate only if it absorbed this much


@dataclass
class MaxRateSearch(SoakSteps):
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
    held_per_s: float | None = None  # the highest rate whose whole hold held so far
    _held_sustainable_per_s: float | None = None
    rebisections: int = 0
    _estimate_per_s: float | None = None  # what the last confirmed overload absorbed, msgs/s
    _climb: int = 0  # healthy bisection steps in a row since the last confirmed overload
    _absorbed_max: dict = field(default_factory=dict)  # rate -> the most any check at it absorbed, msgs/s
    _flukes: set = field(default_factory=set)
    _bad_from_ramp: bool = False  # the first unheld rate is the ramp's: nothing between failed since
    _verified: set = field(default_factory=set)  # first unheld rates offered again after a hold
    _backlog_before: int = 0  # both backlogs at the end of the previous check
    _backoffs: int = 0  # failed holds in a row before any hold held (each backs off twice as far)
    _checks_left: int | None = None  # what the driver's budget still affords (``observe``)
    _held_rates: dict = field(default_factory=dict)  # rate -> what its hold absorbed, msgs/s (every rate that held)
    _failed_absorbed: dict = field(default_factory=dict)  # rate -> the most a failing check at it absorbed, msgs/s
    _soaked: set = field(default_factory=set)  # held rates whose soak passed
    _failures: dict = field(default_factory=dict)  # rate -> judged checks at it that failed
    soak_failed: list = field(default_factory=list)  # rates that held a hold, then failed in their soak
    _last_judged: tuple | None = None  # (state, rate, observation) of the last check
    _soak_failures: dict = field(default_factory=dict)  # rate -> soaks at it that failed (``soak_repeats``)
    _soak_seen: dict = field(default_factory=dict)  # rate -> what every soak check at it absorbed, msgs/s
    _confirms: int = 0  # confirmation soaks started (``confirm_soaks``)
    _confirming: bool = False  # the soak under way confirms a rate whose soak held already
    _soaks_held: dict = field(default_factory=dict)  # rate -> whole soaks at it that held
    _soak_target: int = 0  # checks in a row the current soak needs, its hold's included (``_soak_length``)

    def __post_init__(self) -> None:
        self.settings.validate()
        self.rate_per_s = float(self.settings.start_rate_per_s)

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED)

    def observe(self, obs: Observation, *, checks_left: int | None = None) -> float:
        """Feed the check just run at ``rate_per_s``; returns the rate for the next interval.
        ``checks_left``: how many more judged checks the driver's time budget affords (None: no
        budget); when it is short and nothing held yet, the search secures a hold (module doc)."""
        if self.finished:
            raise UserError(f"the max-rate search has already ended ({self.state})")
        self.checks += 1
        self._checks_left = checks_left
        healthy, reasons = verdict_of(obs, self.limits)
        previous, self._last_judged = self._last_judged, (self.state, self.rate_per_s, obs)
        if self.state == SOAK and not healthy and previous is not None:
            healthy, reasons = self._soak_pair_verdict(obs, previous, reasons)
        if self.state == VERIFY and healthy and obs.intended and obs.published < VERIFY_SHARE_MIN * obs.intended:
            healthy = False  # a rate a little over capacity passes one fresh check at the usual share
            reasons = [f"acknowledged {obs.published} < {VERIFY_SHARE_MIN:g} x {obs.intended} offered (verify)"]
        if self.state == DRAIN:
            most = self.limits.drained_msgs_max
            drained = (obs.publish_backlog_msgs <= most and obs.consume_backlog_msgs <= most
                       and obs.publish_in_flight <= most)
            verdict = DRAINED if drained else BACKLOGGED
        else:
            verdict = HEALTHY if healthy else UNHEALTHY
        before = (self.state, self.rate_per_s)
        if self.state != DRAIN and obs.interval_ms:
            absorbed = min(obs.published, obs.intended) / (obs.interval_ms / 1000.0)
            self._absorbed_max[self.rate_per_s] = max(absorbed, self._absorbed_max.get(self.rate_per_s, 0.0))
            if self.state == SOAK:
                self._soak_seen.setdefault(self.rate_per_s, []).append(absorbed)
            if verdict == UNHEALTHY:
                self._failures[self.rate_per_s] = self._failures.get(self.rate_per_s, 0) + 1
                self._failed_absorbed[self.rate_per_s] = max(absorbed, self._failed_absorbed.get(self.rate_per_s, 0.0))
        handler = TRANSITIONS.get((self.state, verdict))
        if handler is None:
            raise InvariantViolation(f"max-rate search has no move for ({self.state}, {verdict})")
        handler(self, obs)
        self._soak_when_due(before, verdict)
        self._backlog_before = obs.publish_backlog_msgs + obs.consume_backlog_msgs
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
        if self._securing():   # no time left to find the edge: hold what just kept up
            self.state = HOLD
            self._start_hold(obs.publish_backlog_msgs + obs.consume_backlog_msgs)
            return
        self.rate_per_s = self.rate_per_s * self.settings.ramp_factor

    def _suspect(self, obs: Observation) -> None:
        self._suspect_state = self.state
        self._drain_then(CONFIRM, self.rate_per_s)

    def _fluke(self, obs: Observation) -> None:
        self.state = self._suspect_state
        if self.state == RAMP:
            self._raise(obs)
        elif self.state == HOLD:
            # The hold starts again at the same rate; the repeat that cleared it is its first check
            # (its backlog growth counted from where that check started).
            self._flukes.add(self.rate_per_s)
            self._start_hold(self._backlog_before)
            self._hold_ok(obs)
        else:
            self._bisect_up(obs)

    def _overload(self, obs: Observation) -> None:
        if self._suspect_state == HOLD:
            self._hold_failed(obs)
            return
        self.bad_per_s = self.rate_per_s
        self._bad_from_ramp = self._suspect_state == RAMP
        self.good_per_s = min(self.good_per_s, self.bad_per_s)
        self._estimate_per_s = self._absorbed_max.get(self.rate_per_s)
        self._climb = 0
        self._next_bisect_or_hold(after_drain=True, obs=obs)

    def _bisect_up(self, obs: Observation) -> None:
        self._mark_good()
        self._climb += 1
        self._next_bisect_or_hold(after_drain=False, obs=obs)

    def _resume(self, obs: Observation) -> None:
        self.state = self._resume_state
        self.rate_per_s = self._resume_rate_per_s
        self._drain_checks = 0
        if self.state in (HOLD, SOAK):
            self._start_hold(obs.publish_backlog_msgs + obs.consume_backlog_msgs)
        if self.state == SOAK:
            self._soak_target = self._soak_length(0)

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
        allowed = max(self.settings.hold_growth_share_max * self._hold_intended,
                      self.settings.hold_growth_floor_s * self.rate_per_s)
        if growth > allowed:
            self._hold_failed(obs, (self._hold_intended - growth) / (self._hold_ms / 1000.0))
            return
        # What the system actually absorbed over the hold: a rate a hair above capacity that
        # passed the growth check is reported as the capacity it really showed, never above.
        absorbed = self._hold_intended - max(0, growth)
        self._held_rates[self.rate_per_s] = min(self.rate_per_s, absorbed / (self._hold_ms / 1000.0))
        if self.held_per_s is None or self.rate_per_s > self.held_per_s:
            self.held_per_s = self.rate_per_s
            self._held_sustainable_per_s = self._held_rates[self.rate_per_s]
        bad = self.bad_per_s
        if (bad is not None and bad - self.rate_per_s > self.settings.tolerance * bad
                and self.rebisections < self.settings.rebisect_max):
            # A backed-off candidate held, well under the rate that failed: the capacity lies
            # between them, so bisect up rather than report a rate up to the backoff floor low.
            self.rebisections += 1
            self.good_per_s = self.rate_per_s
            self._climb = 0
            self.state, self.rate_per_s = BISECT, self._next_candidate()
            return
        if self._bad_from_ramp and bad is not None and bad not in self._verified:
            # The first unheld rate failed twice in a row; a stall that long (a neighbour's burst)
            # would put it far too low for good. Offer it once more, now, straight after the hold.
            self._verified.add(bad)
            self.state, self.rate_per_s = VERIFY, bad
            return
        self._finish()

    def _unheld_confirmed(self, obs: Observation) -> None:
        self._finish()

    def _unheld_held(self, obs: Observation) -> None:
        """The first unheld rate carried its load this time: its failures were the machine's. Search
        on above it (ramp), unless the re-search budget is spent."""
        self.bad_per_s = None
        if self.rebisections >= self.settings.rebisect_max:
            self._finish()
            return
        self.rebisections += 1
        self.good_per_s = self.rate_per_s
        self._mark_peak()
        self.state, self.rate_per_s = RAMP, self.rate_per_s * self.settings.ramp_factor

    def _hold_suspect(self, obs: Observation) -> None:
        if self.rate_per_s in self._flukes:
            self._hold_failed(obs)  # failed a second time at this rate: no more benefit of the doubt
            return
        if self._securing():
            # No budget for a repeat and its two drains: back off now (at least SECURE_STEP_SHARE),
            # so the budget ends on a rate that held; the bracket says how wide that leaves it.
            self._hold_failed(obs)
            return
        self._suspect(obs)

    def _hold_failed(self, obs: Observation, absorbed_per_s: float | None = None) -> None:
        if absorbed_per_s is None:
            # The best any check at this rate absorbed: a stall in the failing check (which may be
            # why it failed) must not drag the next candidate down to the backoff floor.
            absorbed_per_s = self._absorbed_max.get(self.rate_per_s, 0.0)
            if self.settings.soak_checks and self.rate_per_s in self._failed_absorbed:
                # With a soak, the search aims at what holds through the machine's slow phases:
                # what the failing checks absorbed shows that level (the best check would not).
                absorbed_per_s = self._failed_absorbed[self.rate_per_s]
        self.bad_per_s = self.rate_per_s
        self._bad_from_ramp = False
        settings = self.settings
        held = self.held_per_s
        if held is not None:
            # A bracket: ``held`` below held, this rate failed. Narrow it from above, to what the
            # checks here absorbed but at least to its midpoint (a noisy edge's failing checks absorb
            # nearly all their load: 3 % steps would not settle), until it is within the tolerance.
            candidate = max((held + self.rate_per_s) / 2.0, min(
                self.rate_per_s * settings.backoff_factor, max(absorbed_per_s, self.rate_per_s * settings.backoff_floor)))
            if self.rate_per_s - held <= settings.tolerance * self.rate_per_s or candidate <= held:
                self._finish()
                return
            self._drain_then(HOLD, candidate)
            return
        # Nothing held yet: back off, each failed hold in a row twice as far as the one before
        # (3 %, 6 %, 12 %, ... of the failed rate, at most down to the floor), so a noisy edge
        # where checks alternate held/unheld is left in a few holds, not one 3 % step per hold.
        self._backoffs += 1
        step = min(1.0 - settings.backoff_floor, (1.0 - settings.backoff_factor) * 2 ** (self._backoffs - 1))
        if self._securing():
            step = max(step, SECURE_STEP_SHARE)
        candidate = min(self.rate_per_s * (1.0 - step), max(absorbed_per_s, self.rate_per_s * settings.backoff_floor))
        self.good_per_s = min(self.good_per_s, candidate)
        if candidate < self.settings.rate_min_per_s:
            self._fail()
            return
        self._drain_then(HOLD, candidate)

    # -- helpers --

    def _securing(self) -> bool:
        """Nothing held yet and the budget affords only about two more holds with a failure each (a
        failure costs a repeat and two drains): stop probing upwards and secure a rate that holds
        (the bracket then says how wide)."""
        return (self.held_per_s is None and self._checks_left is not None
                and self._checks_left < 3 * (self.settings.hold_checks + 2))

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
        if self.good_per_s > 0 and (bad - self.good_per_s <= self.settings.tolerance * bad or self._securing()):
            if self.held_per_s is not None and self.good_per_s <= self.held_per_s:
                self._finish()  # the upward bisection found nothing above what already held
                return
            next_state, next_rate = HOLD, self.good_per_s
        else:
            next_state, next_rate = BISECT, self._next_candidate()
        if after_drain:
            self._drain_then(next_state, next_rate)
        else:
            self.state, self.rate_per_s = next_state, next_rate
            if next_state == HOLD:
                self._start_hold(obs.publish_backlog_msgs + obs.consume_backlog_msgs)

    def _next_candidate(self) -> float:
        """The next rate inside (good, bad): the midpoint; or, when the confirmed overload at ``bad``
        measured what the system absorbed (``_estimate_per_s``, which a saturated system shows as
        its capacity), just under that estimate, but at least a tolerance step above ``good``, a
        step that doubles with every healthy step in a row, and at most three quarters of the way
        to ``bad``. A wrong estimate costs a few checks, never a wrong capacity: only a confirmed
        failure sets ``bad`` and only a hold sets the capacity."""
        bad, good, estimate = self.bad_per_s, self.good_per_s, self._estimate_per_s
        if good <= 0 or estimate is None or estimate >= bad:
            return (good + bad) / 2.0
        tolerance = self.settings.tolerance
        step = good * (1.0 + tolerance * (2 ** self._climb))
        return min(good + 0.75 * (bad - good), max(step, estimate * (1.0 - tolerance / 2)))

    def _drain_then(self, state: str, rate: float) -> None:
        self._resume_state, self._resume_rate_per_s = state, rate
        self._drain_checks = 0
        self.state, self.rate_per_s = DRAIN, 0.0

    def _start_hold(self, backlog_msgs: int) -> None:
        """A hold starts; its backlog growth is counted from ``backlog_msgs``."""
        self._held = 0
        self._hold_intended = 0
        self._hold_ms = 0
        self._hold_start_backlog = backlog_msgs

    def _finish(self) -> None:
        """The search found its answer: the held rate stands once its soak passed (``soak_checks``)."""
        held = self.held_per_s
        if not self.settings.soak_checks or held is None or held in self._soaked:
            self._conclude()
            return
        if self.state == HOLD and self.rate_per_s == held:
            # Straight on from the hold that just held: its checks are the soak's first.
            self.state = SOAK
            self._soak_target = self._soak_length(self._held)
            return
        self._drain_then(SOAK, held)

    def _conclude(self) -> None:
        self.capacity_msgs_per_s = self.held_per_s
        self.sustainable_rate_per_s = self._held_sustainable_per_s
        bad = self.bad_per_s
        self.first_unheld_rate_msgs_per_s = bad if bad is not None and bad > (self.held_per_s or 0) else None
        self.state = DONE
        self.rate_per_s = self.held_per_s or 0.0

    def give_up(self) -> None:
        """The driver's time budget ran out: done with the highest rate that held, else failed."""
        if self.finished:
            return
        if self.held_per_s is not None:
            self._conclude()
        else:
            self._fail()

    def _fail(self) -> None:
        if self.held_per_s is not None:
            self._conclude()  # out of checks after a hold held: that rate stands, the bracket says how wide
            return
        self.state = FAILED
        self.sustainable_rate_per_s = None
        self.capacity_msgs_per_s = None
        self.rate_per_s = 0.0

    def _checks_held_at(self, rate: float | None) -> int:
        """The most judged checks in a row at ``rate`` that all held (drain checks between them do
        not break the run; a check at another rate does)."""
        best = run = 0
        for h in self.history:
            if h["state"] == DRAIN:
                continue
            run = run + 1 if h["rate_per_s"] == rate and h["verdict"] == HEALTHY else 0
            best = max(best, run)
        return best

    def result(self) -> dict:
        """The outcome as a JSON-ready dict (schema ``mqbench.max-rate/1``)."""
        held, unheld = self.capacity_msgs_per_s, self.first_unheld_rate_msgs_per_s
        bracket = [held, unheld] if held is not None else None
        width = (unheld - held) / unheld if held is not None and unheld else None
        return {"schema": SEARCH_SCHEMA, "state": self.state, "sustainable_rate_per_s": self.sustainable_rate_per_s,
                "capacity_msgs_per_s": self.capacity_msgs_per_s,
                "first_unheld_rate_msgs_per_s": self.first_unheld_rate_msgs_per_s,
                "bracket_msgs_per_s": bracket, "bracket_width_share": width, "rebisections": self.rebisections,
                "hold_achieved_msgs_per_s": self.sustainable_rate_per_s,
                "peak_healthy_rate_per_s": self.peak_healthy_rate_per_s, "checks": self.checks,
                "capacity_checks_held": self._checks_held_at(held), "capacity_soaked": held is not None and held in self._soaked,
                "capacity_soaks_held": self._soaks_held.get(held, 0) if held is not None and held in self._soaked else 0,
                "soak_failed": list(self.soak_failed),
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
    (HOLD, UNHEALTHY): MaxRateSearch._hold_suspect,
    (SOAK, HEALTHY): MaxRateSearch._soak_ok,
    (SOAK, UNHEALTHY): MaxRateSearch._soak_failed,
    (VERIFY, HEALTHY): MaxRateSearch._unheld_held,
    (VERIFY, UNHEALTHY): MaxRateSearch._unheld_confirmed,
}


async def drive_search(search: MaxRateSearch, measure: Callable[[float], Awaitable[Observation]]) -> dict:
    """The adapter: run ``measure(rate_per_s)`` (one check interval of real load) until the search
    ends; returns ``search.result()``. ``measure`` owns the clock, the pacer and the metrics."""
    while not search.finished:
        search.observe(await measure(search.rate_per_s))
    return search.result()
