"""The DR section of ``mqbench report``: the drills of ``mqbench dr`` results as a table of their own.

A folder such as ``results/`` holds both kinds of result; ``mqbench report`` renders the run
results' capacity table and, under it, one DR table with a row per drill (the columns, their
headers and legends are ``mqbench.dr.report.COLUMNS``: scheme, fault, target, whether RPO 0 was
promised, acknowledged, lost (RPO), duplicates, detection, election, readiness, client recovery,
RTO, write latency, instances, cross-room bytes), in the same format (terminal, markdown, html),
the DR results' provenance under it (folder, commit, seed, time, machine, rate) and the legend.
When the DR results come from more than one folder the first column names the folder.
"""
from __future__ import annotations

from mqbench.dr.report import COLUMNS, _cell
from mqbench.harness.report import LoadedResult, _short_commit, html_block, html_page, text_block

TITLE = "DR drills"
RESULT_HEADER = ("DR result", "the DR result folder the drill comes from")


def dr_rows(results: list[LoadedResult]) -> list[dict]:
    """Every drill of every DR result, with ``result`` (its folder name) first."""
    return [{"result": loaded.folder.name, **drill} for loaded in results for drill in loaded.doc["drills"]]


def _text(value) -> str:
    value = _cell(value)
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,d}"
    return str(value)


def _notes(results: list[LoadedResult]) -> list[str]:
    lines = []
    for loaded in results:
        doc = loaded.doc
        machine = doc.get("machine") or {}
        settings = doc.get("settings") or {}
        lines.append(f"{loaded.folder.name}: commit {_short_commit(doc.get('git') or {})}, seed {doc.get('seed')}, "
                     f"{doc.get('created_utc', '?')}; machine {machine.get('cpu_model', '?')} "
                     f"x{machine.get('cpu_cores', '?')}"
                     + (f"; rate {settings['rate']} msgs/s" if "rate" in settings else ""))
    return lines


def dr_section(results: list[LoadedResult], fmt: str, standalone: bool = False) -> str:
    """The DR table, its notes and legend in ``fmt`` (terminal, markdown or html); ``standalone``:
    the whole output (an html page of its own) rather than a section under the run table."""
    several = len(results) > 1
    columns = ([RESULT_HEADER + ("result",)] if several else []) + [(h, legend, k) for h, k, legend in COLUMNS]
    headers = [c[0] for c in columns]
    cells = [[_text(row.get(c[2])) for c in columns] for row in dr_rows(results)]
    key = [f"{header}: {legend}" for header, legend, _k in columns]
    notes = _notes(results)
    if fmt == "html":
        body = f"<h2>{TITLE}</h2>\n" + html_block(headers, cells, notes, key)
        return html_page(body) if standalone else body
    heading = f"{TITLE}\n\n" if fmt == "terminal" else f"## {TITLE}\n\n"
    return ("" if standalone else "\n") + heading + text_block(fmt, headers, cells, notes, key)
