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
    if properties.get(PROPERTY_RUN) != run_id:
        return None
    try:
        intended_ns = int(properties[PROPERTY_INTENDED_NS])
        deliver = properties.get(PROPERTY_DELIVER_NS)
        deliver_ns = None if deliver is None else int(deliver)
    except (KeyError, ValueError):
        return None
    return intended_ns, deliver_ns
