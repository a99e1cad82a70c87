"""Cell verdicts: did the system under test carry what was offered? Pure: figures in, verdict out.

Every cell of a result gets exactly one verdict (``cells[].verdict``):

==============  ====================================================================================
verdict         when
==============  ====================================================================================
``held``        fixed or profile rate: achieved >= 99 % of offered, and every signal below stayed
                within its bound; ``--rate max``: the search finished, so its capacity is a rate
                that held for a whole hold (``harness.maxrate``)
``saturated``   fixed or profile rate: the offered load was not carried; ``verdict_signals`` names
                every signal that says so. A saturated cell is a valid measurement of an overload,
                never a capacity
``failed``      no measurement to judge: the cell could not run (``failed_cells``), nothing was
                acknowledged, or a ``--rate max`` search did not finish (no rate held on repeat)
==============  ====================================================================================

Signals of saturation (``SIGNALS``, each with a detail line in ``verdict_detail``), from the cell's
aggregates and windows (``Bounds`` holds every number):

* ``achieved under offered``: of the messages offered in the measured phase (intended in it:
  sent, or still due and unsent at its end), < 99 % were acknowledged by ``ack_grace_ms`` after
  the phase ended (``measured_acked_on_time_msgs`` / ``measured_offered_msgs``, counted by
  intended time so a latency that straddles the phase's edges does not count, while acks that
  come later are a queue of unacknowledged sends that grew through the phase, an overload the
  sender's lateness never shows when the in-flight window did not fill; results without that
  count use ``measured_acked_msgs``, acknowledged whenever; messages still unsent at the end up
  to ``in_flight_allowance_s_max`` of offered load are a send lag, judged by the lateness signal). Results without those counts
  compare acknowledgements in the phase with
  offered rate x duration, where messages still in flight at the end (up to one p99 publish
  latency of offered load, at most ``in_flight_allowance_s_max`` of it) are not counted short;
* ``publish delay growing``: the open-loop sender's lateness (publish delay p99) in the last
  window, or over the whole phase, above ``publish_delay_ms_p99_max`` (the schedule is slipping);
* ``send backlog``: due but unsent messages at the end of the measured phase above
  ``max(backlog_msgs_min, backlog_s x offered msgs/s)``;
* ``consume backlog``: owed deliveries not consumed at the end of the measured phase above
  ``max(backlog_msgs_min, backlog_s x deliveries/s)`` (deliveries/s: offered x the groups'
  fan-out), or still owed after the drain period;
* ``errors``: publish errors above ``error_share_max`` of the attempts.

**Achieved msgs/s** counts the same messages as the ``achieved under offered`` signal, over the same
window: the messages intended in the measured phase and acknowledged within ``ack_grace_ms`` after
it (``measured_acked_on_time_msgs``; ``measured_acked_msgs`` in results without it), divided by the
phase's duration. Offered counts the messages intended in the same phase, so achieved never exceeds
offered by more than the pacer's edge (a message or so); acknowledgements of warm-up messages that
land in the phase, which the ack-time throughput (``aggregates.throughput_msgs_per_s``) counts,
are not achieved load. Results without those counts use the acks in the phase by ack time.

A result file written before verdicts existed (``mqbench.result/1``) is judged by the same rules
from what it holds (``judge_cell``), so old and new results read alike in a report.
"""
from __future__ import annotations

from dataclasses import dataclass

HELD, SATURATED, FAILED = "held", "saturated", "failed"
VERDICTS = (HELD, SATURATED, FAILED)
SIGNALS = ("achieved under offered", "publish delay growing", "send backlog", "consume backlog", "errors")


@dataclass(frozen=True)
class Bounds:
    """What still counts as bounded (see the module docstring)."""

    achieved_share_min: float = 0.99
    publish_delay_ms_p99_max: float = 1000.0
    backlog_msgs_min: int = 1000
    backlog_s: float = 1.0
    error_share_max: float = 0.001
    in_flight_allowance_s_max: float = 0.25
    ack_grace_ms: int = 1000  # an ack of a message offered in the phase counts until this long after it


DEFAULT_BOUNDS = Bounds()


@dataclass(frozen=True)
class Verdict:
    verdict: str
    signals: tuple[str, ...] = ()
    detail: tuple[str, ...] = ()
    offered_msgs_per_s: float | None = None
    achieved_msgs_per_s: float | None = None
    capacity_msgs_per_s: float | None = None
    first_unheld_rate_msgs_per_s: float | None = None

    def fields(self) -> dict:
        """The cell fields of the result (``cells[].verdict`` ... see ``harness.results``)."""
        return {"verdict": self.verdict, "verdict_signals": list(self.signals), "verdict_detail": list(self.detail),
                "offered_msgs_per_s": self.offered_msgs_per_s, "achieved_msgs_per_s": self.achieved_msgs_per_s,
                "capacity_msgs_per_s": self.capacity_msgs_per_s,
                "first_unheld_rate_msgs_per_s": self.first_unheld_rate_msgs_per_s}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def judge_search(search: dict) -> Verdict:
    """A ``--rate max`` cell: held with its capacity when the search finished, failed otherwise."""
    state = search.get("state")
    capacity = _number(search.get("capacity_msgs_per_s"))
    sustainable = _number(search.get("sustainable_rate_per_s"))
    if state == "done" and capacity is None:
        capacity = sustainable  # a mqbench.result/1 record: the absorbed rate is all it kept
    if state != "done" or capacity is None:
        checks = search.get("checks")
        detail = f"max-rate search ended {state} after {checks} checks: no rate held on repeat"
        peak = _number(search.get("peak_healthy_rate_per_s"))
        if peak:  # what the search saw, for a reviewer; never a capacity
            detail += f" (single checks passed up to {peak:,.0f} msgs/s)"
        return Verdict(FAILED, ("search unfinished",), (detail,))
    unheld = _number(search.get("first_unheld_rate_msgs_per_s"))
    achieved = sustainable if sustainable is not None else capacity
    in_a_row = search.get("capacity_checks_held")
    if isinstance(in_a_row, int) and not isinstance(in_a_row, bool) and in_a_row > 0:
        detail = f"held {capacity:,.0f} msgs/s for {in_a_row} checks in a row (hold and soak"
        soaks = search.get("capacity_soaks_held")
        if isinstance(soaks, int) and not isinstance(soaks, bool) and soaks >= 2:  # a record of stop 19 on
            detail += f", confirmed by {soaks - 1} more after a drain"
        detail += ")" if search.get("capacity_soaked") or not (search.get("settings") or {}).get("soak_checks") \
            else ", the soak shortened by the budget)"
    else:  # a record from before the soak
        detail = f"held {capacity:,.0f} msgs/s for the whole hold"
    if unheld is not None:
        detail += f"; {unheld:,.0f} msgs/s did not hold (bracket {(unheld - capacity) / unheld:.1%} wide)"
    return Verdict(HELD, (), (detail,), offered_msgs_per_s=capacity, achieved_msgs_per_s=achieved,
                   capacity_msgs_per_s=capacity, first_unheld_rate_msgs_per_s=unheld)


def _achieved(aggregates: dict, published: int, duration_s: float, bounds: Bounds) -> float | None:
    """Achieved msgs/s over the window the verdict judges (module doc, "achieved msgs/s")."""
    if not duration_s:
        return None
    for name in ("measured_acked_on_time_msgs", "measured_acked_msgs"):
        count = aggregates.get(name)
        if isinstance(count, int) and not isinstance(count, bool):
            return count / duration_s
    return published / duration_s


def judge_fixed(aggregates: dict, windows: list[dict], offered_msgs_per_s: float | None,
                bounds: Bounds = DEFAULT_BOUNDS) -> Verdict:
    """A fixed-rate or profile-rate cell from its aggregates and windows (module docstring)."""
    duration_s = (aggregates.get("duration_ms") or 0) / 1000.0
    published = aggregates.get("published") or 0
    achieved = _achieved(aggregates, published, duration_s, bounds)
    if not published:
        return Verdict(FAILED, ("nothing acknowledged",), ("no message was acknowledged in the measured phase",),
                       offered_msgs_per_s=offered_msgs_per_s, achieved_msgs_per_s=achieved)
    signals: list[str] = []
    detail: list[str] = []
    offered = offered_msgs_per_s
    offered_count, acked_count = aggregates.get("measured_offered_msgs"), aggregates.get("measured_acked_msgs")
    on_time = aggregates.get("measured_acked_on_time_msgs")
    when = "whenever the ack came"
    if isinstance(on_time, int):  # acks long after the phase are a queue that grew, not a carried load
        acked_count, when = on_time, f"within {bounds.ack_grace_ms / 1000:g} s after it ended"
    if isinstance(offered_count, int) and isinstance(acked_count, int) and offered_count > 0:
        # Counted by intended time: no boundary effect, whatever the ack latency. Messages still due
        # at the very end, up to a short send lag of offered load, are lateness, not shortfall.
        unsent = aggregates.get("publish_backlog_msgs_end") or 0
        rate_now = offered or (offered_count / duration_s if duration_s else 0.0)
        offered_count -= min(unsent, int(rate_now * bounds.in_flight_allowance_s_max))
        if acked_count < bounds.achieved_share_min * offered_count:
            signals.append("achieved under offered")
            detail.append(f"acknowledged {acked_count:,} of the {offered_count:,} messages offered in the measured "
                          f"phase, {when} ({acked_count / offered_count:.1%} < {bounds.achieved_share_min:.0%})")
    elif offered and duration_s:
        p99_s = (aggregates.get("publish_latency_ms_p99") or 0) / 1000.0
        offered_count = offered * duration_s
        in_flight_allowance = offered * min(p99_s, bounds.in_flight_allowance_s_max, duration_s)
        if published + in_flight_allowance < bounds.achieved_share_min * offered_count:
            signals.append("achieved under offered")
            detail.append(f"achieved {published:,} of {offered_count:,.0f} offered "
                          f"({published / offered_count:.1%} < {bounds.achieved_share_min:.0%})")
    delay_whole = _number(aggregates.get("publish_delay_ms_p99"))
    measured = [w for w in windows if _number(w.get("publish_delay_ms_p99")) is not None]
    delay_last = _number(measured[-1]["publish_delay_ms_p99"]) if measured else None
    worst = max((d for d in (delay_whole, delay_last) if d is not None), default=None)
    if worst is not None and worst > bounds.publish_delay_ms_p99_max:
        first = _number(measured[0]["publish_delay_ms_p99"]) if measured else None
        trend = f" (first window {first:,.0f} ms, last {delay_last:,.0f} ms)" if first is not None else ""
        signals.append("publish delay growing")
        detail.append(f"send lateness p99 {worst:,.0f} ms > {bounds.publish_delay_ms_p99_max:,.0f} ms{trend}")
    rate = offered or achieved or 0.0
    send_backlog = aggregates.get("publish_backlog_msgs_end")
    send_bound = max(bounds.backlog_msgs_min, bounds.backlog_s * rate)
    if isinstance(send_backlog, (int, float)) and send_backlog > send_bound:
        signals.append("send backlog")
        detail.append(f"{send_backlog:,.0f} msgs due but unsent at the end > {send_bound:,.0f}")
    consume_backlog = aggregates.get("consume_backlog_msgs_end")
    after_drain = aggregates.get("consume_backlog_msgs_after_drain")
    acked_total = aggregates.get("acked_msgs_total") or 0
    fan_out = (aggregates.get("expected_deliveries_total") or 0) / acked_total if acked_total else 1.0
    consume_bound = max(bounds.backlog_msgs_min, bounds.backlog_s * rate * max(fan_out, 1.0))
    if isinstance(consume_backlog, (int, float)) and consume_backlog > consume_bound:
        signals.append("consume backlog")
        detail.append(f"{consume_backlog:,.0f} deliveries owed at the end > {consume_bound:,.0f}")
    elif isinstance(after_drain, (int, float)) and after_drain > 0:
        signals.append("consume backlog")
        detail.append(f"{after_drain:,.0f} deliveries still owed after the drain")
    errors = aggregates.get("publish_errors") or 0
    if errors and errors / (errors + published) > bounds.error_share_max:
        signals.append("errors")
        detail.append(f"{errors:,} publish errors ({errors / (errors + published):.2%} > "
                      f"{bounds.error_share_max:.1%})")
    verdict = SATURATED if signals else HELD
    if not signals:
        detail.append(f"achieved {achieved:,.0f} of {offered:,.0f} msgs/s offered" if offered
                      else f"achieved {achieved:,.0f} msgs/s")
    return Verdict(verdict, tuple(signals), tuple(detail), offered_msgs_per_s=offered, achieved_msgs_per_s=achieved)


def judge_cell(cell: dict, bounds: Bounds = DEFAULT_BOUNDS) -> Verdict:
    """The verdict of a ``cells[]`` entry: the one it carries, else judged from what it holds."""
    if cell.get("verdict") in VERDICTS:
        return Verdict(cell["verdict"], tuple(cell.get("verdict_signals") or ()), tuple(cell.get("verdict_detail") or ()),
                       _number(cell.get("offered_msgs_per_s")), _number(cell.get("achieved_msgs_per_s")),
                       _number(cell.get("capacity_msgs_per_s")), _number(cell.get("first_unheld_rate_msgs_per_s")))
    search = cell.get("max_rate_search")
    if isinstance(search, dict):
        return judge_search(search)
    rate = (cell.get("settings") or {}).get("rate")
    offered = _number(rate)
    return judge_fixed(cell.get("aggregates") or {}, cell.get("windows") or [], offered, bounds)


def describe(verdict: Verdict) -> str:
    """``held`` / ``saturated: send backlog, publish delay growing`` / ``failed: ...`` for a table."""
    if not verdict.signals or verdict.verdict == HELD:
        return verdict.verdict
    return f"{verdict.verdict}: {', '.join(verdict.signals)}"
