"""Capacity-review tables from result files only (``mqbench report``).

Every row is one matrix cell of one run and carries what makes it traceable: the result folder,
the git commit (``+dirty`` when the checkout had changes) and the seed. Figures are read from
``result.json`` and nowhere else; nothing is re-measured.

Columns (all from ``cells[].aggregates`` unless said otherwise): throughput (msgs/s, MB/s), the
capacity used for sizing (``sustainable_rate_per_s`` from a ``--rate max`` search when the run did
one, otherwise the measured throughput, and the row says which), publish latency p50/p99/p99.9/max,
publish delay p99 (the open-loop schedule's lag), end-to-end p99, signed delay error p50/p99 and
early deliveries, publish errors, consume rate and the consume backlog at the end of the measured
phase (``mqbench run`` cells), disk bytes and CPU seconds per message, and ratios to the machine
limits recorded in the same result: ``disk_share_of_limit`` = disk MB/s (capacity x disk bytes per
message, or publish MB/s when the bytes on disk were not measured) / ``disk_write_fdatasync_mb_per_s``,
and ``loopback_share_of_limit`` = capacity msgs/s / ``loopback_small_frames_per_s``.

The html format adds charts drawn from the same files (``charts``): publish throughput per window
over the measured phase, and publish and end-to-end latency by percentile from the merged
histograms, one line per (result, cell).

Machines needed for a target daily volume (``--daily-messages``), stated in the table with its
inputs::

    average msgs/s   = daily_messages / 86400
    peak msgs/s      = average * peak_factor
    per instance     = capacity msgs/s / layout instances     (replicas included: they do the work too)
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
from mqbench.output import document, table

REPORT_SCHEMA = "mqbench.report/1"
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


def _capacity_source(cell: dict, sustainable: float | None) -> str:
    if sustainable is not None:
        return "max-rate search"
    search = cell.get("max_rate_search")
    if isinstance(search, dict):
        # A search that did not settle: the capacity shown is only what the search's load achieved.
        return f"unfinished search ({search.get('state')})"
    return "offered load"


def report_rows(results: list[LoadedResult], daily_messages: float | None = None, peak_factor: float = 3.0,
                headroom: float = 0.7) -> list[dict]:
    """One dict per (result, cell), in the order given, with the fields of the module docstring."""
    rows = []
    for loaded in results:
        doc = loaded.doc
        limits = doc.get("limits") or {}
        layout = doc["layout"]
        workload = doc["workload"]
        for cell in doc["cells"]:
            agg = cell["aggregates"]
            sustainable = agg.get("sustainable_rate_per_s")
            capacity = sustainable if sustainable is not None else agg["throughput_msgs_per_s"]
            disk_bytes = cell.get("disk_bytes_per_msg")
            disk_mb_per_s = capacity * disk_bytes / 1e6 if disk_bytes else agg["throughput_mb_per_s"]
            disk_limit = limits.get("disk_write_fdatasync_mb_per_s")
            frames_limit = limits.get("loopback_small_frames_per_s")
            row = {
                "result": loaded.folder.name, "commit": _short_commit(doc["git"]), "seed": doc["seed"],
                "profile": workload.get("profile") or workload.get("trace_file"), "layout": layout["name"],
                "cell": cell["name"], "created_utc": doc["created_utc"],
                "throughput_msgs_per_s": agg["throughput_msgs_per_s"], "throughput_mb_per_s": agg["throughput_mb_per_s"],
                "capacity_msgs_per_s": capacity,
                "capacity_source": _capacity_source(cell, sustainable),
                "publish_latency_ms_p50": agg.get("publish_latency_ms_p50"),
                "publish_latency_ms_p99": agg.get("publish_latency_ms_p99"),
                "publish_latency_ms_p999": agg.get("publish_latency_ms_p999"),
                "publish_latency_ms_max": agg.get("publish_latency_ms_max"),
                "publish_delay_ms_p99": agg.get("publish_delay_ms_p99"),
                "e2e_latency_ms_p99": agg.get("e2e_latency_ms_p99"),
                "delay_error_ms_p50": agg.get("delay_error_ms_p50"), "delay_error_ms_p99": agg.get("delay_error_ms_p99"),
                "early_deliveries": agg.get("early_deliveries"), "publish_errors": agg.get("publish_errors"),
                "disk_bytes_per_msg": disk_bytes, "cpu_s_per_million_msgs": cell.get("cpu_s_per_million_msgs"),
                "consume_msgs_per_s": agg.get("consume_msgs_per_s"),
                "consume_backlog_msgs_end": agg.get("consume_backlog_msgs_end"),
                "replication_bytes": cell.get("replication_bytes"),
                "disk_share_of_limit": disk_mb_per_s / disk_limit if disk_limit else None,
                "loopback_share_of_limit": capacity / frames_limit if frames_limit else None,
            }
            if daily_messages is not None:
                sizing = machines_needed(daily_messages, peak_factor, headroom, capacity, layout["instances"],
                                         layout["instances_per_host"], layout["replicas_per_group"])
                row.update({"instances_per_host": layout["instances_per_host"],
                            "per_host_msgs_per_s": sizing["per_host_msgs_per_s"],
                            "peak_msgs_per_s": sizing["peak_msgs_per_s"], "hosts_needed": sizing["hosts_needed"]})
            rows.append(row)
    return rows


# Terminal/markdown/html columns: (header, field, format). CSV and JSON carry every field.
_COLUMNS = [
    ("result", "result", None), ("commit", "commit", None), ("seed", "seed", None), ("cell", "cell", None),
    ("msgs/s", "throughput_msgs_per_s", ",.0f"), ("MB/s", "throughput_mb_per_s", ",.2f"),
    ("capacity msgs/s", "capacity_msgs_per_s", ",.0f"), ("capacity from", "capacity_source", None),
    ("pub p50 ms", "publish_latency_ms_p50", ",.2f"), ("pub p99 ms", "publish_latency_ms_p99", ",.2f"),
    ("pub p99.9 ms", "publish_latency_ms_p999", ",.2f"), ("pub max ms", "publish_latency_ms_max", ",.2f"),
    ("delay p99 ms", "publish_delay_ms_p99", ",.2f"), ("e2e p99 ms", "e2e_latency_ms_p99", ",.2f"),
    ("delay err p50 ms", "delay_error_ms_p50", ",.1f"), ("delay err p99 ms", "delay_error_ms_p99", ",.1f"),
    ("early", "early_deliveries", ",d"), ("errors", "publish_errors", ",d"),
    ("cons msgs/s", "consume_msgs_per_s", ",.0f"), ("backlog end", "consume_backlog_msgs_end", ",d"),
    ("disk B/msg", "disk_bytes_per_msg", ",.0f"), ("CPU s/M msgs", "cpu_s_per_million_msgs", ",.0f"),
    ("disk/limit", "disk_share_of_limit", ".1%"), ("msgs/loopback frames", "loopback_share_of_limit", ".1%"),
]
_SIZING_COLUMNS = [("inst/host", "instances_per_host", ",.1f"), ("per host msgs/s", "per_host_msgs_per_s", ",.0f"),
                   ("hosts needed", "hosts_needed", ",d")]


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
            f"(hosts = ceil(peak / (per-host capacity x headroom)), at least the replicas per group).")


def _run_lines(results: list[LoadedResult]) -> list[str]:
    lines = []
    for loaded in results:
        doc = loaded.doc
        machine = doc["machine"]
        limits = doc.get("limits") or {}
        limit_text = (f"disk {limits['disk_write_fdatasync_mb_per_s']:.1f} MB/s, loopback "
                      f"{limits['loopback_small_frames_per_s']:,.0f} frames/s"
                      if "disk_write_fdatasync_mb_per_s" in limits and "loopback_small_frames_per_s" in limits
                      else "limits not measured")
        layout = doc["layout"]
        lines.append(f"{loaded.folder.name}: commit {_short_commit(doc['git'])}, seed {doc['seed']}, "
                     f"{doc['created_utc']}, workload {doc['workload'].get('profile') or doc['workload'].get('trace_file')}, "
                     f"layout {layout['name']} ({layout['hosts']} hosts, {layout['instances']} instances), "
                     f"{machine.get('cpu_model', '?')} x{machine.get('cpu_cores', '?')}, {limit_text}, "
                     f"warm-up {doc['warmup_ms'] / 1000:g} s, measured {doc['duration_ms'] / 1000:g} s")
    return lines


#: (delta field, compared field): the relative change of each row against its baseline row.
DELTA_FIELDS = (("throughput_delta_share", "throughput_msgs_per_s"),
                ("capacity_delta_share", "capacity_msgs_per_s"),
                ("publish_latency_p99_delta_share", "publish_latency_ms_p99"),
                ("e2e_latency_p99_delta_share", "e2e_latency_ms_p99"),
                ("disk_bytes_per_msg_delta_share", "disk_bytes_per_msg"),
                ("cpu_per_msg_delta_share", "cpu_s_per_million_msgs"))
_DELTA_COLUMNS = [("vs base msgs/s", "throughput_delta_share", "+.1%"),
                  ("vs base capacity", "capacity_delta_share", "+.1%"),
                  ("vs base pub p99", "publish_latency_p99_delta_share", "+.1%"),
                  ("vs base CPU/msg", "cpu_per_msg_delta_share", "+.1%")]


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
           peak_factor: float = 3.0, headroom: float = 0.7, baseline: LoadedResult | None = None) -> str:
    """The report as text in ``fmt`` (terminal, markdown, csv or html); with ``baseline``, every row
    also shows its change against the baseline's row of the same cell (``add_baseline_deltas``)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not results:
        raise UserError("no result to report")
    rows = report_rows(results, daily_messages, peak_factor, headroom)
    columns = _COLUMNS + (_SIZING_COLUMNS if daily_messages is not None else [])
    if baseline is not None:
        add_baseline_deltas(rows, report_rows([baseline], daily_messages, peak_factor, headroom))
        columns = columns + _DELTA_COLUMNS
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    headers = [c[0] for c in columns]
    cells = [[_cell_text(row[field], fmt_) for _, field, fmt_ in columns] for row in rows]
    notes = _run_lines(results)
    if baseline is not None:
        notes.append(f"baseline: {baseline.folder.name} (vs base = (row - baseline row of the same cell, else its "
                     "first row) / baseline row)")
    if daily_messages is not None:
        notes.append(_sizing_note(daily_messages, peak_factor, headroom))
    if fmt == "terminal":
        return table(cells, headers) + "\n\n" + "\n".join(notes) + "\n"
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return _html(headers, cells, notes, results)


_STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
          "th,td{border:1px solid #bbb;padding:3px 6px}th{background:#eee}td.n{text-align:right}"
          "li{font-size:13px}")


def _html(headers: list[str], cells: list[list[str]], notes: list[str], results: list[LoadedResult]) -> str:
    """The table, the run notes, then charts: throughput over time and latency CDFs (``charts``)."""
    from mqbench.harness.charts import latency_cdf_chart, throughput_chart

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
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>mqbench report</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>mqbench capacity review</h1>\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table>\n<ul>\n{items}</ul>\n"
            f"<h2>Throughput over time</h2>\n{throughput_chart(results)}\n<h2>Latency by percentile</h2>\n"
            f"{latency_cdf_chart(results, 'publish_latency')}\n{latency_cdf_chart(results, 'e2e_latency')}\n"
            "</body></html>\n")


def report_document(results: list[LoadedResult], *, daily_messages: float | None = None, peak_factor: float = 3.0,
                    headroom: float = 0.7, baseline: LoadedResult | None = None) -> dict:
    """The ``--json`` document, schema ``mqbench.report/1``."""
    runs = [{"result": r.folder.name, "path": str(r.folder), "git": r.doc["git"], "seed": r.doc["seed"],
             "created_utc": r.doc["created_utc"], "machine": r.doc["machine"], "limits": r.doc.get("limits"),
             "layout": r.doc["layout"], "workload": r.doc["workload"]} for r in results]
    sizing = None
    if daily_messages is not None:
        sizing = {"daily_messages": daily_messages, "peak_factor": peak_factor, "headroom": headroom,
                  "average_msgs_per_s": daily_messages / SECONDS_PER_DAY,
                  "peak_msgs_per_s": daily_messages / SECONDS_PER_DAY * peak_factor}
    rows = report_rows(results, daily_messages, peak_factor, headroom)
    if baseline is not None:
        add_baseline_deltas(rows, report_rows([baseline], daily_messages, peak_factor, headroom))
    return document(REPORT_SCHEMA, runs=runs, rows=rows, baseline=None if baseline is None else str(baseline.folder),
                    sizing=sizing)
