"""One entry point for whatever names a workload: a built-in profile, a profile file, or a trace.

``open_workload(source, seed, count=None, duration_ms=None, shape_start_ms=0)`` returns a
``Workload``: the ``Profile`` (for a trace, the one recorded in its metadata when it was generated;
None for imported or recorded traces), the ``TraceInfo`` (traces only), and ``messages``: a lazy
iterator of ``TraceMessage`` in send order, cut at ``count`` messages and at ``duration_ms`` of
send offsets. ``seed`` and ``shape_start_ms`` only matter for profiles (a trace is already fixed).
This is what a replayer calls; it paces each message by ``send_offset_us``, or, with
``timed=False`` (profiles only, see ``generate_messages``), at its own rate.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mqbench.errors import UserError
from mqbench.workloads.generator import generate_messages
from mqbench.workloads.message import TraceMessage
from mqbench.workloads.profile import Profile, load_profile, parse_profile
from mqbench.workloads.trace import TraceInfo, iter_trace_rows, read_trace_info


@dataclass
class Workload:
    name: str
    profile: Profile | None
    trace: TraceInfo | None
    messages: Iterator[TraceMessage]

    @property
    def payload_source(self) -> str:
        """How results name where the payloads came from."""
        if self.trace is not None:
            return f"trace:{Path(self.trace.path).name}:{self.trace.source}"
        return f"profile:{self.name}"


def is_trace_path(path: Path) -> bool:
    """A ``.parquet`` name, or any existing non-TOML file that starts with Parquet's magic."""
    if path.suffix == ".parquet":
        return True
    if path.suffix == ".toml" or not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(4) == b"PAR1"


def open_workload(source: str | Path, seed: int, count: int | None = None, duration_ms: int | None = None,
                  shape_start_ms: int = 0, part: tuple[int, int] = (0, 1), timed: bool = True) -> Workload:
    path = Path(source)
    if is_trace_path(path):
        info = read_trace_info(path)
        profile = None
        if info.profile_document:
            try:
                profile = parse_profile(info.profile_document, source=f"{path} (recorded profile)")
            except UserError:
                profile = None  # a profile this version no longer accepts; the rows still replay
        messages: Iterator[TraceMessage] = iter_trace_rows(path)
        if duration_ms is not None:
            messages = itertools.takewhile(lambda m: m.send_offset_us < duration_ms * 1000, messages)
        if count is not None:
            messages = itertools.islice(messages, count)
        return Workload(name=path.name, profile=profile, trace=info, messages=messages)
    profile = load_profile(source)
    return Workload(name=profile.name, profile=profile, trace=None,
                    messages=generate_messages(profile, seed, count=count, duration_ms=duration_ms,
                                               shape_start_ms=shape_start_ms, part=part, timed=timed))
