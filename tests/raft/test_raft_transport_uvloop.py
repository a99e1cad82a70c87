"""The Raft transport on uvloop (``MQBENCH_EVENT_LOOP=uvloop``): the writer to a peer that died
must survive and reach the restarted peer.

After a peer dies, uvloop fails a write inside the transport (EPIPE/ECONNRESET), closes it, and
the next ``write`` raises RuntimeError ("the handler is closed") where asyncio's loop drops the
write and lets ``drain()`` raise ConnectionResetError. The writer task caught only OSError, so it
died, and the restarted replica never heard from that node again: it stayed a candidate (the
failover benchmark on uvloop: 1 run in 3, seen here with the writer's exception logged)."""
from __future__ import annotations

import asyncio

import pytest

from mqbench.broker.raft.transport import RaftTransport
from mqbench.broker.raft.types import Message, MsgType

uvloop = pytest.importorskip("uvloop")


def test_writer_survives_a_dead_peer_and_reaches_the_restarted_one():
    async def main():
        accepted = []

        async def dies(reader, writer):
            accepted.append(writer)
            await reader.read(100)
            writer.close()                       # the peer's process is gone: FIN, then RST for more data

        dead = await asyncio.start_server(dies, "127.0.0.1", 0)
        port = dead.sockets[0].getsockname()[1]
        t1 = RaftTransport(1, {2: ("127.0.0.1", port)}, lambda m: None, connect_timeout_ms=500, backoff_max_ms=50)
        await t1.start()
        got: list[Message] = []
        t2 = None
        try:
            t1.send(Message(MsgType.HEARTBEAT, 1, 2, 1))
            while not accepted:
                await asyncio.sleep(0.01)
            dead.close()
            await dead.wait_closed()
            for _ in range(25):                  # heartbeats into the dead connection
                t1.send(Message(MsgType.HEARTBEAT, 1, 2, 1))
                await asyncio.sleep(0.02)
            t2 = RaftTransport(2, {1: (t1.host, t1.port)}, got.append, port=port)   # the restarted replica
            await t2.start()
            for _ in range(150):
                t1.send(Message(MsgType.HEARTBEAT, 1, 2, 2))
                await asyncio.sleep(0.02)
                if got:
                    break
            assert got, "the writer to the restarted peer died: it never got a message"
        finally:
            await t1.close()
            if t2 is not None:
                await t2.close()

    uvloop.install()
    try:
        asyncio.run(main())
    finally:
        asyncio.set_event_loop_policy(None)
