"""DelayService over a real store: delivery at or after the due time, recovery after a failover
(two service instances, the first deposed mid-burst), after a restart, and malformed records."""
from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings, strategies as st

from mqbench.broker.formats.record import Message
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.formats.timer_formats import TIMER_TOPIC
from mqbench.broker.timer.config import DelayConfig
from mqbench.broker.timer.plan import PROGRESS_TOPIC
from mqbench.broker.formats.properties import PROPERTY_MQBENCH_DELAY_SOURCE
from timerharness import Deposed, Group, T0_MS, run_until

TOPICS = {"Orders": 4, "Notes": 2}


def workload(group: Group, n: int, seed: int, config: DelayConfig) -> dict[bytes, int]:
    """Send ``n`` delayed messages (levels 1..4 and timers within a minute); returns body -> due ms."""
    rng = random.Random(seed)
    due = {}
    for i in range(n):
        topic = rng.choice(sorted(TOPICS))
        body = f"m{i}".encode()
        if rng.random() < 0.4:
            level = rng.randint(1, 4)
            msg = Message(topic, body, {"DELAY": str(level)}, queue_id=rng.randrange(TOPICS[topic]))
            due[body] = group.now_ms + config.level_delay_ms(level)
        else:
            at = group.now_ms + rng.randint(1, 60_000)
            msg = Message(topic, body, {"TIMER_DELIVER_MS": str(at)}, queue_id=rng.randrange(TOPICS[topic]))
            due[body] = at
        group.send(msg, config)
        if rng.random() < 0.3:
            group.now_ms += rng.randint(0, 50)
    return due


def check_exactly_once_never_early(group: Group, due: dict[bytes, int]) -> None:
    got = group.deliveries(TOPICS)
    bodies = [m.body for m in got]
    assert len(bodies) == len(set(bodies)), "a message was delivered twice"
    assert set(bodies) == set(due), f"missing: {sorted(set(due) - set(bodies))[:5]}"
    early = [(m.body, m.store_timestamp_ms - due[m.body]) for m in got if m.store_timestamp_ms < due[m.body]]
    assert not early, f"delivered early: {early[:5]}"


def test_delivers_every_message_at_or_after_its_due_time(tmp_path):
    cfg = DelayConfig(window_max=32)
    g = Group(tmp_path)
    due = workload(g, 200, 1, cfg)
    svc = g.service("a", config=cfg)
    started_ms = g.now_ms

    async def main():
        await svc.recover()
        await run_until(g, svc, T0_MS + 70_000, 97)
    asyncio.run(main())
    check_exactly_once_never_early(g, due)
    late = [m.store_timestamp_ms - max(due[m.body], started_ms) for m in g.deliveries(TOPICS)]
    assert max(late) < 97 + 1, "a step that saw a message due did not deliver it"
    assert svc.stats.delivered == 200 and svc.stats.markers > 0


def test_delivered_message_is_the_real_message(tmp_path):
    g = Group(tmp_path)
    g.send(Message("Orders", b"hello", {"DELAY": "2", "TAGS": "TagA", "KEYS": "k1"}, queue_id=3, flag=7))
    g.send(Message("Orders", b"timer", {"TIMER_DELAY_MS": "2500", "TAGS": "TagB"}, queue_id=1))
    svc = g.service("a")

    async def main():
        await svc.recover()
        await run_until(g, svc, T0_MS + 6_000, 50)
    asyncio.run(main())
    level_msg, = g.queue("Orders", 3)
    assert (level_msg.body, level_msg.flag, level_msg.tags, level_msg.keys) == (b"hello", 7, "TagA", ["k1"])
    assert level_msg.properties[PROPERTY_MQBENCH_DELAY_SOURCE] == "L2:0"
    assert not {"DELAY", "REAL_TOPIC", "REAL_QID"} & set(level_msg.properties)
    assert level_msg.store_timestamp_ms == T0_MS + 5000        # level 2 = 5 s, delivered on the tick
    timer_msg, = g.queue("Orders", 1)
    assert timer_msg.properties[PROPERTY_MQBENCH_DELAY_SOURCE] == "T:0" and timer_msg.tags == "TagB"
    assert timer_msg.properties["TIMER_ENQUEUE_MS"] == str(T0_MS)
    assert timer_msg.store_timestamp_ms == T0_MS + 2500
    # the delay offset is kept in delayOffset.json as RocketMQ does
    assert g.store.delay_offset(2) == 1


@pytest.mark.parametrize("fail_after,write_failing", [(0, True), (1, False), (7, True), (40, True), (41, False),
                                                      (90, True), (150, False)])
def test_failover_mid_burst_loses_nothing_and_duplicates_nothing(tmp_path, fail_after, write_failing):
    cfg = DelayConfig(window_max=16, deliver_concurrency=4)
    g = Group(tmp_path)
    due = workload(g, 240, fail_after, cfg)
    old = g.service("old", g.put_fn(fail_after=fail_after, write_failing=write_failing), config=cfg)

    async def main():
        with pytest.raises(Deposed):
            await old.recover()
            await run_until(g, old, T0_MS + 70_000, 211)
        new = g.service("new", config=cfg)
        await new.recover()
        await run_until(g, new, T0_MS + 75_000, 211)
        return new
    new = asyncio.run(main())
    check_exactly_once_never_early(g, due)
    if fail_after > 0:
        assert new.stats.found_delivered + new.stats.redelivered > 0 or old.stats.markers == 0


def test_failover_repeated_with_random_depositions(tmp_path):
    """Leadership moves five times, each leader deposed after a random number of puts."""
    cfg = DelayConfig(window_max=8, deliver_concurrency=3)
    g = Group(tmp_path)
    due = workload(g, 300, 99, cfg)
    rng = random.Random(5)

    async def main():
        for turn in range(6):
            last = turn == 5
            svc = g.service(f"r{turn % 3}", g.put_fn(fail_after=None if last else rng.randint(0, 60),
                                                     write_failing=rng.random() < 0.5), config=cfg)
            try:
                await svc.recover()
                await run_until(g, svc, T0_MS + 75_000, 173)
            except Deposed:
                svc.index.close()
                continue
    asyncio.run(main())
    check_exactly_once_never_early(g, due)


def test_restart_with_store_reopened_and_index_reused(tmp_path):
    cfg = DelayConfig(window_max=16)
    g = Group(tmp_path)
    due = workload(g, 150, 3, cfg)

    async def main():
        svc = g.service("a", config=cfg)
        await svc.recover()
        await run_until(g, svc, T0_MS + 20_000, 131)
        svc.index.close()
        g.reopen()
        svc2 = g.service("a", config=cfg)            # same index folder: reloaded from timercheck
        await svc2.recover()
        assert svc2.index.next_queue_offset == g.store.max_offset(TIMER_TOPIC, 0)
        await run_until(g, svc2, T0_MS + 70_000, 131)
    asyncio.run(main())
    check_exactly_once_never_early(g, due)


def test_service_crash_without_index_checkpoint(tmp_path):
    """The service dies without closing its index (unflushed units lost); the next one reuses the
    folder: the index repairs itself and nothing is lost or repeated."""
    cfg = DelayConfig(window_max=16)
    g = Group(tmp_path)
    due = workload(g, 150, 4, cfg)

    async def main():
        svc = g.service("a", g.put_fn(fail_after=60, write_failing=True), config=cfg)
        await svc.recover()
        with pytest.raises(Deposed):
            await run_until(g, svc, T0_MS + 70_000, 131)
        # abandoned: buffered units and dirty wheel slots are never written
        svc2 = g.service("a", config=cfg)
        await svc2.recover()
        await run_until(g, svc2, T0_MS + 70_000, 131)
    asyncio.run(main())
    check_exactly_once_never_early(g, due)


def test_malformed_delayed_records_are_skipped(tmp_path):
    g = Group(tmp_path)
    # written straight to the system topics, as a foreign or damaged store might hold them
    g.store.append(Message(SCHEDULE_TOPIC, b"no-target", {"DELAY": "1"}, queue_id=0))
    g.store.append(Message(TIMER_TOPIC, b"bad-time", {"TIMER_OUT_MS": "soon", "REAL_TOPIC": "Orders",
                                                       "REAL_QID": "0"}))
    g.store.append(Message(TIMER_TOPIC, b"bad-topic", {"TIMER_OUT_MS": str(T0_MS + 10), "REAL_TOPIC": "../x",
                                                        "REAL_QID": "0"}))
    g.send(Message("Orders", b"good", {"DELAY": "1"}))
    svc = g.service("a")

    async def main():
        await svc.recover()
        await run_until(g, svc, T0_MS + 3_000, 100)
    asyncio.run(main())
    assert [m.body for m in g.queue("Orders", 0)] == [b"bad-time", b"good"]   # bad time: delivered at once
    assert svc.stats.malformed == 2


def test_levels_only_on_a_v4_store(tmp_path):
    cfg = DelayConfig(timer_enabled=False)
    g = Group(tmp_path, version="v4")
    g.send(Message("Orders", b"lvl", {"DELAY": "1"}), cfg)
    g.send(Message("Orders", b"plain", {"TIMER_DELAY_SEC": "5"}), cfg)      # 4.x ignores TIMER_*
    svc = g.service("a", config=cfg)

    async def main():
        await svc.recover()
        await run_until(g, svc, T0_MS + 2_000, 100)
    asyncio.run(main())
    assert svc.index is None
    assert [m.body for m in g.queue("Orders", 0)] == [b"plain", b"lvl"]
    assert g.store.max_offset(PROGRESS_TOPIC, 0) == 1


def test_long_delay_rolls_through_the_timer_topic(tmp_path):
    cfg = DelayConfig(timer_max_delay_ms=10 * 86_400_000, timer_roll_window_ms=3_000)
    g = Group(tmp_path)
    g.send(Message("Orders", b"far", {"TIMER_DELAY_MS": "10000"}), cfg)
    svc = g.service("a", config=cfg)

    async def main():
        await svc.recover()
        await run_until(g, svc, T0_MS + 12_000, 100)
    asyncio.run(main())
    msg, = g.queue("Orders", 0)
    assert msg.store_timestamp_ms == T0_MS + 10_000
    assert msg.properties["TIMER_ROLL_TIMES"] == "3"            # parked at +3 s, +6 s, +9 s
    assert svc.stats.rolled == 3 and g.store.max_offset(TIMER_TOPIC, 0) == 4


def test_asyncio_loop_sleeps_until_due_and_stops(tmp_path):
    """The real loop on the wall clock: a 150 ms timer arrives 140..250 ms later; stop() ends the task."""
    g = Group(tmp_path).on_wall_clock()
    svc = g.service("a", config=DelayConfig(poll_interval_ms=50))

    async def main():
        await svc.start()
        await asyncio.sleep(0.05)
        sent = g.clock_ms()
        g.send(Message("Orders", b"soon", {"TIMER_DELIVER_MS": str(sent + 150)}))
        svc.notify()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if g.store.max_offset("Orders", 0):
                break
        await svc.stop()
        return sent
    sent = asyncio.run(main())
    msg, = g.queue("Orders", 0)
    assert sent + 150 <= msg.store_timestamp_ms < sent + 400
    assert svc.state == "stopped" and svc.index is None


def test_the_service_sleep_ends_on_notify_or_time_and_passes_cancellation(tmp_path):
    """``_sleep``: a timer and a future (no Task per sleep); ``notify`` ends it at once, a notify
    that came before it makes it return without waiting, the time ends it, and a cancellation of
    the sleeping task propagates (never swallowed)."""
    import time
    svc = Group(tmp_path).service("a")

    async def main():
        svc._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        sleeping = loop.create_task(svc._sleep(10_000))
        await asyncio.sleep(0.02)
        tasks_while_sleeping = len(asyncio.all_tasks())
        svc.notify()
        await asyncio.wait_for(sleeping, 2)
        woken_s = time.monotonic() - t0
        await svc._sleep(10_000)                      # the notify is still pending: no wait
        svc._wake.clear()
        t1 = time.monotonic()
        await svc._sleep(30)
        slept_s = time.monotonic() - t1
        cancelled = loop.create_task(svc._sleep(10_000))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        return tasks_while_sleeping, woken_s, slept_s, svc._sleeper

    tasks, woken_s, slept_s, sleeper = asyncio.run(main())
    assert tasks == 2                 # main and the sleeper: the sleep made no task of its own
    assert woken_s < 1.0 and 0.025 <= slept_s < 1.0 and sleeper is None


def test_levels_added_to_the_config_start_from_the_store_not_from_zero(tmp_path):
    """A level the last marker does not name starts at the store's delayOffset.json (here: a
    migrated store whose broker already delivered the first level-3 message), not at offset 0."""
    g = Group(tmp_path)
    two, three = DelayConfig(delay_levels="1s 2s"), DelayConfig(delay_levels="1s 2s 3s")
    g.send(Message("Orders", b"old-three", {"DELAY": "3"}), three)
    g.store.set_delay_offset(3, 1)
    g.send(Message("Orders", b"one", {"DELAY": "1"}), two)

    async def main():
        svc = g.service("a", config=two)
        await svc.recover()
        await run_until(g, svc, T0_MS + 1_500, 100)
        g.send(Message("Orders", b"three", {"DELAY": "3"}), three)
        svc2 = g.service("b", config=three)
        await svc2.recover()
        await run_until(g, svc2, T0_MS + 6_000, 100)
    asyncio.run(main())
    assert [m.body for m in g.queue("Orders", 0)] == [b"one", b"three"]


def test_damaged_timer_record_is_skipped_once_without_spinning(tmp_path):
    """A timer record whose body fails its CRC (at the tail of the timer queue): skipped and counted
    once; the service keeps sleeping between steps instead of retrying it forever."""
    g = Group(tmp_path)
    g.send(Message("Orders", b"good", {"TIMER_DELAY_MS": "500"}))
    bad = g.send(Message("Orders", b"damaged", {"TIMER_DELAY_MS": "700"}))
    # first body byte (IPv4 hosts: body at +88), damaged through the store's own segment files so
    # that the in-memory tail it keeps of its commitlog holds the damage too (as a page cache would)
    g.store.log.segments.write(bad.physical_offset + 88, b"X")
    svc = g.service("a")

    async def main():
        await svc.recover()
        zero_waits = 0
        while g.now_ms < T0_MS + 2_000:
            if await svc.step() == 0:
                zero_waits += 1
                assert zero_waits < 50, "the service spins on the damaged record"
            else:
                g.now_ms += 100
    asyncio.run(main())
    assert [m.body for m in g.queue("Orders", 0)] == [b"good"]
    assert svc.stats.malformed == 1 and svc.index.next_queue_offset == 2


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.tuples(st.integers(0, 80), st.booleans()), min_size=1, max_size=4),
       st.integers(2, 40), st.integers(1, 8))
def test_property_any_sequence_of_depositions_keeps_exactly_once(tmp_path_factory, seed, depositions, window,
                                                                   concurrency):
    """Whatever the window size, concurrency, and where each leader is deposed (and whether its
    last put was committed unacknowledged), every message arrives once and never early."""
    cfg = DelayConfig(window_max=window, deliver_concurrency=concurrency)
    g = Group(tmp_path_factory.mktemp("prop"))
    due = workload(g, 60, seed, cfg)

    async def main():
        for turn, (fail_after, write_failing) in enumerate(depositions + [(None, False)]):
            svc = g.service(f"r{turn % 2}", g.put_fn(fail_after=fail_after, write_failing=write_failing), config=cfg)
            try:
                await svc.recover()
                await run_until(g, svc, T0_MS + 65_000, 457)
            except Deposed:
                pass
            if svc.index is not None:
                svc.index.close()
    asyncio.run(main())
    check_exactly_once_never_early(g, due)


def test_a_commit_wakes_the_service_only_when_its_queues_grew(tmp_path):
    """#15: the broker calls ``on_commit`` after every commit; the service is woken only when a
    delayed or timer record was applied (its queues grew), not for ordinary traffic. A follower's
    indexer only for the timer queue."""
    g = Group(tmp_path)
    svc = g.service("a", config=DelayConfig())
    indexer = g.service("b", config=DelayConfig())

    async def main():
        await svc.start()
        await indexer.follow()
        try:
            await asyncio.sleep(0.05)
            woken = []
            for who in (svc, indexer):
                who._wake.clear()
                who.notify_if_grown()          # the first look always wakes (nothing seen yet)
                who._wake.clear()
            for i in range(20):                 # ordinary sends: no wake-up
                g.send(Message("Orders", b"plain%d" % i))
                svc.notify_if_grown()
                indexer.notify_if_grown()
            woken.append((svc._wake.is_set(), indexer._wake.is_set()))
            g.send(Message("Orders", b"level", {"DELAY": "3"}))          # a delay-level message
            svc.notify_if_grown()
            indexer.notify_if_grown()
            woken.append((svc._wake.is_set(), indexer._wake.is_set()))
            svc._wake.clear()
            svc.notify_if_grown()                # the same growth wakes once
            woken.append((svc._wake.is_set(), indexer._wake.is_set()))
            g.send(Message("Orders", b"timer", {"TIMER_DELIVER_MS": str(g.now_ms + 60_000)}))
            svc.notify_if_grown()
            indexer.notify_if_grown()
            woken.append((svc._wake.is_set(), indexer._wake.is_set()))
            return woken
        finally:
            await svc.stop()
            await indexer.stop()
    assert asyncio.run(main()) == [(False, False), (True, False), (False, False), (True, True)]
