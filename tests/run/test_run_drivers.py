"""The drivers in one event loop against the real name server and the scripted broker.

The slow-broker test is the issue's: the pacer keeps the intended schedule when the broker is slow;
what the sender could not keep up with shows as growing publish delay, end-to-end latency includes
it, and the publish latency itself stays the broker's answer time.

Time limits are judged against a reference pacer in the same loop (``loop_noise_probe``): what a
starved machine makes every paced sender suffer is added to a limit, nothing else is.
"""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from mqbench.broker.formats.compression import decode_client_batch
from mqbench.harness.metrics import RunMetrics
from loop_noise_probe import NoiseProbe
from run_scripted_cluster import scripted

S = 1_000_000_000
MS = 1_000_000


def spec(namesrv, **overrides):
    base = {"namesrv": namesrv, "run_id": "t1", "duration_ms": 1500, "warmup_ms": 0, "window_ms": 500,
            "progress_ms": 100, "subscriptions": [("g-all", "order_events", "*"), ("g-all", "order_payment_timeout", "*")],
            "source": "orders", "seed": 2, "rate": 200.0, "codec": "none", "compress_over_bytes": 4096,
            "batch_msgs": {"order_events": 1, "order_payment_timeout": 1}, "delay": False,
            "in_flight_max": 1000, "send_timeout_ms": 3000, "group": "PID_t", "topics": ["order_events"],
            "worker_index": 0, "workers": 1, "consume_from": "first"}
    base.update(overrides)
    return base


async def drive(slow_ms: int = 0, fail_sends=(), **overrides):
    from mqbench.run.consumer_driver import ConsumerDriver
    from mqbench.run.producer_driver import ProducerDriver

    async with scripted.Cluster() as cluster:
        broker = await cluster.add_broker("broker-a", topics=("order_events", "order_payment_timeout"))
        broker.fail_sends = list(fail_sends)      # the first sends' answers (then the usual ones)
        if slow_ms:
            original = broker.on_send

            async def slow(cmd, channel):
                await asyncio.sleep(slow_ms / 1000)
                return await original(cmd, channel)

            broker.server.handlers[scripted.codes.SEND_MESSAGE_V2] = slow
            broker.server.handlers[scripted.codes.SEND_BATCH_MESSAGE] = slow
        reports = []
        consumer = ConsumerDriver(spec(cluster.namesrv_addr, **overrides), reports.append)
        producer = ProducerDriver(spec(cluster.namesrv_addr, **overrides), reports.append)
        consumer_task = asyncio.create_task(consumer.run())
        producer_task = asyncio.create_task(producer.run())
        while sum(1 for r in reports if r["type"] == "ready") < 2:
            await asyncio.sleep(0.01)
        start = time.monotonic_ns() + 50 * MS
        consumer.control({"op": "start", "start_ns": start})
        producer.control({"op": "start", "start_ns": start})
        phase = spec(cluster.namesrv_addr, **overrides)
        probe = NoiseProbe(start, period_ms=1000 / phase["rate"])   # an ideal pacer at the same rate
        produced = await producer_task
        await probe.stop()
        probe.end_ns = start + phase["duration_ms"] * MS
        deadline = time.monotonic() + 5
        while consumer.totals.consumed_undelayed < produced["totals"]["expected_deliveries"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        consumer.control({"op": "stop"})
        consumed = await consumer_task
        return produced, consumed, reports, broker, probe


def test_on_a_fast_broker_every_message_goes_on_time_and_arrives(run_loop):
    produced, consumed, reports, broker, probe = run_loop(drive())
    totals = produced["totals"]
    # What a starved machine (CI at load 18) does to any pacer in this loop, from the reference
    # pacer: its lateness and the slots it had left at the phase end. ~0 on a quiet machine.
    late_ms, left_at_end = probe.late_ms_p50(probe.end_ns), probe.backlog_at(probe.end_ns)
    noise = probe.summary(probe.end_ns)
    # A stall of the machine at the very end can leave the last messages unsent: they are then the
    # publish backlog at the end, never silently dropped.
    assert totals["intended"] + totals["publish_backlog"] == 300 and totals["publish_backlog"] <= 10 + left_at_end, noise
    assert totals["acked"] == totals["intended"] and totals["errors"] == 0
    assert consumed["totals"]["consumed"] == totals["expected_deliveries"] == totals["acked"]
    agg = RunMetrics.from_dict(produced["metrics"]).aggregates()
    # Acks that land after the measured phase are not counted in it (events_after_end).
    assert totals["acked"] - 10 - left_at_end <= agg["published"] <= totals["acked"], noise
    assert agg["publish_delay_ms_p50"] < 20 + late_ms, noise  # on time, up to scheduling noise
    consumer_agg = RunMetrics.from_dict(consumed["metrics"]).aggregates()
    assert consumer_agg["e2e_latency_count"] + consumer_agg["events_after_end"] == totals["acked"]
    assert consumer_agg["e2e_latency_ms_p50"] < 100 + late_ms, noise
    assert any(r["type"] == "progress" and r["role"] == "producer" for r in reports)
    assert len(broker.stored("order_events")) + len(broker.stored("order_payment_timeout")) == totals["acked"]


def test_every_worker_document_carries_the_workers_own_cpu_so_the_split_needs_no_proc_of_the_parent(run_loop):
    # #20: on Ray the parent cannot read a worker's /proc; each worker reports its own process CPU
    # (probes.with_own_cpu) in ready/progress documents (done: the worker's report, workers._worker)
    from mqbench.run.probes import WorkerCpu, cpu_seconds

    before_s, before_ns = cpu_seconds([os.getpid()]), time.monotonic_ns()
    _produced, _consumed, reports, _broker, _probe = run_loop(drive(duration_ms=400, rate=100.0))
    after_s, after_ns = cpu_seconds([os.getpid()]), time.monotonic_ns()
    split = WorkerCpu()
    for role in ("producer", "consumer"):
        documents = [r for r in reports if r["role"] == role and r["type"] in ("ready", "progress")]
        assert len(documents) >= 3 and all(isinstance(r["cpu_s"], float) for r in documents)
        times = [r["cpu_t_ns"] for r in documents]
        seconds = [r["cpu_s"] for r in documents]
        assert times == sorted(times) and before_ns <= times[0] and times[-1] <= after_ns
        assert seconds == sorted(seconds) and before_s <= seconds[0] and seconds[-1] <= after_s
        for r in documents:
            split.observe(role, role, r)
    first = min(r["cpu_t_ns"] for r in reports if r["type"] == "progress")
    last = max(r["cpu_t_ns"] for r in reports if r["type"] == "progress")
    assert split.role_s("producer", last) > split.role_s("producer", first) > 0


def test_a_slow_broker_shows_as_publish_delay_and_latency_includes_it(run_loop):
    # 40 ms per answer and 4 requests in flight: at most ~100 msgs/s against a 200 msgs/s schedule.
    produced, consumed, _reports, _broker, probe = run_loop(drive(slow_ms=40, in_flight_max=4))
    totals = produced["totals"]
    merged = RunMetrics.from_dict(produced["metrics"])
    merged.merge(RunMetrics.from_dict(consumed["metrics"]))
    agg = merged.aggregates()
    # The schedule was kept: every message taken went at or after its intended time, and the
    # sender fell behind instead of thinning the load.
    assert totals["intended"] == totals["sent"] and totals["sent"] < 300
    assert totals["sent"] + totals["publish_backlog"] == 300  # the rest is the backlog at the end
    assert totals["acked"] == totals["sent"]
    assert agg["publish_delay_ms_max"] > 300  # grows through the run
    series = merged.window_series()
    assert series[-1]["publish_delay_ms_p50"] > series[0]["publish_delay_ms_p50"] * 2
    # the broker's answer time, not the queueing (plus what a starved machine adds to any answer)
    assert 35 <= agg["publish_latency_ms_p50"] < 200 + probe.late_ms_p50(probe.end_ns), probe.summary(probe.end_ns)
    assert agg["e2e_latency_ms_p50"] >= agg["publish_delay_ms_p50"]  # measured from the intended time


def test_batches_fill_or_linger_and_delayed_messages_go_alone(run_loop):
    produced, consumed, _reports, broker, _probe = run_loop(drive(
        delay=True, batch_msgs={"order_events": 8, "order_payment_timeout": 8}, linger_ms=20))
    totals = produced["totals"]
    assert totals["acked"] == totals["intended"] == 300 - totals["publish_backlog"] and totals["delayed_acked"] > 0
    batch_requests = [r for r in broker.requests if r.code == scripted.codes.SEND_BATCH_MESSAGE]
    single_requests = [r for r in broker.requests if r.code == scripted.codes.SEND_MESSAGE_V2]
    assert batch_requests and len(single_requests) >= totals["delayed_acked"]
    stored = broker.stored("order_payment_timeout")
    assert stored and all(m.properties.get("DELAY") == "16" for m in stored)
    # every send and every ack of a batch is an event of the producer's metrics (record_sends/acks)
    sent_metrics = RunMetrics.from_dict(produced["metrics"])
    p_agg = sent_metrics.aggregates()
    assert p_agg["publish_delay_count"] + p_agg["published"] + sent_metrics.events_in_warmup \
        + sent_metrics.events_after_end == totals["sent"] + totals["acked"]
    assert p_agg["publish_latency_count"] == p_agg["published"] > 0
    # The scripted broker ignores delays, so every delayed message arrives early: the signed error
    # is negative, about the 30-minute delay.
    agg = RunMetrics.from_dict(consumed["metrics"]).aggregates()
    assert consumed["totals"]["consumed_delayed"] == totals["delayed_acked"]
    assert agg["delayed_consumed"] == agg["early_deliveries"] > 0
    assert agg["delay_error_ms_p50"] == pytest.approx(-1_800_000, rel=0.01)


@pytest.fixture
def run_loop():
    def runner(coro, timeout_s=30):
        return asyncio.run(asyncio.wait_for(coro, timeout_s))
    return runner


def test_batches_reach_their_size_at_the_default_linger(run_loop):
    # Finding 2 of issue 16: at a rate a 64-message batch fills in well under a second, the 5 ms
    # linger sent batches of one or two. With the default linger every batch but the last is full.
    produced, _consumed, _reports, broker, _probe = run_loop(drive(
        batch_msgs={"order_events": 64, "order_payment_timeout": 1}, rate=300.0))
    assert produced["totals"]["errors"] == 0
    sizes = [len(decode_client_batch(r.body, 0).items) for r in broker.requests
             if r.code == scripted.codes.SEND_BATCH_MESSAGE]
    assert sizes and sum(sizes) == len(broker.stored("order_events"))
    assert sorted(sizes, reverse=True)[:-1] == [64] * (len(sizes) - 1), sizes  # the last goes at the end


def test_a_pooled_send_answered_busy_is_retried_with_its_own_properties(run_loop):
    """A pooled send (``PooledSend``) answered SYSTEM_BUSY goes again with the same property text
    (``PooledSend.text``: its intended time and id), and counts once as acknowledged."""
    busy = [scripted.codes.SYSTEM_BUSY] * 2     # fewer than a send's 3 attempts: never an error
    produced, _consumed, _reports, broker, _probe = run_loop(drive(fail_sends=busy, duration_ms=150))
    totals = produced["totals"]
    assert totals["acked"] == totals["sent"] == totals["intended"] > 3 and totals["errors"] == 0, totals
    sends = [cmd for cmd in broker.requests if cmd.code == scripted.codes.SEND_MESSAGE_V2]
    assert not broker.fail_sends and len(sends) == totals["sent"] + len(busy)
    stored = broker.stored("order_events") + broker.stored("order_payment_timeout")
    assert len(stored) == totals["acked"]
    keys = [m.properties["UNIQ_KEY"] for m in stored]
    assert len(set(keys)) == len(keys)
    first_sent = [scripted.headers.send_header(cmd).properties for cmd in sends[:len(busy)]]
    by_key = {m.properties["UNIQ_KEY"]: m for m in stored}
    for text in first_sent:        # each refused send is stored once, with the text it first had
        refused = scripted.rec.decode_properties(text)
        assert by_key[refused["UNIQ_KEY"]].properties == refused
