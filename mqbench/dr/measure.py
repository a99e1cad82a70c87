"""What a DR drill measures, computed from what it observed. Pure code: no clocks, no sockets.

RTO is split into four consecutive phases, each measured from the end of the previous one (all
times in ms since the fault was injected):

==========================  ============================================================================
phase                       ends when
==========================  ============================================================================
``detection_ms``            a surviving replica noticed the leader is gone (it stood as candidate, its
                            term moved past the leader's, or it names another or no leader); for
                            scheme C's room loss, when the drill's health check gave up on the room
``election_ms``             a surviving replica is leader in a newer term (0 for scheme C: the standby
                            cluster's leader is already there)
``leader_readiness_ms``     the name server routes writes to the new leader (it registered, so clients
                            can find it); for scheme C, when clients were switched to the standby
``client_recovery_ms``      the first acknowledgement of a send the workload issued after the fault
==========================  ============================================================================

``rto_ms`` is the time from the fault to that acknowledgement. A fault that needs no failover (a follower
killed) has no detection, election or readiness (None) and its RTO is the gap writes saw, if any. A
phase that was never reached within the drill is None, and so is the RTO when writes never came back
(scheme B without its majority room).

RPO is the number of acknowledged messages missing from what the cluster serves after the drill.
Duplicates are deliveries to the drill's consumer group beyond the first, per message.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass
class FailoverTimes:
    """Observation times (ms since the fault); None when not observed."""

    detected_ms: int | None = None
    elected_ms: int | None = None
    ready_ms: int | None = None
    first_ack_ms: int | None = None


def rto_split(times: FailoverTimes) -> dict[str, int | None]:
    """The four RTO phases and their total (see the module docstring).

    The drill observes detection, election and readiness by polling (every 50 ms), so it may see
    them after a later event already proved them: an acknowledged write through the new leader
    means it was routed by then, a routed leader was elected by then. Each observation is therefore
    capped by the next one, and the phases add up to ``rto_ms`` whenever writes came back."""
    observed = [times.detected_ms, times.elected_ms, times.ready_ms, times.first_ack_ms]
    bound = None
    for index in range(len(observed) - 1, -1, -1):
        if observed[index] is None:
            continue
        if bound is not None:
            observed[index] = min(observed[index], bound)
        bound = observed[index]
    detected, elected, ready, first_ack = observed
    out: dict[str, int | None] = {"detection_ms": None, "election_ms": None, "leader_readiness_ms": None,
                                  "client_recovery_ms": None, "rto_ms": first_ack}
    previous = 0
    for name, at in (("detection_ms", detected), ("election_ms", elected), ("leader_readiness_ms", ready)):
        if at is None:
            continue
        out[name] = at - previous
        previous = at
    if first_ack is not None:
        out["client_recovery_ms"] = first_ack - previous
    return out


def lost_messages(acked: set[int], present: set[int]) -> list[int]:
    """Acknowledged sequence numbers the cluster no longer serves (RPO as a list)."""
    return sorted(acked - present)


def duplicate_deliveries(delivered: list[int]) -> int:
    """Deliveries beyond the first of each message."""
    return sum(n - 1 for n in Counter(delivered).values() if n > 1)


def percentile_ms(values: list[float], percentile: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * percentile // 100))
    return ordered[min(len(ordered), int(rank)) - 1]

