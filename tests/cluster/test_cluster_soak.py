"""The failover soak: messages through a 3-replica group while its leader is SIGKILLed and restarted.

What must hold (``mqbench.cluster.drills.soak``): every acknowledged message is consumed (none
lost), every number is consumed at least once, nothing unknown arrives, and the committed consumer
offsets read from the leader between kills never go backwards. The default run is a bounded slice
(10,000 messages, 2 kills); the full soak (100,000 messages, a kill every few seconds) is ``slow``.
"""
from __future__ import annotations

import asyncio

import pytest

from mqbench.cluster.drills import _body, _seq_of, soak

OFFSET_SLICE = 4210
OFFSET_FULL = 4220


def test_soak_bodies_round_trip_and_reject_strangers():
    body = _body("ab12cd34", 4321, 100)
    assert len(body) == 100 and _seq_of("ab12cd34", body) == 4321
    assert _seq_of("ab12cd34", _body("ab12cd34", 7, 0)) == 7  # shorter than the header: header only
    assert _seq_of("other", body) is None
    assert _seq_of("ab12cd34", b"soak ab12cd34 12x4 ") is None
    assert _seq_of("ab12cd34", b"") is None


def check(result, messages: int, kills: int) -> None:
    assert len(result.kills) == kills, result.kills
    assert result.acked == messages
    assert result.lost == [], f"{len(result.lost)} acknowledged messages never consumed: {result.lost[:20]}"
    assert result.consumed == messages
    assert result.unexpected == []
    assert result.offset_readings >= 2 * kills
    assert result.offset_rewinds == [], result.offset_rewinds
    assert result.final_lag == 0
    assert len({k.instance for k in result.kills}) >= 1
    for event in result.kills:
        assert event.failover_ms is not None, f"no send acknowledged after killing {event.instance}"


@pytest.mark.realproc
def test_soak_slice_raft3_two_leader_kills(cluster_factory):
    state = cluster_factory("raft3", OFFSET_SLICE)
    result = asyncio.run(soak(state, "broker-a", messages=10_000, kills=2, batch=8, senders=8,
                              drain_timeout_s=60, heal_timeout_s=30, produce_timeout_s=50))
    check(result, 10_000, 2)
    print(f"soak slice: {result.duration_s:.1f} s, {result.send_failures} failed sends re-sent, "
          f"{result.duplicates} duplicates, failovers {[round(k.failover_ms) for k in result.kills]} ms")


@pytest.mark.realproc
@pytest.mark.slow
def test_soak_full_raft3_100k_with_a_kill_every_few_seconds(cluster_factory):
    state = cluster_factory("raft3", OFFSET_FULL)
    result = asyncio.run(soak(state, "broker-a", messages=100_000, kills=12, batch=1, senders=32,
                              drain_timeout_s=180, heal_timeout_s=60, produce_timeout_s=1200))
    check(result, 100_000, 12)
    print(f"full soak: {result.duration_s:.1f} s, {result.send_failures} failed sends re-sent, "
          f"{result.duplicates} duplicates, failovers {[round(k.failover_ms) for k in result.kills]} ms")
