"""ReplicatedGroup: three replicas (and one) in one event loop on loopback, real files and sockets."""
from __future__ import annotations

import asyncio

import pytest

from mqbench.errors import UserError
from mqbench.broker.server.replicated import LeadershipLost, NotLeader, ReplicatedGroup
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.configs import TopicConfig
from mqbench.broker.formats.record import Message

from replicated_cluster import Cluster, log_bytes


def run(coro, timeout_s: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def queue_view(group, topic, queue_id):
    result = group.store.read_queue(topic, queue_id, 0, max_messages=10_000, max_bytes=64 << 20)
    return [(m.queue_offset, m.body) for m in result.messages]


@pytest.mark.parametrize("durability", ["memory", "fsync"])
def test_puts_commit_on_all_replicas_with_identical_offsets_and_bytes(tmp_path, durability):
    async def main():
        cluster = await Cluster(tmp_path, 3, durability).start()
        try:
            leader = await cluster.leader()
            await leader.ensure_topic("B", queues=2, attributes={"queue.type": "BatchCQ"})
            results = await asyncio.gather(*(leader.put(Message(topic="T", body=b"m%d" % n, queue_id=n % 3))
                                             for n in range(60)))
            per_queue = {q: sorted(r.queue_offset for r in results if r.queue_id == q) for q in range(3)}
            assert per_queue == {q: list(range(20)) for q in range(3)}
            assert len({r.physical_offset for r in results}) == 60
            batch = await leader.put_batch("T", 0, [BatchItem(b"b%d" % n) for n in range(5)], consolidate=False)
            assert (batch.queue_offset, batch.count, len(batch.msg_ids)) == (20, 5, 5)
            stored = leader.store.read_queue("T", 0, 20, max_messages=5).messages
            assert [int(i[-16:], 16) for i in batch.msg_ids] == [m.physical_offset for m in stored]
            assert batch.physical_offset == stored[0].physical_offset and batch.msg_id == ",".join(batch.msg_ids)
            inner = await leader.put_batch("B", 1, [BatchItem(b"i%d" % n) for n in range(4)], consolidate=True)
            inner2 = await leader.put_batch("B", 1, [BatchItem(b"j%d" % n) for n in range(3)], consolidate=True)
            assert (inner.queue_offset, inner.count, inner2.queue_offset) == (0, 4, 4)
            await cluster.converged()
            expected_t0 = [(n // 3, b"m%d" % n) for n in range(0, 60, 3)] + [(20 + n, b"b%d" % n) for n in range(5)]
            for group in cluster.groups.values():
                assert queue_view(group, "T", 0) == expected_t0
                assert [b for _, b in queue_view(group, "B", 1)] == [b"i0", b"i1", b"i2", b"i3", b"j0", b"j1", b"j2"]
                assert [o for o, _ in queue_view(group, "B", 1)] == list(range(7))
                assert group.store.topic_config("B").is_batch_cq
            logs = {i: log_bytes(g) for i, g in cluster.groups.items()}
            assert logs[1] == logs[2] == logs[3] and len(logs[1]) > 60 * 100
            # the leader's ack is what every replica stored
            for group in cluster.groups.values():
                msg = group.store.read_message(results[7].physical_offset, 200)
                assert (msg.body, msg.queue_offset, msg.queue_id) == (b"m7", results[7].queue_offset, 1)
        finally:
            await cluster.close()
    run(main())


def test_leader_loss_keeps_every_acked_put_and_offsets_continue(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "fsync").start()
        try:
            leader = await cluster.leader()
            acked = [await leader.put(Message(topic="T", body=b"a%d" % n)) for n in range(20)]
            await leader.commit_offset("G", "T", 0, 15)
            old = leader.self_id
            await cluster.stop(old, abrupt=True)
            new = await cluster.leader()
            assert new.self_id != old
            assert [b for _, b in queue_view(new, "T", 0)] == [b"a%d" % n for n in range(20)]
            assert new.store.query_offset("G", "T", 0) == 15
            more = await new.put(Message(topic="T", body=b"after"))
            assert more.queue_offset == acked[-1].queue_offset + 1 == 20
            # the old leader comes back as a follower and catches up
            back = await cluster.restart(old)
            await cluster.converged()
            assert queue_view(back, "T", 0)[-1] == (20, b"after")
            logs = [log_bytes(g) for g in cluster.groups.values()]
            assert logs[0] == logs[1] == logs[2]
        finally:
            await cluster.close()
    run(main())


def test_a_follower_that_was_down_catches_up(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "memory").start()
        try:
            leader = await cluster.leader()
            await leader.put(Message(topic="T", body=b"first"))
            follower = next(i for i in cluster.ids if i != leader.self_id)
            await cluster.stop(follower, abrupt=False)
            await asyncio.gather(*(leader.put(Message(topic="T", body=b"x%d" % n, queue_id=1)) for n in range(300)))
            await leader.update_topic(TopicConfig("T", read_queue_nums=8, write_queue_nums=8))
            back = await cluster.restart(follower)
            await cluster.converged()
            assert [o for o, _ in queue_view(back, "T", 1)] == list(range(300))
            assert back.store.topic_config("T").write_queue_nums == 8
            assert log_bytes(back) == log_bytes(leader)
        finally:
            await cluster.close()
    run(main())


def test_consumer_offsets_replicate_and_never_rewind(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "memory").start()
        try:
            leader = await cluster.leader()
            await leader.commit_offset("G", "T", 2, 10)
            await leader.commit_offset("G", "T", 2, 7)        # older: ignored
            await leader.commit_offset("G", "T", 3, 4)
            await cluster.converged()
            for group in cluster.groups.values():
                assert group.store.query_offset("G", "T", 2) == 10
                assert group.store.query_offset("G", "T", 3) == 4
            # an older update racing through the log is ignored by every replica, a reset is not
            await asyncio.gather(leader.commit_offset("G", "T", 2, 12), leader.commit_offset("G", "T", 2, 11))
            await leader.commit_offset("G", "T", 3, 1, reset=True)
            await cluster.converged()
            for group in cluster.groups.values():
                assert group.store.query_offset("G", "T", 2) == 12
                assert group.store.query_offset("G", "T", 3) == 1
            with pytest.raises(UserError):
                await leader.commit_offset("bad@group", "T", 0, 1)
            with pytest.raises(UserError):
                await leader.commit_offset("G", "../x", 0, 1)
            with pytest.raises(UserError):
                await leader.commit_offset("G", "T", 0, -1)
        finally:
            await cluster.close()
    run(main())


def test_topic_configs_replicate_and_bad_updates_are_refused(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "memory").start()
        try:
            leader = await cluster.leader()
            created = await leader.ensure_topic("Orders", queues=4)
            assert (created.read_queue_nums, created.write_queue_nums) == (4, 4)
            again = await leader.ensure_topic("Orders", queues=16)      # exists: unchanged
            assert again.write_queue_nums == 4
            cfg = TopicConfig("Orders", read_queue_nums=6, write_queue_nums=6, perm=4, attributes={"k": "v"})
            assert await leader.update_topic(cfg) == cfg
            with pytest.raises(UserError, match="queue.type"):
                await leader.update_topic(TopicConfig("Orders", attributes={"queue.type": "BatchCQ"}))
            with pytest.raises(UserError):
                await leader.update_topic(TopicConfig("Orders", read_queue_nums=0))
            await cluster.converged()
            for group in cluster.groups.values():
                assert group.store.topic_config("Orders") == cfg
        finally:
            await cluster.close()
    run(main())


def test_followers_refuse_writes_and_bad_input_never_reaches_the_log(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "memory").start()
        try:
            leader = await cluster.leader()
            follower = next(g for g in cluster.groups.values() if g is not leader)
            while follower.leader_id != leader.self_id:     # it may not have heard from the leader yet
                await asyncio.sleep(0.01)
            with pytest.raises(NotLeader) as info:
                await follower.put(Message(topic="T", body=b"x"))
            assert info.value.leader_id == leader.self_id
            with pytest.raises(NotLeader):
                await follower.commit_offset("G", "T", 0, 1)
            last = leader.node.log.last_index()
            for bad in (Message(topic="../x", body=b"x"), Message(topic="T", body=b"x", queue_id=-1),
                        Message(topic="T" * 300, body=b"x"), Message(topic="T", body=b"x", born_host=("nohost", 1))):
                with pytest.raises(UserError):
                    await leader.put(bad)
            with pytest.raises(UserError):
                await leader.put_batch("T", 0, [], consolidate=False)
            with pytest.raises(UserError):
                await leader.put_batch("T", 0, [BatchItem(b"x")], consolidate=True)   # not a BatchCQ topic
            assert leader.node.log.last_index() == last
        finally:
            await cluster.close()
    run(main())


def test_pending_puts_fail_when_leadership_is_lost(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "memory").start()
        try:
            leader = await cluster.leader()
            roles = []
            leader.on_role_change = lambda role, term, lead: roles.append(role)
            for i in [i for i in cluster.ids if i != leader.self_id]:
                await cluster.groups[i].halt()           # fast: the put below reaches a leader
            pending = asyncio.ensure_future(leader.put(Message(topic="T", body=b"lost?")))
            with pytest.raises(LeadershipLost):
                await asyncio.wait_for(pending, 5)       # check-quorum steps the leader down
            assert leader.role != "leader" and roles and roles[0] == "follower"
            with pytest.raises(NotLeader):
                await leader.put(Message(topic="T", body=b"x"))
        finally:
            await cluster.close()
    run(main())


def test_single_replica_group_restarts_with_its_data_and_offsets(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 1, "fsync").start()
        leader = await cluster.leader()
        results = [await leader.put(Message(topic="T", body=b"s%d" % n)) for n in range(5)]
        assert [r.queue_offset for r in results] == list(range(5))
        await leader.commit_offset("G", "T", 0, 3)
        await cluster.close()
        group = await cluster.restart(1)
        try:
            await cluster.leader()
            assert group.store.query_offset("G", "T", 0) == 3
            assert (await group.put(Message(topic="T", body=b"s5"))).queue_offset == 5
            assert [b for _, b in queue_view(group, "T", 0)] == [b"s%d" % n for n in range(6)]
        finally:
            await cluster.close()
    run(main())


def test_open_refuses_bad_settings(tmp_path):
    async def main():
        with pytest.raises(UserError, match="durability"):
            await ReplicatedGroup.open(tmp_path / "a", self_id=1, peers={1: ("127.0.0.1", 0)}, durability="disk")
        with pytest.raises(UserError, match="not among"):
            await ReplicatedGroup.open(tmp_path / "b", self_id=4, peers={1: ("127.0.0.1", 0)})
        with pytest.raises(UserError):
            await ReplicatedGroup.open(tmp_path / "c", version="v5", self_id=1, peers={1: ("127.0.0.1", 0)})
        first = await ReplicatedGroup.open(tmp_path / "d", self_id=1, peers={1: ("127.0.0.1", 0)})
        try:
            with pytest.raises(UserError, match="cannot listen"):
                await ReplicatedGroup.open(tmp_path / "e", self_id=1, peers={1: first.raft_address})
            # the refused replica released its store: it opens now
            await (await ReplicatedGroup.open(tmp_path / "e", self_id=1, peers={1: ("127.0.0.1", 0)})).close()
        finally:
            await first.close()
    run(main())


def test_replicated_entries_have_the_spec_11_layout(tmp_path):
    """Spec 11.1/11.3: entry header, then the record with QUEUEOFFSET and PHYSICALOFFSET = pos + 48."""
    import struct
    entry_header = struct.Struct(">iiqqqiiii")     # magic size index term pos channel chainCrc bodyCrc bodyLen

    async def main():
        cluster = await Cluster(tmp_path, 1, "memory").start()
        try:
            leader = await cluster.leader()
            a = await leader.put(Message(topic="T", body=b"first"))
            b = await leader.put(Message(topic="T", body=b"second"))
            data = leader.store.dledger.data
            for result, index, queue_offset in ((a, 1, 0), (b, 2, 1)):
                pos = result.physical_offset - 48
                raw = data.read(pos, 48)
                magic, size, entry_index, term, entry_pos, channel, chain, _, body_len = entry_header.unpack(raw)
                assert (magic, entry_index, term, entry_pos, channel, chain) == (1, index, 1, pos, 0, 0)
                assert size == 48 + body_len
                record = data.read(pos + 48, body_len)
                assert struct.unpack_from(">i", record, 0)[0] == body_len            # TOTALSIZE
                assert struct.unpack_from(">q", record, 20)[0] == queue_offset        # QUEUEOFFSET
                assert struct.unpack_from(">q", record, 28)[0] == pos + 48            # PHYSICALOFFSET
                assert result.msg_id == "7F000001" + "00002AA9" + f"{pos + 48:016X}"  # store host 127.0.0.1:10921
            # DLedger index 0 is the leader's no-op (magic 2, empty body)
            assert struct.unpack_from(">ii", data.read(0, 8)) == (2, 48)
        finally:
            await cluster.close()
    run(main())


def test_a_record_too_large_for_one_raft_frame_is_refused(tmp_path, monkeypatch):
    from mqbench.broker.server import replicated
    monkeypatch.setattr(replicated, "ENTRY_BYTES_MAX", 4096)

    async def main():
        cluster = await Cluster(tmp_path, 1, "memory").start()
        try:
            leader = await cluster.leader()
            last = leader.node.log.last_index()
            with pytest.raises(UserError, match="larger than a Raft entry"):
                await leader.put(Message(topic="T", body=b"x" * 5000))
            assert leader.node.log.last_index() == last
            assert (await leader.put(Message(topic="T", body=b"x" * 3000))).queue_offset == 0
        finally:
            await cluster.close()
    run(main())


@pytest.mark.parametrize("durability", ["memory", "fsync"])
def test_an_acknowledged_put_is_fsynced_on_a_majority_only_in_fsync_mode(tmp_path, durability):
    async def main():
        cluster = await Cluster(tmp_path, 3, durability).start()
        try:
            leader = await cluster.leader()
            for n in range(20):
                result = await leader.put(Message(topic="T", body=b"d%d" % n))
                end = result.physical_offset + 60       # inside the record (one fdatasync covers all of it)
                synced = sum(g.store.group_commit.flushed_offset >= end for g in cluster.groups.values())
                if durability == "fsync":
                    assert synced >= 2, n
                else:
                    assert synced == 0, n
        finally:
            await cluster.close()
    run(main())


def test_concurrent_first_sends_to_a_new_topic_create_it_once(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 1, "memory").start()
        try:
            leader = await cluster.leader()
            before = leader.store.max_offset("rmq_sys_mqbench_meta", 0)
            configs = await asyncio.gather(*(leader.ensure_topic("Fresh", queues=3) for _ in range(20)))
            assert all(c.write_queue_nums == 3 for c in configs)
            await asyncio.sleep(0.05)
            assert leader.store.max_offset("rmq_sys_mqbench_meta", 0) == before + 1    # one entry
            with pytest.raises(UserError):
                await asyncio.gather(*(leader.ensure_topic("Bad", queues=0) for _ in range(3)))
        finally:
            await cluster.close()
    run(main())


def test_concurrent_offset_commits_of_one_queue_share_entries(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "fsync").start()
        try:
            leader = await cluster.leader()
            before = leader.store.max_offset("rmq_sys_mqbench_meta", 0)
            await asyncio.gather(*(leader.commit_offset("G", "T", 0, n) for n in range(1, 51)),
                                 *(leader.commit_offset("G", "T", 1, n) for n in range(1, 31)))
            assert leader.store.query_offset("G", "T", 0) == 50
            assert leader.store.query_offset("G", "T", 1) == 30
            entries = leader.store.max_offset("rmq_sys_mqbench_meta", 0) - before
            assert 2 <= entries <= 6, entries          # a first entry and a follow-up per queue, not 80
            await cluster.converged()
            for group in cluster.groups.values():
                assert group.store.query_offset("G", "T", 0) == 50
        finally:
            await cluster.close()
    run(main())


def test_offset_commits_of_many_queues_and_groups_share_snapshot_records(tmp_path):
    # Issue 16 finding 3: a commit per queue per round trip made offsets as many records as the
    # users' messages. Pull-piggybacked (lazy) commits of 3 groups x 16 queues, 20 rounds of them,
    # go as a handful of snapshot records; a waited-for commit still goes at once.
    async def main():
        cluster = await Cluster(tmp_path, 3, "memory").start()
        try:
            leader = await cluster.leader()
            before = leader.store.max_offset("rmq_sys_mqbench_meta", 0)
            for round_ in range(1, 21):
                await asyncio.gather(*(leader.commit_offset(g, "T", q, round_ * 10 + q, lazy=True)
                                       for g in ("G1", "G2", "G3") for q in range(16)))
            lazy_records = leader.store.max_offset("rmq_sys_mqbench_meta", 0) - before
            assert lazy_records <= 20 * 3 // 2, lazy_records      # was 960: one per commit
            started = asyncio.get_running_loop().time()
            await leader.commit_offset("G1", "T", 0, 1000)         # explicit: not held for the interval
            assert asyncio.get_running_loop().time() - started < leader.offset_snapshot_ms / 1000
            await cluster.converged()
            for group in cluster.groups.values():
                assert group.store.query_offset("G1", "T", 0) == 1000
                assert [group.store.query_offset(g, "T", 15) for g in ("G1", "G2", "G3")] == [215] * 3
        finally:
            await cluster.close()
    run(main())


def test_noted_offsets_ride_on_snapshots_without_a_task_each_and_are_checked(tmp_path):
    # a pull's commit offset (note_offset): nobody waits, no Task per pull; it still reaches every
    # replica in a handful of snapshot records, and is checked as a waited-for commit is
    async def main():
        cluster = await Cluster(tmp_path, 3, "memory").start()
        try:
            leader = await cluster.leader()
            before = leader.store.max_offset("rmq_sys_mqbench_meta", 0)
            tasks_before = len(asyncio.all_tasks())
            for n in range(1, 201):
                leader.note_offset("G", "T", n % 4, n)
            assert len(asyncio.all_tasks()) == tasks_before
            with pytest.raises(UserError):
                leader.note_offset("G", "T", 0, -5)
            follower = next(g for g in cluster.groups.values() if g is not leader)
            with pytest.raises(NotLeader):
                follower.note_offset("G", "T", 0, 500)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while leader.store.query_offset("G", "T", 0) != 200 and loop.time() < deadline:
                await asyncio.sleep(0.02)
            assert [leader.store.query_offset("G", "T", q) for q in range(4)] == [200, 197, 198, 199]
            assert leader.store.max_offset("rmq_sys_mqbench_meta", 0) - before <= 3
            await cluster.converged()
            for group in cluster.groups.values():
                assert [group.store.query_offset("G", "T", q) for q in range(4)] == [200, 197, 198, 199]
        finally:
            await cluster.close()
    run(main())
