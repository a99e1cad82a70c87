"""``mqbench report``: capacity-review tables from result files only (see ``mqbench.harness.report``)."""
from __future__ import annotations

import re

import click

from mqbench.cli.options import json_option
from mqbench.errors import UserError

_COUNT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([kmgt]?)\s*$", re.IGNORECASE)
_COUNT_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}


class MessageCount(click.ParamType):
    """A positive message count: ``100000000000``, ``100e9``, ``100G`` (k, M, G, T are powers of 1000)."""

    name = "count"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            number = float(value)
        else:
            match = _COUNT_RE.match(str(value).replace("_", "").replace(",", ""))
            if not match:
                self.fail(f"{value!r} is not a message count (examples: 100000000000, 100e9, 100G)", param, ctx)
            number = float(match.group(1)) * _COUNT_SCALE[match.group(2).lower()]
        if number <= 0:
            self.fail(f"{value!r} must be more than 0", param, ctx)
        return number


@click.command()
@click.argument("results", nargs=-1, required=True, metavar="RESULT...")
@click.option("--format", "fmt", type=click.Choice(["terminal", "table", "markdown", "csv", "html"]), default="terminal",
              show_default=True, help="Table format (table is terminal); html is one self-contained file with "
                                      "throughput-over-time and latency charts.")
@click.option("--baseline", type=click.Path(exists=True), default=None, metavar="RESULT",
              help="A result folder (or result.json) to compare against: every row gets its change from the "
                   "baseline's row of the same cell.")
@click.option("--daily-messages", "--daily-volume", "daily_messages", type=MessageCount(), default=None,
              help="Target daily volume (e.g. 100G for 100 billion): adds machines needed per row.")
@click.option("--peak-factor", type=click.FloatRange(min=1.0), default=3.0, show_default=True,
              help="Peak rate over the day's average rate, for sizing.")
@click.option("--headroom", type=click.FloatRange(min=0.0, max=1.0, min_open=True), default=0.7, show_default=True,
              help="Share of a host's measured capacity to plan on, for sizing.")
@click.option("--wide", is_flag=True, help="Every column, not only the default review table.")
@json_option
def report(results: tuple[str, ...], fmt: str, baseline: str | None, daily_messages: float | None,
           peak_factor: float, headroom: float, wide: bool, as_json: bool) -> None:
    """Compare runs side by side from their result folders (or result.json files).

    A folder holding result folders (such as results/) stands for all of them; `mqbench dr`
    results among them (or named) get a DR table of their own under the run table: scheme,
    fault, target, RPO 0 promised, acked, lost (RPO), duplicates, detection/election/readiness/
    client recovery and RTO ms, write latency, instances, cross-room bytes (CSV: run rows only).

    Default columns: profile, layout, cell, offered and achieved msgs/s, verdict (held, saturated
    with its signal, failed), pub p50/p99, e2e p99, achieved batch, broker CPU µs/msg, user disk
    B/msg; --wide adds every other figure. A legend under the table defines each column shown.
    Every row names its run (folder, git commit and seed are listed under the table); ratios are
    to the machine limits recorded in the same result. --daily-messages sizes only rows that held
    (a --rate max capacity or a held fixed rate), with a caveat for the embedded reference broker.
    """
    from mqbench.harness.report import LoadedResult, render, report_document
    from mqbench.harness.results import expand_result_paths, load_dr_result, load_result, split_run_results
    from mqbench.output import print_json

    paths, dr_paths, skipped = split_run_results(expand_result_paths(results))
    if not paths and not dr_paths:
        raise UserError("no `mqbench run` or `mqbench dr` result to report: " + "; ".join(skipped))
    loaded = [LoadedResult(*load_result(path)) for path in paths]
    drills = [LoadedResult(*load_dr_result(path)) for path in dr_paths]
    if not loaded and (baseline is not None or daily_messages is not None):
        raise UserError("--baseline and --daily-messages need `mqbench run` results; only DR results were given")
    base = None
    if baseline is not None:
        base_paths = expand_result_paths((baseline,))
        if len(base_paths) != 1:
            raise UserError(f"--baseline {baseline} holds {len(base_paths)} results; name one result folder")
        base = LoadedResult(*load_result(base_paths[0]))
    options = dict(daily_messages=daily_messages, peak_factor=peak_factor, headroom=headroom, baseline=base,
                   skipped=skipped, dr=drills)
    if as_json:
        print_json(report_document(loaded, **options))
        return
    click.echo(render(loaded, "terminal" if fmt == "table" else fmt, wide=wide, **options), nl=False)
