"""A consumer with RocketMQ's 15 s suspend follows a failover at its next rebalance: a pull suspended
on the old leader (alive, or frozen: it never answers) is dropped and the queue is pulled from the
new leader's address. Before, a long suspend kept the queue on the old address until that pull
answered (15 s), which is why ``mqbench run`` used 2 s and re-polled every idle queue every 2 s."""
import asyncio

from mqbench.broker.formats import codes
from mqbench.broker.formats import record as rec
from mqbench.client import Consumer


def test_a_pull_suspended_on_the_old_leader_moves_to_the_new_one_at_the_next_rebalance(cluster, run):
    async def main():
        async with cluster:
            old = await cluster.add_broker("g0", term=1, queue_nums=2)
            consumer = Consumer(cluster.namesrv_addr, "GID_move", consume_from="first", suspend_timeout_ms=15_000,
                                rebalance_interval_ms=100, heartbeat_interval_ms=60_000, pull_error_backoff_ms=50)
            consumer.subscribe("Orders")
            async with consumer:
                while sum(1 for r in old.requests if r.code == codes.PULL_MESSAGE) < 2:      # both queues suspended on old
                    await asyncio.sleep(0.01)
                new = await cluster.add_broker("g0", term=2, queue_nums=2)   # the failover
                new.append(rec.Message(topic="Orders", body=b"after the failover", queue_id=1))
                got = await consumer.receive(1, timeout_ms=3000)
                assert [m.body for m in got] == [b"after the failover"]
                assert all(state.pull_addr == new.addr for state in consumer.assigned.values())
    run(main())


def test_an_unmoved_queue_keeps_its_suspended_pull(cluster, run):
    """A rebalance that finds the route unchanged does not cancel and resend the suspended pulls."""
    async def main():
        async with cluster:
            broker = await cluster.add_broker("g0", term=1, queue_nums=2)
            consumer = Consumer(cluster.namesrv_addr, "GID_stay", consume_from="first", suspend_timeout_ms=15_000,
                                rebalance_interval_ms=60_000, heartbeat_interval_ms=60_000)
            consumer.subscribe("Orders")
            async with consumer:
                while sum(1 for r in broker.requests if r.code == codes.PULL_MESSAGE) < 2:
                    await asyncio.sleep(0.01)
                tasks = {q: s.task for q, s in consumer.assigned.items()}
                for _ in range(3):
                    await consumer.rebalance()
                await asyncio.sleep(0.05)
                assert {q: s.task for q, s in consumer.assigned.items()} == tasks
                assert sum(1 for r in broker.requests if r.code == codes.PULL_MESSAGE) == 2
    run(main())
