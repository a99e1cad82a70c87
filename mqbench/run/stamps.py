"""Timing properties a producer driver puts on every message, read back by the consumer driver.

=================  ==========================================================================
property           value (decimal text)
=================  ==========================================================================
``mqbRun``         the run id: a consumer ignores messages of other runs (an existing cluster
                   given with ``--target`` may hold older traffic on the same topics)
``mqbIntendedNs``  the intended send time on the run's monotonic clock (CLOCK_MONOTONIC is one
                   clock for every process of the machine, so workers and parent agree)
``mqbDeliverNs``   delayed messages only: the requested delivery time, actual send time plus the
                   delay, on the same clock
=================  ==========================================================================

End-to-end latency is measured from the *intended* send time, so when the sender falls behind the
schedule (a slow broker, a full in-flight window) the lag is part of the latency users would see,
not hidden (no coordinated omission). The three properties add about 70 bytes to each stored
message; ``disk_bytes_per_msg`` includes them.
"""
from __future__ import annotations

from typing import Iterable

PROPERTY_RUN = "mqbRun"
PROPERTY_INTENDED_NS = "mqbIntendedNs"
PROPERTY_DELIVER_NS = "mqbDeliverNs"


def stamp(properties: dict[str, str], run_id: str, intended_ns: int, deliver_ns: int | None) -> dict[str, str]:
    """``properties`` plus the timing properties (a new dict)."""
    out = dict(properties)
    out[PROPERTY_RUN] = run_id
    out[PROPERTY_INTENDED_NS] = str(intended_ns)
    if deliver_ns is not None:
        out[PROPERTY_DELIVER_NS] = str(deliver_ns)
    return out


def read_stamp(properties: dict[str, str], run_id: str) -> tuple[int, int | None] | None:
    """``(intended_ns, deliver_ns or None)`` of a message of this run; None for anything else
    (another run's message, or properties that do not parse)."""
    return read_stamps((properties,), run_id)[0]


def read_stamps(properties: Iterable[dict[str, str]], run_id: str) -> list[tuple[int, int | None] | None]:
    """``read_stamp`` of each of ``properties`` (a received batch's), in one call."""
    out: list[tuple[int, int | None] | None] = []
    append = out.append
    for props in properties:
        if props.get(PROPERTY_RUN) != run_id:
            append(None)
            continue
        try:
            deliver = props.get(PROPERTY_DELIVER_NS)
            append((int(props[PROPERTY_INTENDED_NS]), None if deliver is None else int(deliver)))
        except (KeyError, ValueError):
            append(None)
    return out
