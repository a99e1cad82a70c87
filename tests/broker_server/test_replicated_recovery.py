"""ReplicatedGroup restarts: metadata re-applied from the log, preferred leaders, callbacks, stats."""
from __future__ import annotations

import asyncio

from mqbench.broker.store.raft_storage import APPLIED_FILE, replica_node_id
from mqbench.broker.store.metadata import CONSUMER_OFFSETS_FILE
from mqbench.broker.server.replicated import LeadershipLost
from mqbench.broker.formats.record import Message

from replicated_cluster import Cluster, log_bytes
from test_replicated_group import run


def _config_file(root, name):
    return next(root.rglob(name))


def test_metadata_lost_before_it_was_persisted_is_rebuilt_from_the_log(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 1, "memory").start()
        leader = await cluster.leader()
        await leader.commit_offset("G", "T", 0, 10)
        await leader.commit_offset("G", "T", 0, 3, reset=True)
        await leader.commit_offset("G", "T", 0, 5)
        await leader.commit_offset("G", "T", 1, 8)
        await leader.ensure_topic("Made", queues=2)
        await cluster.close()
        root = cluster.store_root(1)
        # a crash right after the entries were committed: neither the offsets file nor the
        # applied mark made it to disk
        _config_file(root, CONSUMER_OFFSETS_FILE).unlink()
        (root / APPLIED_FILE).unlink()
        group = await cluster.restart(1)
        try:
            await cluster.leader()
            assert group.store.query_offset("G", "T", 0) == 5        # replayed in log order
            assert group.store.query_offset("G", "T", 1) == 8
            assert group.store.topic_config("Made").write_queue_nums == 2
        finally:
            await cluster.close()
    run(main())


def test_a_stale_metadata_file_is_brought_up_to_date(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 1, "fsync").start()
        leader = await cluster.leader()
        await leader.commit_offset("G", "T", 0, 4)
        await cluster.close()
        root = cluster.store_root(1)
        stale = _config_file(root, CONSUMER_OFFSETS_FILE).read_bytes()
        stale_mark = (root / APPLIED_FILE).read_bytes()
        group = await cluster.restart(1)
        await (await cluster.leader()).commit_offset("G", "T", 0, 9)
        await cluster.close()
        _config_file(root, CONSUMER_OFFSETS_FILE).write_bytes(stale)
        (root / APPLIED_FILE).write_bytes(stale_mark)
        group = await cluster.restart(1)
        try:
            await cluster.leader()
            assert group.store.query_offset("G", "T", 0) == 9
        finally:
            await cluster.close()
    run(main())


def test_leadership_moves_to_the_preferred_replica(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "memory", preferred_leader=3).start()
        changes = []
        for group in cluster.groups.values():
            group.on_role_change = lambda role, term, lead, me=group.self_id: changes.append((me, role, lead))
        try:
            async def settled():
                while True:
                    leader = await cluster.leader()
                    if leader.self_id == 3:
                        return leader
                    await asyncio.sleep(0.02)
            leader = await asyncio.wait_for(settled(), 30)
            result = await leader.put(Message(topic="T", body=b"p"))
            assert result.queue_offset == 0
            assert (3, "leader", 3) in changes
            assert all(g.leader_id == 3 for g in cluster.groups.values() if g.role == "follower")
        finally:
            await cluster.close()
    run(main())


def test_on_commit_and_stats(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "memory").start()
        try:
            leader = await cluster.leader()
            follower = next(g for g in cluster.groups.values() if g is not leader)
            woken = asyncio.Event()
            follower.on_commit = woken.set
            await leader.put(Message(topic="T", body=b"x" * 1000))
            await asyncio.wait_for(woken.wait(), 5)
            stats = leader.stats()
            assert stats["raftRole"] == "leader" and stats["raftLeaderId"] == leader.self_id
            assert stats["putMessageCount"] == 1 and stats["raftBytesSent"] > 2 * 1000
            assert stats["storeBytes"] > 1000 and stats["raftCommitIndex"] >= 2
            assert follower.stats()["raftBytesReceived"] > 1000
            assert follower.stats()["raftRole"] == "follower"
            assert replica_node_id("n0") == 1
        finally:
            await cluster.close()
    run(main())


def test_a_divergent_uncommitted_suffix_is_replaced_and_restamped(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "memory").start()
        try:
            leader = await cluster.leader()
            await leader.put(Message(topic="T", body=b"kept"))
            old = leader.self_id
            followers = [i for i in cluster.ids if i != old]
            for i in followers:
                await cluster.groups[i].halt()           # fast: the puts below reach a leader
            doomed = [asyncio.ensure_future(leader.put(Message(topic="T", body=b"lost%d" % n))) for n in range(5)]
            results = await asyncio.gather(*doomed, return_exceptions=True)
            for i in followers:
                await cluster.stop(i)
            assert all(isinstance(r, LeadershipLost) for r in results)
            assert leader.node.log.last_index() >= leader.commit_index + 5     # appended, never committed
            await cluster.stop(old)
            for i in followers:
                await cluster.restart(i)
            new = await cluster.leader()
            fresh = [await new.put(Message(topic="T", body=b"new%d" % n)) for n in range(3)]
            assert [r.queue_offset for r in fresh] == [1, 2, 3]
            back = await cluster.restart(old)
            await cluster.converged()
            for group in cluster.groups.values():
                view = group.store.read_queue("T", 0, 0, max_messages=100)
                assert [(m.queue_offset, m.body) for m in view.messages] == [
                    (0, b"kept"), (1, b"new0"), (2, b"new1"), (3, b"new2")]
            assert log_bytes(back) == log_bytes(new)
            assert back.store.max_offset("T", 0) == 4
        finally:
            await cluster.close()
    run(main())


def test_transfer_leadership_hands_over_and_writes_continue(tmp_path):
    async def main():
        cluster = await Cluster(tmp_path, 3, "fsync").start()
        try:
            leader = await cluster.leader()
            first = await leader.put(Message(topic="T", body=b"before"))
            target = next(i for i in cluster.ids if i != leader.self_id)
            leader.transfer_leadership(target)

            async def moved():
                while True:
                    new = await cluster.leader()
                    if new.self_id == target:
                        return new
                    await asyncio.sleep(0.01)
            new = await asyncio.wait_for(moved(), 10)
            second = await new.put(Message(topic="T", body=b"after"))
            assert second.queue_offset == first.queue_offset + 1
        finally:
            await cluster.close()
    run(main())


def test_the_applied_mark_is_saved_while_running(tmp_path):
    import json

    async def main():
        cluster = await Cluster(tmp_path, 1, "memory", applied_save_ms=50).start()
        try:
            leader = await cluster.leader()
            await leader.commit_offset("G", "T", 0, 7)
            mark = cluster.store_root(1) / APPLIED_FILE

            async def saved():
                while not (mark.exists() and json.loads(mark.read_text())["appliedIndex"] >= leader.applied_index):
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(saved(), 10)
            # the offsets file was persisted before the mark that covers it
            assert '"T@G"' in _config_file(cluster.store_root(1), CONSUMER_OFFSETS_FILE).read_text()
        finally:
            await cluster.close()
    run(main())
