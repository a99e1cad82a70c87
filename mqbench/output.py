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


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], floatfmt: str = ".1f") -> str:
    """A plain terminal table with right-aligned numbers."""
    return tabulate(list(rows), headers=list(headers), floatfmt=floatfmt, tablefmt="simple", disable_numparse=False)


def is_terminal(stream=None) -> bool:
    """Progress is shown only on a terminal and stays quiet when piped."""
    stream = stream or sys.stderr
    return hasattr(stream, "isatty") and stream.isatty()
