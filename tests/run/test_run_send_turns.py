"""The run's sender, behind schedule, sends what is due in short turns and lets the loop run between
them (``producer_driver.SEND_TURN_NS`` / ``SEND_TURN_SENDS_MAX``): frames are written and answers
taken between turns, so the sender's own catch-up never holds acks in flight (publish latency).

Not a timed test: the loop's turns are counted by a callback that re-schedules itself, and each
send records the turn it happened in.
"""
from __future__ import annotations

import asyncio
import time

from mqbench.run import producer_driver
from mqbench.run.producer_driver import ProducerDriver

MS = 1_000_000


def _spec(**overrides):
    base = {"namesrv": "127.0.0.1:1", "run_id": "t1", "duration_ms": 60_000, "warmup_ms": 0, "window_ms": 1000,
            "progress_ms": 100, "subscriptions": [("g-all", "order_events", "*")], "source": "orders", "seed": 2,
            "rate": 2000.0, "codec": "none", "compress_over_bytes": 4096,
            "batch_msgs": {"order_events": 1, "order_payment_timeout": 1}, "delay": False, "in_flight_max": 100_000,
            "send_timeout_ms": 3000, "group": "PID_t", "topics": ["order_events"], "worker_index": 0, "workers": 1}
    base.update(overrides)
    return base


class _CountingProducer:
    """Stands in for ``Producer``: records in which loop turn each send started, never answers."""

    def __init__(self, turn: list[int], limit: int, driver: ProducerDriver):
        self.turn, self.limit, self.driver = turn, limit, driver
        self.turns: list[int] = []

    def submit(self, _msg, _on_done=None):
        self.turns.append(self.turn[0])
        if len(self.turns) >= self.limit:
            self.driver.stopping = True
        return asyncio.get_running_loop().create_future()

    def submit_text(self, _topic, _body, _text, _uniq_key, flag=0, on_done=None):
        return self.submit(None, on_done)

    def submit_to(self, _receiver, _topic, _body, _wire, _uniq_key, _born_ms=None, _values=None):
        self.submit(None)
        return True

    clock_ms = staticmethod(lambda: 0)   # Producer.clock_ms: the pooled path reads it once per send

    class ids:       # Producer.ids: the pooled path takes each message's id itself, at that reading
        next = staticmethod(lambda: "0" * 32)
        next_at = staticmethod(lambda _now_ms: "0" * 32)


def _sends_per_turn(clock_ns=time.monotonic_ns) -> list[int]:
    async def main():
        loop = asyncio.get_running_loop()
        turn = [0]

        def tick():
            turn[0] += 1
            loop.call_soon(tick)

        driver = ProducerDriver(_spec(), lambda _doc: None, clock_ns=clock_ns)
        driver.begin(clock_ns() - 1_000 * MS)   # a second behind: ~2,000 sends due at once
        producer = _CountingProducer(turn, 400, driver)
        loop.call_soon(tick)
        await driver._send_loop(producer)
        return producer.turns

    turns = asyncio.run(main())
    counts: dict[int, int] = {}
    for t in turns:
        counts[t] = counts.get(t, 0) + 1
    return list(counts.values())


def test_a_late_sender_yields_between_short_turns():
    per_turn = _sends_per_turn()
    assert sum(per_turn) == 400
    assert max(per_turn) <= producer_driver.SEND_TURN_SENDS_MAX   # was 64 sends in one turn
    assert len(per_turn) >= 400 // producer_driver.SEND_TURN_SENDS_MAX


def test_a_turn_also_ends_when_its_time_is_up():
    # a clock that moves 0.4 ms per reading: the time budget (1 ms) ends a turn before the count does
    now = [time.monotonic_ns()]

    def clock():
        now[0] += 400_000
        return now[0]

    per_turn = _sends_per_turn(clock)
    assert max(per_turn) < producer_driver.SEND_TURN_SENDS_MAX
    assert max(per_turn) * 400_000 <= producer_driver.SEND_TURN_NS + 3 * 400_000


def test_an_on_time_sender_wakes_for_several_sends_each_time():
    """Below capacity the sender sleeps at least ``SLEEP_MIN_NS`` (2 ms) between wake-ups, so at
    2,000 msgs/s each wake-up carries about four sends (each still stamped with its own intended
    time): a wake-up's timer, write and answer reads are paid per few messages, not per one or
    two (1 ms). A fake clock that moves only when the sender sleeps: no real time involved."""
    now = [1_000 * MS]
    slept: list[int] = []

    async def main():
        driver = ProducerDriver(_spec(rate=2000.0, duration_ms=150), lambda _doc: None, clock_ns=lambda: now[0])
        driver.begin(now[0])

        async def sleep(seconds: float) -> None:
            slept.append(round(seconds * 1e9))
            now[0] += round(seconds * 1e9)
            await asyncio.sleep(0)

        driver._sleep = sleep
        producer = _CountingProducer([0], 250, driver)
        await driver._send_loop(producer)
        return producer.turns

    sends = len(asyncio.run(main()))
    assert sends == 250
    assert min(slept) >= producer_driver.SLEEP_MIN_NS
    assert len(slept) <= sends // 3, (len(slept), sends)        # 1 ms sleeps: ~125 wake-ups for 250 sends
