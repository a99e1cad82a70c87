"""``--rate max``'s soak (``harness.maxrate``'s module docstring, "the soak"): once a rate held its
hold, it runs on at the same rate for ``soak_checks`` more checks and stands only if every one holds
and the backlog did not grow over hold and soak; a failed soak is repeated ``soak_repeats`` times
(a whole new soak) before the rate comes down; a soak that held is confirmed ``confirm_soaks``
times (a whole new soak after a drain) while the budget affords it. These are the ``MaxRateSearch`` steps of that
phase, kept apart from the ramp, bisection and hold steps; they read and write the search's own
state (``MaxRateSearch`` is the only class built on them). Pure: no clock, no I/O."""
from __future__ import annotations

from mqbench.harness.maxrate_checks import BISECT, CONFIRM, DRAIN, HEALTHY, HOLD, SOAK, Observation


SOAK_MEDIAN_CHECKS_MIN = 3  # a rate lowered without a repeat comes down to its soak checks' median from this many


class SoakSteps:
    """The soak's transitions and budget rules of ``MaxRateSearch``."""

    def _soak_pair_verdict(self, obs: Observation, previous: tuple, reasons: list[str]) -> tuple[bool, list[str]]:
        """A soak check that failed on its acknowledged share alone is judged with the check before
        it at the same rate: acks that lag at one check's end arrive in the next (publish latency
        moving by a tenth of a second shifts 5 % of a 2-s check), so the pair's share is what the
        system absorbed. Backlogs, errors and latency are never pooled."""
        state, rate, before = previous
        share = self.limits.published_share_min
        if rate != self.rate_per_s or state not in (HOLD, SOAK, BISECT, CONFIRM) or not share:
            return False, reasons
        if any(not r.startswith("acknowledged ") for r in reasons):
            return False, reasons
        if before.interval_ms != obs.interval_ms or before.intended == 0:
            return False, reasons
        published, intended = before.published + obs.published, before.intended + obs.intended
        if published >= share * intended:
            return True, []
        return False, reasons + [f"with the check before: acknowledged {published} < {share:g} x {intended} offered"]

    def _soak_when_due(self, before: tuple[str, float], verdict: str) -> None:
        """The budget affords a soak of the rate that held, and little more: stop probing above it
        and soak it now, so the search ends on a soaked rate rather than out of time (straight on,
        without a drain, when the check just run was its hold's last)."""
        held, left = self.held_per_s, self._checks_left
        if (self.finished or not self.settings.soak_checks or held is None or held in self._soaked or left is None
                or left >= 2 * self.settings.hold_checks + self.settings.soak_checks + 3):
            return
        if self.state == SOAK or (self.state == DRAIN and self._resume_state == SOAK):
            return
        if self.state == HOLD and self.rate_per_s == held:
            return
        if before == (HOLD, held) and verdict == HEALTHY and self._held >= self.settings.hold_checks:
            self.state, self.rate_per_s = SOAK, held
            self._soak_target = self._soak_length(self._held)
            return
        if self.state == DRAIN:
            self._resume_state, self._resume_rate_per_s = SOAK, held
            return
        self._drain_then(SOAK, held)

    def _soak_length(self, held_already: int) -> int:
        """Checks in a row a soak starting now needs (its hold's included): ``hold_checks +
        soak_checks``, the soak shortened to what the budget affords while it keeps room for one
        more hold after a drain (should the soak fail, the next candidate must still be able to
        hold). ``capacity_checks_held`` in the result says how long the capacity held."""
        settings, left = self.settings, self._checks_left
        soak = settings.soak_checks
        if left is not None:
            soak = min(soak, max(0, left - (settings.hold_checks - held_already) - (settings.hold_checks + 1)))
        return settings.hold_checks + soak

    def _soak_ok(self, obs: Observation) -> None:
        self._held += 1
        self._hold_intended += obs.intended
        self._hold_ms += obs.interval_ms
        if self._held == self.settings.hold_checks and self.rate_per_s not in self._held_rates:
            # A candidate soaked straight after a failed soak has held a whole hold now: should the
            # budget end before its soak does, it is the rate that held (its soak unfinished).
            self._held_rates[self.rate_per_s] = min(self.rate_per_s, self._hold_intended / (self._hold_ms / 1000.0))
            if self.held_per_s is None or self.rate_per_s > self.held_per_s:
                self.held_per_s, self._held_sustainable_per_s = self.rate_per_s, self._held_rates[self.rate_per_s]
        if self._held < self._soak_target:
            return
        growth = obs.publish_backlog_msgs + obs.consume_backlog_msgs - self._hold_start_backlog
        allowed = max(self.settings.hold_growth_share_max * self._hold_intended,
                      self.settings.hold_growth_floor_s * self.rate_per_s)
        if growth > allowed:
            self._soak_failed(obs, (self._hold_intended - growth) / (self._hold_ms / 1000.0))
            return
        self._held_rates[self.rate_per_s] = min(self._held_rates.get(self.rate_per_s, self.rate_per_s),
                                                (self._hold_intended - max(0, growth)) / (self._hold_ms / 1000.0))
        self.held_per_s = max(self.held_per_s or 0.0, self.rate_per_s)
        self._held_sustainable_per_s = self._held_rates[self.held_per_s]
        if self._soak_target >= self.settings.hold_checks + self.settings.soak_checks:
            self._soaked.add(self.rate_per_s)  # a whole soak (not one the budget shortened)
            self._soaks_held[self.rate_per_s] = self._soaks_held.get(self.rate_per_s, 0) + 1
            if self._confirms < self.settings.confirm_soaks and self._confirm_affordable():
                # Confirm it later: after a drain (a cool-down, so it is met from idle, not carried
                # by the soak's own momentum) a whole new soak, every check of which must hold. A
                # soak that fit inside one of the machine's fast phases must also hold in the next.
                self._confirms += 1
                self._confirming = True
                self._drain_then(SOAK, self.rate_per_s)
                return
        self._conclude()

    def _soak_failed(self, obs: Observation, absorbed_per_s: float | None = None) -> None:
        """A check of the soak failed, or the backlog grew over it. The rate no longer counts as
        held; the rate held below it (if any) is the bracket's floor again. A failed check is
        **repeated** ``soak_repeats`` times while the budget affords it (``_soak_repeat_affordable``):
        after a drain the rate starts a whole new soak (every check of it must hold again), so one
        stall shorter than a check no longer lowers the capacity. A rate whose soak failed past its
        repeats (or whose backlog grew over it) is lowered: the next candidate is the **median** of
        what every soak check at the rate absorbed (a slow phase of the machine shows its capacity
        in most of them; one stalled check does not drag it down), or, lowered after fewer than
        ``SOAK_MEDIAN_CHECKS_MIN`` soak checks, what its failing checks absorbed; at least ``backoff_floor`` of this rate and at most one
        tolerance under it, held and soaked in one go; at or under a rate that held already, that
        one is soaked. It becomes the first unheld rate only when it failed twice (two failed
        checks at it, or the growth over a hold); ``soak_failed`` lists every failure."""
        rate = self.rate_per_s
        growth = absorbed_per_s is not None
        confirming, self._confirming = self._confirming, False
        self._held_rates.pop(rate, None)
        self._soaked.discard(rate)  # a confirmation that failed unseats the soak it was to confirm
        lower = [r for r in self._held_rates if r < rate]
        self.held_per_s = max(lower) if lower else None
        self._held_sustainable_per_s = self._held_rates[self.held_per_s] if lower else None
        self._soak_failures[rate] = self._soak_failures.get(rate, 0) + 1
        repeat = (not growth and not confirming and self._soak_failures[rate] <= self.settings.soak_repeats
                  and self._soak_repeat_affordable())
        check_absorbed = absorbed_per_s if growth else (
            min(obs.published, obs.intended) / (obs.interval_ms / 1000.0) if obs.interval_ms else 0.0)
        self.soak_failed.append({"rate_per_s": rate, "check": self.checks, "checks_held": self._held,
                                 "absorbed_msgs_per_s": check_absorbed, "backlog_grew": growth, "repeated": repeat,
                                 "confirming": confirming})
        if repeat:
            self._drain_then(SOAK, rate)
            return
        seen = sorted(self._soak_seen.get(rate, ()))
        if absorbed_per_s is None:
            if seen and (self._soak_failures[rate] > 1 or len(seen) >= SOAK_MEDIAN_CHECKS_MIN):
                absorbed_per_s = seen[(len(seen) - 1) // 2]
            else:
                absorbed_per_s = self._failed_absorbed.get(rate, 0.0)
        if growth or self._failures.get(rate, 0) >= 2 or (self.bad_per_s is not None and self.bad_per_s <= rate):
            self.bad_per_s = rate
        self._bad_from_ramp = False
        self.rebisections = self.settings.rebisect_max
        settings = self.settings
        candidate = min(rate * (1.0 - settings.tolerance), max(absorbed_per_s, rate * settings.backoff_floor))
        self.good_per_s = min(self.good_per_s, candidate)
        if self.held_per_s is not None and candidate <= self.held_per_s:
            self._finish()
            return
        if candidate < settings.rate_min_per_s:
            self._fail()
            return
        self._drain_then(SOAK, candidate)

    def _confirm_affordable(self) -> bool:
        """The budget affords a confirmation soak after a drain and, should it fail, a whole hold and
        soak of a lower rate after another drain (so a failed confirmation does not leave the search
        ending on a soak the budget shortened)."""
        settings, left = self.settings, self._checks_left
        return left is None or left >= 2 * (settings.hold_checks + settings.soak_checks) + 3

    def _soak_repeat_affordable(self) -> bool:
        """The budget affords a repeated soak (a whole hold and soak after a drain) and still one
        more hold after it, should the repeat fail too; else a failed soak lowers the rate at once
        (a search that ran out of time during a repeat would end with no rate held)."""
        settings, left = self.settings, self._checks_left
        return left is None or left >= 2 * settings.hold_checks + settings.soak_checks + 3
