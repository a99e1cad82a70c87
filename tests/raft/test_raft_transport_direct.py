"""``RaftTransport.send`` writes at once when the connection is up and nothing is queued before the
message (one loop turn less on every Raft round trip), and keeps every message in order, sealed,
when it must queue (not connected yet, earlier messages queued, a peer that reads slowly)."""
from __future__ import annotations

import asyncio

from mqbench.broker.raft.transport import RaftTransport
from mqbench.broker.raft.types import Message, MsgType

SECRET = b"s" * 32


def test_sends_go_out_in_order_and_once_connected_without_the_writer_task():
    async def main():
        got: list[Message] = []
        t2 = RaftTransport(2, {1: ("127.0.0.1", 1)}, got.append, secret=SECRET)
        await t2.start()
        t1 = RaftTransport(1, {2: (t2.host, t2.port)}, lambda m: None, secret=SECRET)
        await t1.start()
        t2.set_peer_address(1, (t1.host, t1.port))
        try:
            for term in range(1, 6):       # before the connection exists: queued, written by the task
                t1.send(Message(MsgType.HEARTBEAT, 1, 2, term))
            while len(got) < 5:
                await asyncio.sleep(0.01)
            written = t1.direct_writes
            # connected and idle: each send is on the socket before the loop runs anything else
            for term in range(6, 56):
                t1.send(Message(MsgType.HEARTBEAT, 1, 2, term))
            assert t1.direct_writes == written + 50
            while len(got) < 55:
                await asyncio.sleep(0.01)
            assert [m.term for m in got] == list(range(1, 56))
            assert t2.peer_errors == 0 and t1.dropped == 0
        finally:
            await t1.close()
            await t2.close()

    asyncio.run(main())


def test_a_peer_that_does_not_read_gets_queued_writes_in_order():
    async def main():
        got: list[Message] = []
        t2 = RaftTransport(2, {1: ("127.0.0.1", 1)}, got.append)
        await t2.start()
        t1 = RaftTransport(1, {2: (t2.host, t2.port)}, lambda m: None)
        await t1.start()
        try:
            t1.send(Message(MsgType.HEARTBEAT, 1, 2, 1))
            while not got:
                await asyncio.sleep(0.01)
            for inbound in t2._inbound:      # the follower stops reading: its socket buffers fill
                inbound.transport.pause_reading()
            for term in range(2, 3002):
                t1.send(Message(MsgType.HEARTBEAT, 1, 2, term))
            await asyncio.sleep(0.05)
            for inbound in t2._inbound:
                inbound.transport.resume_reading()
            while len(got) < 3001:
                await asyncio.sleep(0.01)
            assert [m.term for m in got] == list(range(1, 3002))
        finally:
            await t1.close()
            await t2.close()

    asyncio.run(main())


def test_sealed_appends_to_two_followers_share_one_encoding_and_arrive_whole():
    """A leader's APPs to two followers (the same entries tuple, as ``RaftDriver`` sends them) are
    written as head, entries part and tag pieces, hashed once per entries tuple: both followers
    read the same entries, in order, with no authentication failure, queued or written at once,
    on asyncio's loop and on uvloop."""
    from mqbench.broker.raft import auth
    from mqbench.broker.raft.types import Entry

    def run(new_loop):
        async def main():
            got = {2: [], 3: []}
            followers = {n: RaftTransport(n, {1: ("127.0.0.1", 1)}, got[n].append, secret=SECRET) for n in (2, 3)}
            for t in followers.values():
                await t.start()
            leader = RaftTransport(1, {n: (t.host, t.port) for n, t in followers.items()}, lambda m: None,
                                   secret=SECRET)
            hashed = []
            real = auth.entries_digest
            # the senders' calls (an entries part as bytes; a receiver hashes a view of its read)
            auth.entries_digest = lambda part: (type(part) is bytes and hashed.append(len(part)), real(part))[1]
            try:
                sent = []
                for i in range(40):
                    entries = tuple(Entry(i * 3 + k, 1, bytes([i, k]) * (50 * k)) for k in range(i % 3))
                    sent.append(entries)
                    for n in (2, 3):
                        leader.send(Message(MsgType.APP, 1, n, 1, 1, i, entries, i))
                    if i % 10 == 0:
                        await asyncio.sleep(0.02)    # connected meanwhile: later sends go out at once
                while len(got[2]) < 40 or len(got[3]) < 40:
                    await asyncio.sleep(0.01)
                for n in (2, 3):
                    assert [m.entries for m in got[n]] == sent and followers[n].peer_errors == 0
                assert len(hashed) == sum(1 for e in sent if e)    # once per entries tuple, not per follower
                assert all(hashed)
                assert leader.direct_writes > 0
            finally:
                auth.entries_digest = real
                await leader.close()
                for t in followers.values():
                    await t.close()
        loop = new_loop()
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    run(asyncio.new_event_loop)
    try:
        import uvloop
    except ImportError:
        return
    run(uvloop.new_event_loop)
