"""The ``mqbench.result`` document's schema check: which fields a result holds, of which types, and
``validate_result``, which raises CorruptDataError naming the first field that is missing, of the
wrong type or not a number. The fields' meanings are documented in ``mqbench/harness/results.py``,
which builds, writes and loads the documents; this module only judges them (no I/O)."""
from __future__ import annotations

import math
from typing import Any

from mqbench import __version__
from mqbench.errors import CorruptDataError
from mqbench.harness.histograms import decode_histogram
from mqbench.harness.metrics import COUNTERS, HISTOGRAMS
from mqbench.harness.verdict import VERDICTS

RESULT_SCHEMA = "mqbench.result/2"
READABLE_SCHEMAS = ("mqbench.result/1", RESULT_SCHEMA)
RESULT_FILE = "result.json"

_TOP_FIELDS: dict[str, tuple[type, ...]] = {
    "schema": (str,), "tool_version": (str,), "created_utc": (str,), "git": (dict,), "seed": (int,),
    "command_line": (list,), "machine": (dict,), "limits": (dict, type(None)), "layout": (dict,),
    "workload": (dict,), "codec": (dict,), "batch": (dict,), "payload_source": (dict,), "warmup_ms": (int,),
    "duration_ms": (int,), "window_ms": (int,), "cells": (list,),
}
_CELL_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "settings": (dict,), "aggregates": (dict,), "histograms": (dict,), "windows": (list,),
    "disk_bytes_per_msg": (int, float, type(None)), "replication_bytes": (int, type(None)),
    "cpu_s_per_million_msgs": (int, float, type(None)), "max_rate_search": (dict, type(None)),
}
_VERDICT_FIELDS: dict[str, tuple[type, ...]] = {
    "verdict": (str,), "verdict_signals": (list,), "verdict_detail": (list,),
    "offered_msgs_per_s": (int, float, type(None)), "achieved_msgs_per_s": (int, float, type(None)),
    "capacity_msgs_per_s": (int, float, type(None)), "first_unheld_rate_msgs_per_s": (int, float, type(None)),
}
_LAYOUT_FIELDS = ("name", "hosts", "groups", "replicas_per_group", "instances", "instances_per_host")
_REQUIRED_AGGREGATES = ("throughput_msgs_per_s", "throughput_mb_per_s", "publish_latency_ms_p99", "published")





def _fail(where: str, message: str):
    raise CorruptDataError(message, where=where)


def _check_fields(data: Any, fields: dict[str, tuple[type, ...]], where: str) -> None:
    if not isinstance(data, dict):
        _fail(where, f"must be a JSON object, got {type(data).__name__}")
    for name, types in fields.items():
        if name not in data:
            _fail(where, f"field {name!r} is missing")
        value = data[name]
        if isinstance(value, bool) and bool not in types:
            _fail(where, f"field {name!r} must be {' or '.join(t.__name__ for t in types)}, got a boolean")
        if not isinstance(value, types):
            _fail(where, f"field {name!r} must be {' or '.join(t.__name__ for t in types)}, got {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            _fail(where, f"field {name!r} is not a finite number")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_layout(layout: Any, where: str, label: str) -> None:
    if not isinstance(layout, dict):
        _fail(where, f"{label} must be a JSON object")
    for name in _LAYOUT_FIELDS:
        if name not in layout:
            _fail(where, f"{label} field {name!r} is missing")
    if not isinstance(layout["name"], str):
        _fail(where, f"{label}.name must be a string, got {layout['name']!r}")
    for name in ("hosts", "instances", "replicas_per_group"):
        value = layout[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            _fail(where, f"{label}.{name} must be a positive integer, got {value!r}")
    per_host = layout["instances_per_host"]
    if not _is_number(per_host) or per_host <= 0:
        _fail(where, f"{label}.instances_per_host must be a number > 0, got {per_host!r}")


#: Optional cell figures (other parts of ``mqbench run`` add them): a number or null when present.
_OPTIONAL_CELL_NUMBERS = ("disk_user_bytes_per_msg", "disk_meta_bytes_total", "disk_stamp_bytes_total",
                          "disk_batched_bytes_per_msg", "broker_cpu_us_per_msg",
                          "client_cpu_us_per_msg", "broker_cpu_machine_share", "client_cpu_machine_share",
                          "producer_cpu_us_per_msg", "consumer_cpu_us_per_msg",
                          "consumer_cpu_us_per_delivery")


def _check_optional_cell_fields(cell: dict, where: str) -> None:
    if "layout" in cell:
        _check_layout(cell["layout"], where, "layout")
    for name in _OPTIONAL_CELL_NUMBERS:
        if name in cell and cell[name] is not None and not _is_number(cell[name]):
            _fail(where, f"{name} must be a number or null, got {cell[name]!r}")
    for name in ("disk_stored_classes", "disk_predicted"):
        if cell.get(name) is not None and not isinstance(cell[name], dict):
            _fail(where, f"{name} must be an object or null, got {cell[name]!r}")
    batch = cell.get("batch_achieved")
    if batch is not None:
        if not isinstance(batch, dict) or not all(value is None or _is_number(value) for name, value in batch.items()
                                                  if name != "under_half_asked"):
            _fail(where, "batch_achieved must be an object of numbers")
        if not isinstance(batch.get("under_half_asked", False), bool):
            _fail(where, "batch_achieved.under_half_asked must be a boolean")


def validate_result(doc: Any, where: str = RESULT_FILE, *, decode: bool = True) -> None:
    """Raise CorruptDataError naming the first problem; ``decode`` also checks every histogram."""
    if not isinstance(doc, dict):
        _fail(where, f"must be a JSON object, got {type(doc).__name__}")
    schema = doc.get("schema")
    if schema not in READABLE_SCHEMAS:
        if isinstance(schema, str) and schema.startswith("mqbench.result/"):
            _fail(where, f"schema {schema!r} is not supported; this mqbench {__version__} reads "
                        f"{', '.join(READABLE_SCHEMAS)}")
        _fail(where, f"not an mqbench result (schema {schema!r}, expected {RESULT_SCHEMA!r})")
    _check_fields(doc, _TOP_FIELDS, where)
    git = doc["git"]
    if not isinstance(git.get("commit"), (str, type(None))) or not isinstance(git.get("dirty"), (bool, type(None))):
        _fail(where, "git must hold 'commit' (string or null) and 'dirty' (boolean or null)")
    _check_layout(doc["layout"], where, "layout")
    native = doc.get("native")  # optional: results written before it was recorded lack it
    if native is not None and (not isinstance(native, dict)
                               or not all(isinstance(k, str) and isinstance(v, bool) for k, v in native.items())):
        _fail(where, "native must map each accelerator module name to true or false")
    for name, value in (doc["limits"] or {}).items():
        if name.endswith(("_per_s", "_mb")) and not _is_number(value):
            _fail(where, f"limits.{name} must be a number, got {value!r}")
    if doc["duration_ms"] <= 0 or doc["window_ms"] <= 0 or doc["warmup_ms"] < 0:
        _fail(where, "duration_ms and window_ms must be > 0 and warmup_ms >= 0")
    if not doc["cells"]:
        _fail(where, "a result needs at least one cell")
    names = set()
    for position, cell in enumerate(doc["cells"]):
        cell_where = f"{where}: cells[{position}]"
        _check_fields(cell, _CELL_FIELDS, cell_where)
        _check_optional_cell_fields(cell, cell_where)
        if schema == RESULT_SCHEMA:
            _check_fields(cell, _VERDICT_FIELDS, cell_where)
            if cell["verdict"] not in VERDICTS:
                _fail(cell_where, f"verdict {cell['verdict']!r} is not one of {', '.join(VERDICTS)}")
            if not all(isinstance(text, str) for text in cell["verdict_signals"] + cell["verdict_detail"]):
                _fail(cell_where, "verdict_signals and verdict_detail must be lists of strings")
        if cell["name"] in names:
            _fail(cell_where, f"cell name {cell['name']!r} appears twice")
        names.add(cell["name"])
        for name in _REQUIRED_AGGREGATES:
            if name not in cell["aggregates"]:
                _fail(cell_where, f"aggregate {name!r} is missing")
        for name, value in cell["aggregates"].items():
            # Every aggregate is a count, a rate, a share or a latency: a number, or null when empty.
            if value is not None and not _is_number(value):
                _fail(cell_where, f"aggregate {name!r} must be a number or null, got {value!r}")
        for name, value in cell["aggregates"].items():
            if (name in COUNTERS or name.endswith("_count") or name.startswith("events_")) and value is not None \
                    and not isinstance(value, int):
                _fail(cell_where, f"aggregate {name!r} is a count and must be an integer, got {value!r}")
        for name in ("throughput_msgs_per_s", "throughput_mb_per_s", "published"):
            if cell["aggregates"][name] is None or cell["aggregates"][name] < 0:
                _fail(cell_where, f"aggregate {name!r} must be a number >= 0")
        if cell["disk_bytes_per_msg"] is not None and cell["disk_bytes_per_msg"] < 0:
            _fail(cell_where, "disk_bytes_per_msg must be >= 0")
        for name in HISTOGRAMS:
            if name not in cell["histograms"]:
                _fail(cell_where, f"histogram {name!r} is missing")
            if decode:
                decode_histogram(cell["histograms"][name], f"{cell_where}: histogram {name}")
        for index, window in enumerate(cell["windows"]):
            if not isinstance(window, dict) or "window_index" not in window or "throughput_msgs_per_s" not in window:
                _fail(cell_where, f"windows[{index}] must be an object with window_index and throughput_msgs_per_s")
            for name, value in window.items():   # like the aggregates: numbers, or null when empty
                required = name in ("window_index", "window_start_ms", "duration_ms", "throughput_msgs_per_s")
                if not _is_number(value) and (required or value is not None):
                    _fail(cell_where, f"windows[{index}].{name} must be a number{'' if required else ' or null'}, "
                                      f"got {value!r}")
