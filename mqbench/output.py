"""Rendering results: terminal tables and versioned JSON documents.

Every JSON document mqbench prints carries ``schema`` (name and version, e.g.
``mqbench.codecs-bench/1``) and ``tool_version``. Field names end in their unit
(``compress_mb_per_s``, ``publish_latency_ms_p99``); a breaking change bumps the schema version.
"""
from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

from tabulate import tabulate

from mqbench import __version__


def document(schema: str, **fields: Any) -> dict[str, Any]:
    """A JSON document with the schema name/version and the tool version first."""
    return {"schema": schema, "tool_version": __version__, **fields}


def print_json(doc: dict[str, Any]) -> None:
    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], floatfmt: str = ",.1f") -> str:
    """A plain terminal table: floats formatted with ``floatfmt``, other values shown as given.

    Columns whose every cell reads as a number are right-aligned, the others left-aligned.
    """
    cells = [[f"{v:{floatfmt}}" if isinstance(v, float) else ("" if v is None else str(v)) for v in row]
             for row in rows]
    align = []
    for column in range(len(headers)):
        values = [row[column] for row in cells if column < len(row) and row[column] not in ("", "-")]
        numeric = bool(values) and all(_looks_numeric(v) for v in values)
        align.append("right" if numeric else "left")
    return tabulate(cells, headers=list(headers), tablefmt="simple", disable_numparse=True, colalign=align)


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%x"))
    except ValueError:
        return False
    return True


def is_terminal(stream=None) -> bool:
    """Progress is shown only on a terminal and stays quiet when piped."""
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()
