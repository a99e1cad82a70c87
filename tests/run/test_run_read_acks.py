"""The run producer counts the deliveries of one read in one step (``PooledSend.delivered_together``
-> ``ProducerDriver._acked_sends``): one clock reading for the read, and per message the same
figures as one by one (publish latency from its own send time, measured-phase and on-time counts
by its own intended time, bytes, deliveries owed, delayed or not), the window released once per
send. Against values computed here from the messages, not from the driver's code."""
from __future__ import annotations

import asyncio

from mqbench.harness.histograms import VALUE_US_MAX
from mqbench.run.pooled_send import PooledSend
from mqbench.run.producer_driver import ProducerDriver

MS = 1_000_000


def _spec():
    return {"namesrv": "127.0.0.1:1", "run_id": "t1", "duration_ms": 10_000, "warmup_ms": 1000, "window_ms": 1000,
            "progress_ms": 100, "subscriptions": [("g-all", "order_events", "*"), ("g-two", "order_events", "*"),
                                                  ("g-pay", "order_payment_timeout", "*")],
            "source": "orders", "seed": 2, "rate": 20.0, "codec": "none", "compress_over_bytes": 4096,
            "batch_msgs": {"order_events": 1, "order_payment_timeout": 1}, "delay": True, "in_flight_max": 100_000,
            "send_timeout_ms": 3000, "group": "PID_t", "topics": ["order_events", "order_payment_timeout"],
            "worker_index": 0, "workers": 1}


class _Producer:
    _heartbeat_addrs: set = set()


def _read(count: int, acked_ns: int):
    readings: list[int] = []

    def clock_ns() -> int:
        readings.append(acked_ns)
        return acked_ns

    driver = ProducerDriver(_spec(), lambda _doc: None, clock_ns=clock_ns)
    driver.begin(0)
    messages = [entry[0] for entry in driver._templates.values()]
    sends = []
    for k in range(count):
        send = PooledSend()
        send.producer, send.addr = _Producer(), "127.0.0.1:1"
        # intended times from the warm-up to past the end; sent 0-5 ms later; one sent "after" the read
        send.driver, send.message = driver, messages[k % len(messages)]
        send.intended = (k * 137 % 12_000) * MS
        send.sent_ns = send.intended + (k % 6) * MS if k != 3 else acked_ns + 5 * MS
        sends.append(send)
    driver.totals.in_flight = count + 2
    readings.clear()
    return driver, sends, readings


def test_a_reads_deliveries_are_counted_in_one_step_each_with_its_own_figures():
    acked_ns = 10_500 * MS       # in the measured phase's last window (1-11 s)
    driver, sends, readings = _read(40, acked_ns)

    async def answer():
        driver._window_free = asyncio.get_running_loop().create_future()
        PooledSend.answered_together(sends)
        return driver._window_free.done()

    assert asyncio.run(answer())                       # the waiting sender is woken
    assert readings == [acked_ns]                      # one clock reading for the read
    totals = driver.totals
    assert totals.in_flight == 2 and totals.acked == 40 and totals.errors == 0
    assert totals.acked_bytes == sum(len(s.message.body) for s in sends)
    measured = [s for s in sends if 1000 * MS <= s.intended < 11_000 * MS]
    assert 0 < len(measured) < 40 and totals.measured_acked == totals.measured_acked_on_time == len(measured)
    owed = [driver.deliveries.count(s.message.topic, s.message.tags) for s in sends]
    assert totals.expected_deliveries == sum(o for s, o in zip(sends, owed) if not s.message.delay_ms)
    assert totals.delayed_acked == sum(1 for s in sends if s.message.delay_ms) > 0
    assert totals.delayed_deliveries_owed == sum(o for s, o in zip(sends, owed) if s.message.delay_ms)
    assert driver._interval_values == [min(max(1, (acked_ns - s.sent_ns) // 1000), VALUE_US_MAX) for s in sends]
    window = driver.metrics.windows[9]                 # 10-11 s: every ack of this read
    assert window.counters["published"] == 40
    assert window.histograms["publish_latency"].get_total_count() == 40


def test_the_same_counts_one_by_one_and_none_after_the_driver_gave_up():
    acked_ns = 12_500 * MS       # past the phase's end and its 1-s grace: acknowledged, not on time
    together, sends, _ = _read(25, acked_ns)
    PooledSend.answered_together(sends)
    alone, sends_alone, _ = _read(25, acked_ns)
    for send in sends_alone:
        send.delivered()
    assert together.totals.as_dict() == alone.totals.as_dict()
    assert together.totals.measured_acked > 0 and together.totals.measured_acked_on_time == 0
    assert together._interval_values == alone._interval_values
    quit_, sends_quit, _ = _read(5, acked_ns)
    quit_._gave_up = True
    PooledSend.answered_together(sends_quit)
    assert quit_.totals.acked == 0 and quit_.totals.in_flight == 7


def test_a_pooled_messages_deliveries_owed_are_counted_before_the_clock_starts():
    """The pool is sized to the run, so its messages are rarely sent twice: what each owes is
    counted once in ``prepare`` with the rest of its send, not looked up per ack."""
    driver, sends, _readings = _read(30, 10_500 * MS)
    calls: list[tuple] = []
    count = driver.deliveries.count
    driver.deliveries.count = lambda topic, tags: calls.append((topic, tags)) or count(topic, tags)
    PooledSend.answered_together(sends)
    assert calls == [] and driver.totals.acked == 30
