"""A node's monotonic clock against the driver's, from round trips (NTP-style, sans-I/O).

A sample is ``(sent_ns, node_ns, received_ns)``: the driver read its clock (``sent_ns``), asked the
node for its clock (``node_ns``), and read its own clock again when the answer came
(``received_ns``). If the node read its clock at the middle of the round trip, ``offset = node_ns -
(sent_ns + received_ns) / 2``; wherever in the round trip it read it, the true offset lies within
half the round trip of that. So the estimate is taken from the sample with the smallest round trip
(the least queueing), and its uncertainty is half that round trip: a hard bound, not a deviation.

``offset_ns`` converts: ``node clock = driver clock + offset_ns``. A worker on the node that runs on
``node clock - offset_ns`` runs on the driver's clock to within ``uncertainty_ns``.

End-to-end latency is ``consumer clock at receipt - producer's intended time``. When producer and
consumer share a node, both carry the same offset error and it cancels (uncertainty 0); across
nodes the error is at most the sum of the two nodes' uncertainties (``e2e_uncertainty_ns``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from mqbench.errors import UserError


@dataclass(frozen=True)
class ClockOffset:
    offset_ns: int          # node clock minus driver clock
    uncertainty_ns: int     # |true offset - offset_ns| <= uncertainty_ns (half the minimum round trip)
    rtt_ns_min: int
    samples: int

    def as_dict(self) -> dict[str, int]:
        return {"clock_offset_ns": self.offset_ns, "clock_uncertainty_ns": self.uncertainty_ns,
                "clock_rtt_ns_min": self.rtt_ns_min, "clock_samples": self.samples}


def estimate_offset(samples: Iterable[tuple[int, int, int]]) -> ClockOffset:
    """The offset from the sample of least round trip (module doc). UserError when there is no
    sample, or a sample whose answer came before its request (not one clock on the driver's side)."""
    best: tuple[int, int, int] | None = None
    count = 0
    for sent_ns, node_ns, received_ns in samples:
        count += 1
        rtt_ns = received_ns - sent_ns
        if rtt_ns < 0:
            raise UserError(f"clock sample answered before it was sent ({sent_ns} > {received_ns})")
        if best is None or rtt_ns < best[2] - best[0]:
            best = (sent_ns, node_ns, received_ns)
    if best is None:
        raise UserError("no clock sample to estimate a node's offset from")
    sent_ns, node_ns, received_ns = best
    rtt_ns = received_ns - sent_ns
    # node_ns - (sent + received) / 2, rounded half away from the driver's side consistently
    offset_ns = node_ns - (sent_ns + received_ns) // 2
    return ClockOffset(offset_ns=offset_ns, uncertainty_ns=(rtt_ns + 1) // 2, rtt_ns_min=rtt_ns, samples=count)


def e2e_uncertainty_ns(producer_nodes: Iterable[str], consumer_nodes: Iterable[str],
                       offsets: Mapping[str, ClockOffset]) -> int:
    """The bound on the clock error of an end-to-end latency between any producer node and any
    consumer node: 0 for a pair on one node (the offsets cancel), else the sum of the two
    uncertainties; the worst pair counts. Nodes without an offset are a UserError."""
    producers, consumers = set(producer_nodes), set(consumer_nodes)
    missing = (producers | consumers) - set(offsets)
    if missing:
        raise UserError(f"no clock offset measured for node(s) {', '.join(sorted(missing))}")
    worst = 0
    for p in producers:
        for c in consumers:
            if p != c:
                worst = max(worst, offsets[p].uncertainty_ns + offsets[c].uncertainty_ns)
    return worst
