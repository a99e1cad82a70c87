"""``--rate max``'s checks: what one check interval showed (``Observation``), when it counts as
keeping up (``Thresholds``, ``verdict_of``) and the search's knobs (``SearchSettings``). The rule
and the state table that uses them are in ``harness.maxrate`` (which re-exports these names).
Pure: no clock, no I/O."""
from __future__ import annotations

import math
from dataclasses import dataclass

from mqbench.errors import UserError

# The search's states (``harness.maxrate``'s state table) and the verdicts of a check.
RAMP, BISECT, CONFIRM, DRAIN, HOLD, SOAK, VERIFY, DONE, FAILED = ("ramp", "bisect", "confirm", "drain", "hold", "soak",
                                                                 "verify", "done", "failed")
HEALTHY, UNHEALTHY, DRAINED, BACKLOGGED = "healthy", "unhealthy", "drained", "backlogged"


@dataclass(frozen=True)
class Thresholds:
    """When a check interval counts as keeping up (``harness.maxrate``'s module docstring)."""

    publish_backlog_msgs_max: int = 1000
    consume_backlog_msgs_max: int = 1000
    error_share_max: float = 0.001
    publish_latency_ms_p99_max: float = 1000.0
    published_share_min: float = 0.95  # 0 = not checked
    # > 0: a backlog limit is at least this many seconds of the check's offered load (a fixed count
    # is a long queue at 300 msgs/s and less than the report noise at 3,000)
    backlog_s_max: float = 0.0
    drained_msgs_max: int = 50  # a drain ends when backlogs and requests in flight are at most this


@dataclass(frozen=True)
class SearchSettings:
    """How the search moves: start, ramp, precision, hold length, limits."""

    start_rate_per_s: float = 1000.0
    ramp_factor: float = 2.0
    tolerance: float = 0.02
    hold_checks: int = 5
    hold_growth_share_max: float = 0.005
    hold_growth_floor_s: float = 0.0  # growth up to this many seconds of load is noise, not growth
    backoff_factor: float = 0.97
    backoff_floor: float = 0.8
    drain_checks_max: int = 30
    max_checks: int = 300
    rate_min_per_s: float = 1.0
    rebisect_max: int = 2  # upward bisections after a backed-off hold held
    soak_repeats: int = 0  # a soak that fails starts again at the same rate this many times before the rate is lowered
    soak_checks: int = 0  # the final candidate's hold goes on this many more checks before it stands
    confirm_soaks: int = 0  # a rate whose soak held is soaked again this many times after a drain (budget permitting)

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
        if not self.hold_growth_floor_s >= 0:
            problems.append("hold_growth_floor_s must be >= 0")
        if not 0 <= self.hold_growth_share_max < 1:
            problems.append("hold_growth_share_max must be in [0, 1)")
        if not 0 < self.backoff_factor < 1:
            problems.append("backoff_factor must be in (0, 1)")
        if not 0 < self.backoff_floor <= self.backoff_factor:
            problems.append("backoff_floor must be in (0, backoff_factor]")
        if self.soak_checks < 0 or self.soak_repeats < 0 or self.confirm_soaks < 0:
            problems.append("soak_checks, soak_repeats and confirm_soaks must be >= 0")
        if self.rebisect_max < 0:
            problems.append("rebisect_max must be >= 0")
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
    publish_in_flight: int = 0  # at the end of the interval: send requests awaiting their ack


def verdict_of(obs: Observation, limits: Thresholds) -> tuple[bool, list[str]]:
    """(healthy, reasons it is not) for one check."""
    reasons = []
    rate_per_s = obs.intended / (obs.interval_ms / 1000.0) if obs.interval_ms else 0.0
    publish_max = max(limits.publish_backlog_msgs_max, int(limits.backlog_s_max * rate_per_s))
    consume_max = max(limits.consume_backlog_msgs_max, int(limits.backlog_s_max * rate_per_s))
    if obs.publish_backlog_msgs > publish_max:
        reasons.append(f"publish backlog {obs.publish_backlog_msgs} > {publish_max}")
    if obs.consume_backlog_msgs > consume_max:
        reasons.append(f"consume backlog {obs.consume_backlog_msgs} > {consume_max}")
    attempts = obs.published + obs.publish_errors
    if attempts and obs.publish_errors / attempts > limits.error_share_max:
        reasons.append(f"error share {obs.publish_errors / attempts:.4f} > {limits.error_share_max}")
    if limits.published_share_min and obs.intended and obs.published < limits.published_share_min * obs.intended:
        reasons.append(f"acknowledged {obs.published} < {limits.published_share_min:g} x {obs.intended} offered")
    if obs.publish_latency_ms_p99 is not None and obs.publish_latency_ms_p99 > limits.publish_latency_ms_p99_max:
        reasons.append(f"p99 publish latency {obs.publish_latency_ms_p99:.1f} ms > {limits.publish_latency_ms_p99_max} ms")
    return not reasons, reasons
