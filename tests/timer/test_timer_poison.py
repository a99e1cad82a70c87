"""No poison message for delayed delivery (issue 18, finding 3).

* A timer record whose re-put cannot be stored (its properties plus the delivery's additions exceed
  32,767 bytes) goes to the dead-letter topic; the others are delivered and the service does not
  retry it forever. The broker refuses such a send in the first place.
* A garbage or crafted record in the progress-marker queue is skipped with an error at recovery:
  delivery neither freezes nor replays old windows.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from mqbench.broker.formats import codes
from mqbench.broker.formats.record import Message, encode_properties
from mqbench.broker.formats.record_layout import PROPERTIES_MAX_BYTES
from mqbench.broker.formats.timer_formats import TIMER_TOPIC
from mqbench.broker.timer.config import DelayConfig
from mqbench.broker.timer.plan import MARKER_QUEUE, PROGRESS_TOPIC, Window, decode_marker, encode_marker, marker_message
from mqbench.broker.formats.properties import PROPERTY_MQBENCH_DELAY_SOURCE
from mqbench.broker.timer.rewrite import DEAD_LETTER_TOPIC, delivered_message, rewrite_for_delay
from mqbench.client import OutgoingMessage, Producer
from mqbench.client.connections import ClientError
from timerharness import Group, T0_MS, run_until

TOPICS = {"Orders": 1}


def poison_timer(group: Group, deliver_ms: int) -> Message:
    return poison_timer_at(deliver_ms, group.now_ms)


async def producer_send(one, msg: OutgoingMessage) -> None:
    async with Producer(one.layout.namesrv_addr, "PID_poison2") as producer:
        await producer.send(msg)


def poison_timer_at(deliver_ms: int, now_ms: int) -> Message:
    """A timer message whose stored properties fit, but whose delivered form does not (as the
    probe found: 32,630 bytes of properties accepted; the re-put needs 32,791)."""
    base = Message("Orders", b"poison", {"TIMER_DELIVER_MS": str(deliver_ms), "X": ""}, queue_id=0)
    stored_probe = rewrite_for_delay(base, now_ms=now_ms)
    room = PROPERTIES_MAX_BYTES - len(encode_properties(stored_probe.properties))
    base.properties["X"] = "p" * (room - 5)
    stored = rewrite_for_delay(base, now_ms=now_ms)
    assert len(encode_properties(stored.properties)) <= PROPERTIES_MAX_BYTES
    delivered = delivered_message(stored, source="T:123456", now_ms=deliver_ms)
    assert len(encode_properties(delivered.properties)) > PROPERTIES_MAX_BYTES
    return base


def test_undeliverable_timer_goes_to_the_dead_letter_topic_and_the_rest_is_delivered(tmp_path):
    g = Group(tmp_path)
    g.send(Message("Orders", b"before", {"TIMER_DELIVER_MS": str(T0_MS + 400)}))
    g.send(poison_timer(g, T0_MS + 500))        # stored as another broker would have: no send-side check
    g.send(Message("Orders", b"same-time", {"TIMER_DELIVER_MS": str(T0_MS + 500)}))
    g.send(Message("Orders", b"after", {"TIMER_DELIVER_MS": str(T0_MS + 900)}))
    g.send(Message("Orders", b"level", {"DELAY": "1"}))
    svc = g.service("a")

    async def main():
        await svc.recover()
        await run_until(g, svc, T0_MS + 3_000, 50)
    asyncio.run(main())
    assert sorted(m.body for m in g.deliveries(TOPICS)) == [b"after", b"before", b"level", b"same-time"]
    dead = g.queue(DEAD_LETTER_TOPIC, 0)
    assert [m.body for m in dead] == [b"poison"]
    assert dead[0].properties["REAL_TOPIC"] == "Orders" and dead[0].properties[PROPERTY_MQBENCH_DELAY_SOURCE].startswith("T:")
    assert svc.stats.dead_lettered == 1 and svc.stats.failures == 0
    assert svc.stats.markers <= 6, "the service kept retrying"

    # a new leader after a failover finds the dead letter already moved: no second copy
    svc2 = g.service("b")

    async def again():
        await svc2.recover()
        await run_until(g, svc2, T0_MS + 4_000, 50)
    asyncio.run(again())
    assert len(g.queue(DEAD_LETTER_TOPIC, 0)) == 1 and len(g.deliveries(TOPICS)) == 4


def _deliver_some(g: Group, bodies: list[bytes], delay_s: int) -> None:
    for body in bodies:
        g.send(Message("Orders", body, {"DELAY": "1"} if delay_s == 1 else {"TIMER_DELAY_MS": str(delay_s * 1000)}))


def _run_leader(g: Group, name: str, until_ms: int):
    svc = g.service(name)

    async def main():
        await svc.recover()
        await run_until(g, svc, until_ms, 50)
    asyncio.run(main())
    return svc


def test_garbage_progress_record_is_skipped_not_frozen(tmp_path):
    g = Group(tmp_path)
    _deliver_some(g, [b"a1", b"a2", b"a3"], 1)
    _run_leader(g, "a", T0_MS + 2_000)
    g.store.append(Message(PROGRESS_TOPIC, b"\x00garbage{", {}, queue_id=MARKER_QUEUE))   # a foreign write
    _deliver_some(g, [b"b1", b"b2"], 1)
    _deliver_some(g, [b"t1"], 2)
    svc = _run_leader(g, "b", T0_MS + 6_000)      # before the fix: recover raised, every time
    bodies = sorted(m.body for m in g.deliveries(TOPICS))
    assert bodies == [b"a1", b"a2", b"a3", b"b1", b"b2", b"t1"]
    assert svc.stats.bad_markers == 1


def test_crafted_progress_record_does_not_replay_old_deliveries(tmp_path):
    g = Group(tmp_path)
    _deliver_some(g, [b"a%d" % i for i in range(6)], 1)
    _run_leader(g, "a", T0_MS + 2_000)
    last = decode_marker(g.queue(PROGRESS_TOPIC, MARKER_QUEUE)[-1].body)
    # a crafted marker: the level range rewound to 0, targets at the queues' current ends
    crafted = Window(last.step + 1, {lvl: (0, b) for lvl, (_, b) in last.levels.items()}, last.timer,
                     [(t, q, g.store.max_offset(t, q)) for t, q, _ in last.targets])
    g.store.append(marker_message(crafted, now_ms=g.now_ms))
    assert decode_marker(encode_marker(crafted)).levels[1] == (0, 6)
    _deliver_some(g, [b"b1", b"b2", b"b3"], 1)
    svc = _run_leader(g, "b", T0_MS + 5_000)
    bodies = [m.body for m in g.deliveries(TOPICS)]
    assert sorted(bodies) == sorted([b"a%d" % i for i in range(6)] + [b"b1", b"b2", b"b3"]), "replayed or skipped"
    assert svc.stats.bad_markers == 1


# --- through the broker: the send is refused --------------------------------------------------------


def test_broker_refuses_a_delayed_send_whose_delivery_could_not_be_stored(tmp_path):
    from test_timer_broker import OneBroker

    async def main():
        async with OneBroker(tmp_path, DelayConfig(poll_interval_ms=50)) as one:
            await one.topic("Delayed")
            async with Producer(one.layout.namesrv_addr, "PID_poison") as producer:
                big = {"X": "p" * 32_600}         # fits the record; the delivery would not
                with pytest.raises(ClientError, match=f"{codes.MESSAGE_ILLEGAL}|MESSAGE_ILLEGAL"):
                    await producer.send(OutgoingMessage("Delayed", b"poison", properties=big, delay_ms=300))
                sent_ms = time.time_ns() // 1_000_000
                await producer.send(OutgoingMessage("Delayed", b"ok", properties={"X": "p" * 30_000},
                                                    delay_ms=300))
            deadline = time.monotonic() + 10
            service = one.delay.service
            while service.stats.delivered < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert service.stats.delivered == 1 and service.stats.failures == 0
            assert time.time_ns() // 1_000_000 >= sent_ms + 300
            assert one.broker.group.store.max_offset(TIMER_TOPIC, 0) == 1
            # one already in the store (written by another broker): dead-lettered, the others go on
            group = one.broker.group
            now_ms = group.store.clock_ms()
            await group.put(rewrite_for_delay(poison_timer_at(now_ms + 200, now_ms), now_ms=now_ms))
            await producer_send(one, OutgoingMessage("Delayed", b"after", delay_ms=400))
            deadline = time.monotonic() + 10
            while (service.stats.delivered < 2 or service.stats.dead_lettered < 1) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert service.stats.delivered == 2 and service.stats.dead_lettered == 1
            assert group.store.max_offset(DEAD_LETTER_TOPIC, 0) == 1
            assert group.store.topic_config(DEAD_LETTER_TOPIC) is not None     # so it can be pulled
            from mqbench.broker.server.handlers_admin import runtime_info
            info = runtime_info(one.broker.ctx)
            assert info["delayDeadLettered"] == "1" and info["delayDelivered"] == "2"
    asyncio.run(asyncio.wait_for(main(), 60))
