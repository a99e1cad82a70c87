"""Finding 1 against real replicas (one event loop, real sockets and stores): a frame forged as the
leader's is refused on an authenticated Raft port; on a plain one, the follower that took it stops
as an invariant violation when the real entry of that index arrives, instead of dropping it."""
from __future__ import annotations

import asyncio

from mqbench.broker.raft import auth
from mqbench.broker.raft.types import Entry, Message as RaftMessage, MsgType
from mqbench.broker.raft.wire import encode_frame
from mqbench.broker.formats.record import Message
from mqbench.errors import InvariantViolation

from replicated_cluster import Cluster, log_bytes

SECRET = bytes(range(32))


def run(coro, timeout_s: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def forged_append(leader, follower_id: int) -> RaftMessage:
    """What the attack sent: src = the leader's id, an entry right after the commit index in the
    leader's term, and a commit index that covers it."""
    index = leader.commit_index
    record = leader.store.replicated.prepare_record(Message(topic="T", body=b"forged"))
    return RaftMessage(MsgType.APP, leader.self_id, follower_id, leader.term, leader.node.log.term(index), index,
                       (Entry(index + 1, leader.term, record),), index + 1)


def test_a_forged_append_is_refused_by_an_authenticated_follower(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, raft_secret=SECRET).start()
        try:
            leader = await cluster.leader()
            for n in range(5):
                await leader.put(Message(topic="T", body=b"m%d" % n))
            await cluster.converged()
            follower = next(g for g in cluster.groups.values() if not g.is_leader)
            before = follower.node.log.last_index()
            host, port = follower.raft_address
            reader, writer = await asyncio.open_connection(host, port)
            await asyncio.wait_for(reader.readexactly(auth.CHALLENGE_BYTES), 5)
            writer.write(encode_frame(forged_append(leader, follower.self_id)))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""          # connection closed
            writer.close()
            assert follower.transport.peer_errors == 1
            assert follower.node.log.last_index() == before and follower.failed is None
            acked = await leader.put(Message(topic="T", body=b"real"))
            await cluster.converged()
            assert follower.store.read_message(acked.physical_offset, 300).body == b"real"
            logs = [log_bytes(g) for g in cluster.groups.values()]
            assert logs[0] == logs[1] == logs[2]
        finally:
            await cluster.close()
    run(main())


def test_a_follower_holding_a_forged_entry_stops_when_the_real_one_arrives(tmp_path):
    """Without a secret (what the finding measured): the forged entry is taken, and committed; the
    real entry of the same index and term used to be skipped as already present. Now the follower
    compares the entries and stops; the leader and the third replica go on."""
    async def main():
        cluster = await Cluster(tmp_path, 3).start()
        try:
            leader = await cluster.leader()
            for n in range(5):
                await leader.put(Message(topic="T", body=b"m%d" % n))
            await cluster.converged()
            follower = next(g for g in cluster.groups.values() if not g.is_leader)
            host, port = follower.raft_address
            _, writer = await asyncio.open_connection(host, port)
            writer.write(encode_frame(forged_append(leader, follower.self_id)))
            await writer.drain()
            index = leader.commit_index + 1
            while follower.node.log.last_index() < index:
                await asyncio.sleep(0.01)
            writer.close()
            acked = await leader.put(Message(topic="T", body=b"real"))
            while follower.failed is None:
                await asyncio.sleep(0.01)
            assert isinstance(follower.failed, InvariantViolation)
            assert f"entry {index} " in str(follower.failed)
            other = next(g for g in cluster.groups.values() if g is not leader and g is not follower)
            assert other.failed is None
            await other.wait_leader(5)
            while other.applied_index < acked.index:
                await asyncio.sleep(0.01)
            assert other.store.read_message(acked.physical_offset, 300).body == b"real"
        finally:
            await cluster.close()
    run(main())
