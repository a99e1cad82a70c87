"""Compiled accelerators: which are built, which are in use, and the switch that turns them off.

A few per-record loops (the migrate scan, the broker's record and batch handling) run in C modules
built when mqbench is installed (listed in ``MODULES`` below; a C compiler and the Python
headers are needed, as for any package that compiles). Each C module sits beside the pure-Python
module it speeds up, and that Python module stays the reference: the C function must return what
the Python one returns for every input, and the tests compare the two on the same inputs
(``tests/native/``), so ``MQBENCH_NATIVE=0`` gives the same bytes and verdicts, only slower.

``MQBENCH_NATIVE`` (read once per process, at the first ``load``):

- unset or ``1``: use each accelerator that was built, the Python code for the others;
- ``0``: use none (for A/B runs and to test the Python path);
- ``require``: like ``1``, but a missing accelerator is an error (``NativeMissing``), which CI sets
  so that a failed build fails the run instead of quietly testing only the Python path.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

ENV = "MQBENCH_NATIVE"

# Every accelerator: full module name -> its C sources (paths from the repository root; a module
# split by concern lists each of its sources, the one with PyInit first), compiled into that one
# extension. setup.py reads this literal (without importing mqbench) to build them, and load()'s
# stale-build check compares every source listed (and the headers beside each) with the build;
# keep it a plain literal.
MODULES: dict[str, list[str]] = {
    "mqbench.broker.formats._batch": ["broker/formats/_batch.c"],
    "mqbench.broker.formats._dledger": ["broker/formats/_dledger.c"],
    "mqbench.broker.formats._record_check": ["broker/formats/_record_check.c"],
    "mqbench.broker.formats._sendpath": ["broker/formats/_sendpath.c", "broker/formats/_sendpath_frames.c",
                                         "broker/formats/_sendpath_header.c", "broker/formats/_sendpath_answer.c",
                                         "broker/formats/_sendpath_record.c", "broker/formats/_sendpath_send.c"],
    "mqbench.broker.raft._wire": ["broker/raft/_wire.c"],
    "mqbench.broker.store._index_files": ["broker/store/_index_files.c"],
    "mqbench.broker.store._reader": ["broker/store/_reader.c"],
    "mqbench.migrate._build": ["migrate/_build.c"],
    "mqbench.migrate._scan": ["migrate/_scan.c"],
}

_loaded: dict[str, bool] = {}

# The repository root of an editable install (where MODULES' source paths lead); in an installed
# wheel these paths do not exist and no staleness check applies.
ROOT = Path(__file__).resolve().parent.parent


class NativeMissing(ImportError):
    """``MQBENCH_NATIVE=require`` and an accelerator is not importable (not built, or built for
    another Python)."""


def mode() -> str:
    """``on``, ``off`` or ``require``, from ``MQBENCH_NATIVE`` (anything unknown counts as ``on``)."""
    value = os.environ.get(ENV, "1").strip().lower()
    if value in ("0", "off", "no", "false"):
        return "off"
    if value == "require":
        return "require"
    return "on"


def load(name: str) -> ModuleType | None:
    """The compiled module ``name`` (a full dotted name, e.g. ``mqbench.migrate._scan``), or None
    when accelerators are off, it is not importable, or it is stale (built before its C sources
    last changed: a checkout updated without ``pip install -e .`` again, whose old build would
    not match the Python code calling it). With ``MQBENCH_NATIVE=require`` a module that is not
    importable or stale raises ``NativeMissing`` naming it; otherwise a stale one is skipped with
    one warning on stderr. Every call is recorded for ``status``."""
    current = mode()
    if current == "off":
        _loaded[name] = False
        return None
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        _loaded[name] = False
        if current == "require":
            raise NativeMissing(f"{name} is not built ({exc}); reinstall mqbench with a C compiler "
                                f"and the Python headers, or unset {ENV}") from exc
        return None
    newer = stale_source(getattr(module, "__file__", None), MODULES.get(name, []))
    if newer is not None:
        _loaded[name] = False
        message = (f"{name} was built before {newer} last changed; run `pip install -e .` again to "
                   f"rebuild it")
        if current == "require":
            raise NativeMissing(message)
        print(f"mqbench: warning: {message}; using the Python code meanwhile", file=sys.stderr)
        return None
    _loaded[name] = True
    return module


def stale_source(built: str | None, sources: list[str], root: Path = ROOT) -> str | None:
    """The first of ``sources`` (paths from ``root``), or of the shared headers beside them,
    changed after the file ``built`` was written; None when the build is current or when the
    sources are not there to compare (an installed wheel carries no C sources)."""
    if built is None:
        return None
    try:
        built_ns = os.stat(built).st_mtime_ns
    except OSError:
        return None
    candidates: list[Path] = []
    for source in sources:
        path = root / source
        candidates.append(path)
        candidates.extend(sorted(path.parent.glob("*.h")))
    candidates.extend(sorted((root / "broker" / "formats").glob("*.h")))
    for path in candidates:
        try:
            if path.stat().st_mtime_ns > built_ns:
                return str(path.relative_to(root))
        except OSError:
            continue
    return None


def status() -> dict[str, bool]:
    """Each accelerator this process asked for so far, and whether it is in use."""
    return dict(_loaded)


def report() -> dict[str, bool]:
    """Every accelerator in ``MODULES`` and whether a process started with this environment uses
    it (``load`` of each, without raising under ``require``). Result records and benchmark JSON
    carry this as ``native``, so a figure says which code measured it."""
    out: dict[str, bool] = {}
    for name in MODULES:
        try:
            out[name] = load(name) is not None
        except NativeMissing:
            out[name] = False
    return out
