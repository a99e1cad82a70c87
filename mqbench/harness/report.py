"""Capacity-review tables from result files only (``mqbench report``).

Every row is one matrix cell of one run and carries what makes it traceable: the result folder,
the git commit (``+dirty`` when the checkout had changes) and the seed (the list under the table,
and the ``run`` column when several runs are shown). Figures are read from ``result.json`` and
nowhere else; nothing is re-measured. A cell that failed (``failed_cells``) is a row too, with the
verdict ``failed``.

Every row has a verdict (``harness.verdict``): offered and achieved msgs/s, and whether the load
held. Only a finished ``--rate max`` search has a capacity; a fixed-rate cell never does. The
columns, their headers and their one-line legends are in ``harness.columns``: ``DEFAULT`` (the
table a review reads), ``--wide`` for every figure, CSV and JSON carry every row field. Ratios are
to the machine limits recorded in the same result: ``disk_share_of_limit`` = disk MB/s (achieved x
disk bytes per message, or publish MB/s when the bytes on disk were not measured) /
``disk_write_fdatasync_mb_per_s``, and ``loopback_share_of_limit`` = achieved msgs/s /
``loopback_small_frames_per_s``. Under the table: each run's provenance and what was measured
(the embedded reference broker and its layout, or the ``--target`` cluster's real brokers, groups
and replicas), this machine and its limits, then the legend.

A cell that batches also shows its batched topics' disk bytes per message beside the whole cell's
(delayed messages go alone, since RocketMQ never batches them, so the whole-cell figure sits above
what batching and whole-batch compression achieve). Under the table, each cell that recorded a
prediction (``disk_predicted``: ``codecs.footprint``, what ``mqbench codecs bench --workload P
--batch N`` prints) is compared like with like: the prediction per class (as sent, delayed parked,
delayed delivered) is applied to the messages the cell's stores hold of each class
(``disk_stored_classes``), so a run shorter than its delays, which stored only parked copies, is
not compared with the steady state; the note gives measured against predicted per copy and the
deviation, the batched topics against the batchable figure, and the steady-state figure (every
delayed message delivered, so stored twice).

The html format adds charts drawn from the same files (``charts``): publish throughput per window
over the measured phase, and publish and end-to-end latency by percentile from the merged
histograms, one line per (result, cell).

Machines needed for a target daily volume (``--daily-messages``), stated in the table with its
inputs, only for rows that held (``sizing_basis_msgs_per_s``: what a finished max search absorbed at
its capacity, or the achieved rate of a held fixed-rate cell, which is a lower bound); a saturated
or failed row is not sized. When a figure comes from the embedded reference broker the sizing
carries a caveat: it sizes a fleet of that broker on machines like this one, not RocketMQ::

    average msgs/s   = daily_messages / 86400
    peak msgs/s      = average * peak_factor
    per instance     = sized-from msgs/s / layout instances  (replicas included: they do the work too)
    per host         = per instance * layout instances_per_host
    hosts needed     = max(ceil(peak / (per host * headroom)), replicas_per_group)

``headroom`` is the share of a host's measured capacity we plan to use (0.7 keeps 30 % spare for
failover and growth); at least ``replicas_per_group`` hosts are needed since a group's replicas
live on distinct hosts.
"""
from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass
from pathlib import Path

from mqbench.errors import UserError
from mqbench.harness.columns import (ACHIEVED, BATCHED_DISK, CONSUMPTION, DEFAULT, DELTAS, E2E_CLOCK, E2E_P99,
                                     PER_HOST, PER_INSTANCE, RUN, SIZING, USER_DISK, WIDE, legend)
from mqbench.harness.verdict import FAILED, HELD, judge_cell
from mqbench.harness.verdict import describe as describe_verdict
from mqbench.output import document, table

REPORT_SCHEMA = "mqbench.report/2"
FORMATS = ("terminal", "markdown", "csv", "html")
SECONDS_PER_DAY = 86_400


@dataclass
class LoadedResult:
    folder: Path
    doc: dict


def machines_needed(daily_messages: float, peak_factor: float, headroom: float, capacity_msgs_per_s: float,
                    instances: int, instances_per_host: float, replicas_per_group: int = 1) -> dict:
    """The sizing arithmetic of the module docstring; every intermediate figure is returned."""
    if not daily_messages > 0:
        raise UserError(f"daily messages must be > 0, got {daily_messages}")
    if not peak_factor >= 1:
        raise UserError(f"peak factor must be >= 1, got {peak_factor}")
    if not 0 < headroom <= 1:
        raise UserError(f"headroom must be in (0, 1], got {headroom}")
    if not instances >= 1 or not instances_per_host > 0:
        raise UserError("the layout must have at least one instance and one host")
    average = daily_messages / SECONDS_PER_DAY
    peak = average * peak_factor
    per_instance = capacity_msgs_per_s / instances
    per_host = per_instance * instances_per_host
    usable = per_host * headroom
    hosts = max(math.ceil(peak / usable), replicas_per_group) if usable > 0 else None
    return {"daily_messages": daily_messages, "peak_factor": peak_factor, "headroom": headroom,
            "average_msgs_per_s": average, "peak_msgs_per_s": peak, "per_instance_msgs_per_s": per_instance,
            "per_host_msgs_per_s": per_host, "usable_per_host_msgs_per_s": usable, "hosts_needed": hosts}


def _short_commit(git: dict) -> str:
    commit = git.get("commit")
    if not commit:
        return "nogit"
    return commit[:10] + ("+dirty" if git.get("dirty") else "")


def _asked_batch(cell: dict) -> int | None:
    settings = cell.get("settings") or {}
    by_topic = settings.get("batch_msgs_by_topic")
    if isinstance(by_topic, dict) and by_topic:
        return max(by_topic.values())
    batch = settings.get("batch", settings.get("batch_msgs"))
    return int(batch) if isinstance(batch, int) or (isinstance(batch, str) and batch.isdigit()) else None


def _batch_texts(cell: dict) -> tuple[str | None, str | None, float | None]:
    """(``achieved batch`` text, ``batch p50/p99`` text, mean) from ``cells[].batch_achieved``."""
    achieved = cell.get("batch_achieved")
    asked = _asked_batch(cell)
    if not isinstance(achieved, dict) or not isinstance(achieved.get("msgs_per_record_mean"), (int, float)):
        return None, None, None
    mean = achieved["msgs_per_record_mean"]
    text = f"{mean:,.1f}" if asked is None else f"{mean:,.1f} of {asked}"
    if asked is not None and mean < asked / 2:
        text += " (< half)"
    p50, p99 = achieved.get("msgs_per_record_p50"), achieved.get("msgs_per_record_p99")
    percentiles = f"{p50:g} / {p99:g}" if isinstance(p50, (int, float)) and isinstance(p99, (int, float)) else None
    return text, percentiles, mean


def _verdict_text(verdict) -> str:
    if verdict.capacity_msgs_per_s is not None:
        held, unheld = verdict.capacity_msgs_per_s, verdict.first_unheld_rate_msgs_per_s
        if unheld is None or not unheld:
            return "held (capacity)"
        return f"held (capacity; {unheld:,.0f} did not hold: bracket {(unheld - held) / unheld:.1%})"
    return describe_verdict(verdict)


def _sizing_basis(verdict) -> float | None:
    """The held rate a row may be sized from, or None (saturated, failed)."""
    if verdict.verdict != HELD:
        return None
    return verdict.achieved_msgs_per_s if verdict.achieved_msgs_per_s is not None else verdict.offered_msgs_per_s


def _scenario_text(scenario: dict) -> str:
    """``3 members, churn 4s, slow 1/3, 1000µs/msg`` (``-`` for the plain one-consumer case)."""
    parts = []
    members = scenario.get("members", 1)
    if members > 1:
        parts.append(f"{members} members")
    if scenario.get("churn_interval_ms"):
        parts.append(f"churn every {scenario['churn_interval_ms'] / 1000:g}s")
    if scenario.get("slow"):
        parts.append("1 member 10x slower")
    if scenario.get("processing_us"):
        parts.append(f"{scenario['processing_us']}µs/msg")
    return ", ".join(parts) or "-"


def _batched_figures(cell: dict, layout: dict, agg: dict) -> dict:
    """The batched topics' disk bytes per message (all replicas, and one copy), the share of the
    cell's messages that went alone (delayed ones: RocketMQ never batches them), and what
    ``codecs.footprint`` predicts for the messages the cell stored (``_predicted_figures``)."""
    batched = cell.get("disk_batched_bytes_per_msg")
    replicas = layout.get("replicas_per_group") or 1
    acked = agg.get("acked_msgs_total")
    delayed = agg.get("delayed_acked_total")
    share = delayed / acked if batched is not None and acked and isinstance(delayed, int) else None
    return {"disk_batched_bytes_per_msg": batched,
            "disk_batched_bytes_per_msg_per_copy": batched / replicas if batched is not None else None,
            "unbatched_msgs_share": share, **_predicted_figures(cell, replicas, acked)}


def _predicted_figures(cell: dict, replicas: int, acked) -> dict:
    """Measured against predicted, like with like (module doc): the prediction is applied to the
    messages this cell's stores hold, by class (as sent, delayed parked, delayed delivered), so a
    run shorter than its delays is compared with the parked copies it really stored."""
    predicted, stored = cell.get("disk_predicted"), cell.get("disk_stored_classes")
    out = dict.fromkeys(("disk_user_predicted_bytes_per_msg", "disk_user_vs_predicted",
                         "disk_batched_predicted_bytes_per_msg_per_copy", "disk_batched_vs_predicted",
                         "disk_steady_predicted_bytes_per_msg", "disk_prediction_note"))
    measured = cell.get("disk_user_bytes_per_msg")
    if not predicted or not stored or not acked or measured is None:
        return out
    per = {"plain": predicted.get("batchable_bytes_per_msg") or 0.0,
           "parked": predicted.get("delayed_parked_bytes_per_msg") or 0.0,
           "delivered": predicted.get("delayed_delivered_bytes_per_msg") or 0.0}
    expected_copy = sum(stored[f"{kind}_msgs"] * per[kind] for kind in per)
    expected = expected_copy * replicas / acked
    out["disk_user_predicted_bytes_per_msg"] = expected
    out["disk_user_vs_predicted"] = measured / expected - 1 if expected else None
    whole = predicted.get("whole_bytes_per_msg")
    out["disk_steady_predicted_bytes_per_msg"] = whole * replicas if whole is not None else None
    batched = cell.get("disk_batched_bytes_per_msg")
    if batched is not None and predicted.get("batch_msgs", 1) > 1 and per["plain"]:
        out["disk_batched_predicted_bytes_per_msg_per_copy"] = per["plain"]
        out["disk_batched_vs_predicted"] = batched / replicas / per["plain"] - 1
    text = (f"stored {stored['plain_msgs']:,} messages as sent, {stored['parked_msgs']:,} delayed parked and "
            f"{stored['delivered_msgs']:,} delayed delivered; `{predicted.get('command', 'mqbench codecs bench')}` "
            f"predicts {per['plain']:,.0f} / {per['parked']:,.0f} / {per['delivered']:,.0f} B per copy for those, "
            f"{expected / replicas:,.0f} B/msg per copy for this mix: measured {measured / replicas:,.0f} "
            f"({out['disk_user_vs_predicted']:+.1%})")
    if out["disk_batched_vs_predicted"] is not None:
        text += (f"; batched topics {batched / replicas:,.0f} against {per['plain']:,.0f} "
                 f"({out['disk_batched_vs_predicted']:+.1%})")
    if whole is not None:
        text += f"; once every delayed message is delivered (steady state): {whole:,.0f} B/msg per copy"
    out["disk_prediction_note"] = text
    return out


def _batching_notes(rows: list[dict]) -> list[str]:
    """Each cell's stored bytes against ``codecs bench``'s prediction for the same mix (module doc)."""
    notes = []
    for row in rows:
        if row.get("disk_prediction_note"):
            notes.append(f"{row['cell']}: {row['disk_prediction_note']}")
            continue
        whole, batched, share = (row.get("disk_user_bytes_per_msg"), row.get("disk_batched_bytes_per_msg"),
                                 row.get("unbatched_msgs_share"))
        if whole is None or batched is None or not share:
            continue
        notes.append(f"{row['cell']}: {share:.0%} of its messages are delayed and went alone (RocketMQ never batches "
                     f"delayed messages): whole cell {whole:,.0f} B/msg, batched topics {batched:,.0f} B/msg "
                     f"({row['disk_batched_bytes_per_msg_per_copy']:,.0f} per copy; no prediction recorded)")
    return notes


def consumption_compared(rows: list[dict]) -> bool:
    """Rows compare consumption: consume modes differ, or a row used POP or a consumer scenario."""
    return len({r.get("consume") for r in rows}) > 1 or any(
        r.get("consume") == "pop" or r.get("consumer_scenario_text") not in (None, "-") for r in rows)


def _empty_row() -> dict:
    fields = [c.field for c in WIDE + SIZING + DELTAS] + list(_predicted_figures({}, 1, None))
    return dict.fromkeys(fields)


def _row(loaded: "LoadedResult", run_number: int, cell: dict, daily_messages, peak_factor, headroom) -> dict:
    doc = loaded.doc
    limits = doc.get("limits") or {}
    layout = cell.get("layout") or doc["layout"]
    workload = doc["workload"]
    agg = cell["aggregates"]
    verdict = judge_cell(cell)
    achieved = verdict.achieved_msgs_per_s
    disk_bytes = cell.get("disk_bytes_per_msg")
    rate = achieved or 0.0
    disk_mb_per_s = rate * disk_bytes / 1e6 if disk_bytes else agg.get("throughput_mb_per_s")
    disk_limit = limits.get("disk_write_fdatasync_mb_per_s")
    frames_limit = limits.get("loopback_small_frames_per_s")
    batch_text, batch_percentiles, batch_mean = _batch_texts(cell)
    meta_bytes = cell.get("disk_meta_bytes_total")
    row = _empty_row()
    row.update({
        "run": run_number, "result": loaded.folder.name, "commit": _short_commit(doc["git"]), "seed": doc["seed"],
        "profile": workload.get("profile") or workload.get("trace_file"), "layout": layout["name"],
        "cell": cell["name"], "created_utc": doc["created_utc"],
        "offered_msgs_per_s": verdict.offered_msgs_per_s, "achieved_msgs_per_s": achieved,
        "verdict": verdict.verdict, "verdict_text": _verdict_text(verdict),
        "verdict_signals": "; ".join(verdict.signals), "verdict_detail": "; ".join(verdict.detail),
        "capacity_msgs_per_s": verdict.capacity_msgs_per_s,
        "first_unheld_rate_msgs_per_s": verdict.first_unheld_rate_msgs_per_s,
        "throughput_msgs_per_s": agg["throughput_msgs_per_s"], "throughput_mb_per_s": agg["throughput_mb_per_s"],
        "batch_asked_msgs": _asked_batch(cell), "batch_achieved_mean_msgs": batch_mean, "batch_text": batch_text,
        "batch_percentiles_text": batch_percentiles,
        "disk_bytes_per_msg": disk_bytes, "disk_user_bytes_per_msg": cell.get("disk_user_bytes_per_msg"),
        **_batched_figures(cell, layout, agg),
        "disk_meta_mb_total": meta_bytes / 1e6 if isinstance(meta_bytes, (int, float)) else None,
        "cpu_s_per_million_msgs": cell.get("cpu_s_per_million_msgs"),
        "replication_bytes": cell.get("replication_bytes"),
        "hosts": layout["hosts"], "instances": layout["instances"],
        "achieved_per_host_msgs_per_s": achieved / layout["hosts"] if achieved is not None else None,
        "achieved_per_instance_msgs_per_s": achieved / layout["instances"] if achieved is not None else None,
        "disk_share_of_limit": disk_mb_per_s / disk_limit if disk_limit and disk_mb_per_s is not None else None,
        "loopback_share_of_limit": rate / frames_limit if frames_limit else None,
        "measured_on": "target" if doc.get("target") else "embedded reference broker",
    })
    for name in ("publish_latency_ms_p50", "publish_latency_ms_p99", "publish_latency_ms_p999",
                 "publish_latency_ms_max", "publish_delay_ms_p99", "e2e_latency_ms_p99", "delay_error_ms_p50",
                 "delay_error_ms_p99", "early_deliveries", "publish_errors", "consume_msgs_per_s",
                 "publish_backlog_msgs_end", "consume_backlog_msgs_end", "delayed_pending_msgs_end",
                 "e2e_latency_ms_p999", "redeliveries", "duplicates", "consume_gap_ms_max"):
        row[name] = agg.get(name)
    settings = cell.get("settings") or {}
    row["consume"] = settings.get("consume", "pull")
    scenario = settings.get("consumer_scenario") or {}
    row["consumer_scenario_text"] = _scenario_text(scenario)
    clock_us = (cell.get("ray") or {}).get("e2e_clock_uncertainty_us")
    row["e2e_clock_uncertainty_ms"] = None if clock_us is None else clock_us / 1000
    window_p99 = [w.get("e2e_latency_ms_p99") for w in cell.get("windows") or []]
    window_p99 = [v for v in window_p99 if v is not None]
    row["e2e_latency_ms_p99_worst_window"] = max(window_p99) if window_p99 else None
    search = cell.get("max_rate_search")
    if verdict.capacity_msgs_per_s is not None and isinstance(search, dict) \
            and search.get("hold_publish_latency_ms_p99") is not None:
        # A max cell's latency is the one at its capacity (the hold), not the whole search's.
        row["publish_latency_ms_p50"] = search.get("hold_publish_latency_ms_p50")
        row["publish_latency_ms_p99"] = search.get("hold_publish_latency_ms_p99")
    for name in ("broker_cpu_us_per_msg", "client_cpu_us_per_msg", "broker_cpu_machine_share",
                 "client_cpu_machine_share", "producer_cpu_us_per_msg", "consumer_cpu_us_per_msg",
                 "consumer_cpu_us_per_delivery"):
        row[name] = cell.get(name)
    basis = _sizing_basis(verdict)
    row["sizing_basis_msgs_per_s"] = basis
    if daily_messages is not None:
        row["instances_per_host"] = layout["instances_per_host"]
        if basis is not None:
            sizing = machines_needed(daily_messages, peak_factor, headroom, basis, layout["instances"],
                                     layout["instances_per_host"], layout["replicas_per_group"])
            row.update({"per_host_msgs_per_s": sizing["per_host_msgs_per_s"],
                        "peak_msgs_per_s": sizing["peak_msgs_per_s"], "hosts_needed": sizing["hosts_needed"]})
    return row


def _failed_row(loaded: "LoadedResult", run_number: int, failure: dict) -> dict:
    doc = loaded.doc
    workload = doc["workload"]
    row = _empty_row()
    row.update({"run": run_number, "result": loaded.folder.name, "commit": _short_commit(doc["git"]),
                "seed": doc["seed"], "profile": workload.get("profile") or workload.get("trace_file"),
                "layout": doc["layout"]["name"], "cell": str(failure.get("name")), "created_utc": doc["created_utc"],
                "verdict": FAILED, "verdict_text": "failed: cell error", "verdict_signals": "cell error",
                "verdict_detail": str(failure.get("error")),
                "measured_on": "target" if doc.get("target") else "embedded reference broker"})
    return row


def report_rows(results: list[LoadedResult], daily_messages: float | None = None, peak_factor: float = 3.0,
                headroom: float = 0.7) -> list[dict]:
    """One dict per (result, cell), in the order given, failed cells last within their result."""
    rows = []
    for number, loaded in enumerate(results, 1):
        for cell in loaded.doc["cells"]:
            rows.append(_row(loaded, number, cell, daily_messages, peak_factor, headroom))
        for failure in loaded.doc.get("failed_cells") or []:
            if isinstance(failure, dict):
                rows.append(_failed_row(loaded, number, failure))
    return rows


def _cell_text(value, fmt) -> str:
    if value is None:
        return "-"
    if fmt is None:
        return str(value)
    return format(value, fmt)


def _sizing_note(daily_messages, peak_factor, headroom) -> str:
    average = daily_messages / SECONDS_PER_DAY
    return (f"Sizing for {daily_messages:,.0f} messages/day: average {average:,.0f} msgs/s, peak factor "
            f"{peak_factor:g} -> peak {average * peak_factor:,.0f} msgs/s, headroom {headroom:g} "
            f"(hosts = ceil(peak / (per-host held rate x headroom)), at least the replicas per group). Only rows "
            f"that held are sized: a --rate max capacity, or a held fixed rate (a lower bound of the capacity).")


def _sizing_caveats(results: list[LoadedResult]) -> list[str]:
    """One caveat per machine for the runs measured on the embedded reference broker."""
    by_machine: dict[str, list[int]] = {}
    for number, loaded in enumerate(results, 1):
        if loaded.doc.get("target"):
            continue
        machine = loaded.doc["machine"]
        text = f"{machine.get('cpu_model', '?')}, {machine.get('cpu_cores', '?')} cores"
        by_machine.setdefault(text, []).append(number)
    return [f"Caveat (run{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}): measured on mqbench's "
            f"embedded reference broker (Python), not on RocketMQ, with every host of the layout on this one machine "
            f"({machine}, shared with the load generator). The hosts needed size a fleet of that broker on such "
            f"machines; size a real fleet from a `mqbench run --target` against your own brokers."
            for machine, numbers in by_machine.items()]


def _measured_text(doc: dict) -> str:
    layout = doc["layout"]
    if doc.get("target"):
        source = layout.get("source", "its topic routes")
        return (f"--target {doc['target']}: {layout['instances']} brokers in {layout['groups']} groups, "
                f"{layout['replicas_per_group']} replicas per group, on {layout['hosts']} hosts (from {source})")
    return (f"the embedded reference broker, layout {layout['name']} ({layout['hosts']} hosts as loopback addresses "
            f"of this machine, {layout['groups']} groups x {layout['replicas_per_group']} replicas, "
            f"{layout['instances']} instances)")


def _run_lines(results: list[LoadedResult]) -> list[str]:
    lines = []
    for number, loaded in enumerate(results, 1):
        doc = loaded.doc
        machine = doc["machine"]
        limits = doc.get("limits") or {}
        limit_text = (f"limits disk {limits['disk_write_fdatasync_mb_per_s']:.1f} MB/s write+fdatasync, loopback "
                      f"{limits['loopback_small_frames_per_s']:,.0f} frames/s"
                      + (f" (measured {limits['measured_utc']})" if limits.get("measured_utc") else "")
                      if "disk_write_fdatasync_mb_per_s" in limits and "loopback_small_frames_per_s" in limits
                      else "limits not measured")
        lines.append(f"run {number}: {loaded.folder.name}: commit {_short_commit(doc['git'])}, seed {doc['seed']}, "
                     f"{doc['created_utc']}, workload {doc['workload'].get('profile') or doc['workload'].get('trace_file')}"
                     + (f", rate {doc['rate']}; " if "rate" in doc else "; ")
                     + f"measured {_measured_text(doc)}; machine "
                     f"{machine.get('cpu_model', '?')} x{machine.get('cpu_cores', '?')}, {limit_text}; "
                     f"warm-up {doc['warmup_ms'] / 1000:g} s, measured {doc['duration_ms'] / 1000:g} s")
    return lines


#: (delta field, compared field): the relative change of each row against its baseline row.
DELTA_FIELDS = (("throughput_delta_share", "achieved_msgs_per_s"),
                ("capacity_delta_share", "capacity_msgs_per_s"),
                ("publish_latency_p99_delta_share", "publish_latency_ms_p99"),
                ("e2e_latency_p99_delta_share", "e2e_latency_ms_p99"),
                ("disk_user_bytes_per_msg_delta_share", "disk_user_bytes_per_msg"),
                ("broker_cpu_per_msg_delta_share", "broker_cpu_us_per_msg"))


def add_baseline_deltas(rows: list[dict], baseline_rows: list[dict]) -> list[dict]:
    """Each row gets ``*_delta_share`` = (row - base) / base against the baseline row of the same
    cell name (else the baseline's first row), and ``baseline`` naming that row; None where either
    figure is missing or the base is 0."""
    if not baseline_rows:
        raise UserError("the baseline result has no cells")
    by_cell = {row["cell"]: row for row in baseline_rows}
    for row in rows:
        base = by_cell.get(row["cell"], baseline_rows[0])
        row["baseline"] = f"{base['result']} {base['cell']}"
        for delta, field in DELTA_FIELDS:
            mine, theirs = row.get(field), base.get(field)
            row[delta] = (mine - theirs) / theirs if mine is not None and theirs else None
    return rows


def render(results: list[LoadedResult], fmt: str = "terminal", *, daily_messages: float | None = None,
           peak_factor: float = 3.0, headroom: float = 0.7, baseline: LoadedResult | None = None,
           wide: bool = False, skipped: list[str] | None = None, dr: list[LoadedResult] | None = None) -> str:
    """The report as text in ``fmt`` (terminal, markdown, csv or html): the table, the runs, the
    caveats and sizing note, then the legend of the columns shown. ``wide`` shows every column;
    with ``baseline``, every row also shows its change against the baseline's row of the same cell
    (``add_baseline_deltas``); ``skipped`` lines (results of another kind) are listed as notes.
    ``dr`` (``mqbench dr`` results) adds a DR table of their drills (``report_dr``), also alone
    when there is no run result; CSV carries the run rows only."""
    from mqbench.harness.report_dr import dr_section

    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not results and not dr:
        raise UserError("no result to report")
    if not results:
        if fmt == "csv":
            raise UserError("a report of DR results only has no CSV rows; use --format terminal, markdown or html")
        return dr_section(dr, fmt, standalone=True) + ("\n".join(skipped or []) + "\n" if skipped else "")
    rows = report_rows(results, daily_messages, peak_factor, headroom)
    columns = list(WIDE if wide else DEFAULT)
    if not wide and len({row["layout"] for row in rows}) > 1:
        at = columns.index(ACHIEVED) + 1
        columns[at:at] = [PER_HOST, PER_INSTANCE]
    if not wide and any(row.get("disk_batched_bytes_per_msg") is not None for row in rows):
        at = columns.index(USER_DISK) + 1
        columns[at:at] = [BATCHED_DISK]
    if not wide and consumption_compared(rows):
        at = columns.index(E2E_P99) + 1
        columns[at:at] = CONSUMPTION
    if not wide and any(row.get("e2e_clock_uncertainty_ms") for row in rows):
        columns.insert(columns.index(E2E_P99) + 1, E2E_CLOCK)
    if len(results) > 1 and not wide:
        columns.insert(0, RUN)
    if daily_messages is not None:
        columns += SIZING
    if baseline is not None:
        add_baseline_deltas(rows, report_rows([baseline], daily_messages, peak_factor, headroom))
        columns += DELTAS
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    headers = [c.header for c in columns]
    cells = [[_cell_text(row.get(c.field), c.fmt) for c in columns] for row in rows]
    notes = _run_lines(results)
    if baseline is not None:
        notes.append(f"baseline: {baseline.folder.name} (vs base = (row - baseline row of the same cell, else its "
                     "first row) / baseline row)")
    if daily_messages is not None:
        notes.append(_sizing_note(daily_messages, peak_factor, headroom))
        notes += _sizing_caveats(results)
    notes += _batching_notes(rows)
    notes += list(skipped or [])
    key = legend(columns)
    extra = dr_section(dr, fmt) if dr else ""
    if fmt in ("terminal", "markdown"):
        return text_block(fmt, headers, cells, notes, key) + extra
    return _html(headers, cells, notes, key, results, extra)


def text_block(fmt: str, headers: list[str], cells: list[list[str]], notes: list[str], key: list[str]) -> str:
    """A table, its notes and its legend as terminal text or markdown."""
    if fmt == "terminal":
        return (table(cells, headers) + "\n\n" + "\n".join(notes) + "\n\nLegend:\n"
                + "\n".join(f"  {line}" for line in key) + "\n")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return ("\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n\nLegend:\n\n"
            + "\n".join(f"- {line}" for line in key) + "\n")


def html_block(headers: list[str], cells: list[list[str]], notes: list[str], key: list[str]) -> str:
    """A table (numbers right-aligned), its notes and its legend as an html fragment."""
    def numeric(text: str) -> bool:
        try:
            float(text.replace(",", "").rstrip("%"))
        except ValueError:
            return False
        return True

    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class=\"n\">{html.escape(c)}</td>" if numeric(c) else f"<td>{html.escape(c)}</td>"
                                    for c in row) + "</tr>\n" for row in cells)
    items = "".join(f"<li>{html.escape(n)}</li>\n" for n in notes)
    legend_items = "".join(f"<li>{html.escape(line)}</li>\n" for line in key)
    return (f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n<ul>\n{items}</ul>\n"
            f"<h2>Legend</h2>\n<ul class=\"legend\">\n{legend_items}</ul>\n")


_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
          "th,td{border:1px solid #bbb;padding:3px 6px}th{background:#eee}td.n{text-align:right}"
          "li{font-size:13px}")


def html_page(body: str) -> str:
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mqbench report</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>mqbench capacity review</h1>\n{body}</body></html>\n")


def _html(headers: list[str], cells: list[list[str]], notes: list[str], key: list[str],
          results: list[LoadedResult], extra: str = "") -> str:
    """The table, the run notes, then charts: throughput over time and latency CDFs (``charts``),
    then ``extra`` (the DR section)."""
    from mqbench.harness.charts import latency_cdf_chart, throughput_chart

    return html_page(html_block(headers, cells, notes, key)
                     + f"<h2>Throughput over time</h2>\n{throughput_chart(results)}\n<h2>Latency by percentile</h2>\n"
                     f"{latency_cdf_chart(results, 'publish_latency')}\n{latency_cdf_chart(results, 'e2e_latency')}\n"
                     + extra)


def report_document(results: list[LoadedResult], *, daily_messages: float | None = None, peak_factor: float = 3.0,
                    headroom: float = 0.7, baseline: LoadedResult | None = None,
                    skipped: list[str] | None = None, dr: list[LoadedResult] | None = None) -> dict:
    """The ``--json`` document, schema ``mqbench.report/2`` (``/2``: rows carry verdicts; only held
    rows are sized; ``caveats`` and ``skipped`` added; ``dr``: one object per drill of the DR
    results, its ``result`` folder name added)."""
    from mqbench.harness.report_dr import dr_rows

    runs = [{"result": r.folder.name, "path": str(r.folder), "git": r.doc["git"], "seed": r.doc["seed"],
             "created_utc": r.doc["created_utc"], "machine": r.doc["machine"], "limits": r.doc.get("limits"),
             "layout": r.doc["layout"], "workload": r.doc["workload"], "target": r.doc.get("target"),
             "measured": _measured_text(r.doc)} for r in results]
    sizing = None
    if daily_messages is not None:
        sizing = {"daily_messages": daily_messages, "peak_factor": peak_factor, "headroom": headroom,
                  "average_msgs_per_s": daily_messages / SECONDS_PER_DAY,
                  "peak_msgs_per_s": daily_messages / SECONDS_PER_DAY * peak_factor}
    rows = report_rows(results, daily_messages, peak_factor, headroom) if results else []
    if baseline is not None:
        add_baseline_deltas(rows, report_rows([baseline], daily_messages, peak_factor, headroom))
    return document(REPORT_SCHEMA, runs=runs, rows=rows, baseline=None if baseline is None else str(baseline.folder),
                    sizing=sizing, caveats=_sizing_caveats(results) if daily_messages is not None else [],
                    skipped=list(skipped or []), dr=dr_rows(dr or []))
