"""The producer worker: sends one worker's share of the workload open loop and measures it.

Contract of ``ProducerDriver(spec, report).run()``:

* Messages go at their intended times (``schedule.Schedule``); a send is *started* then
  (``Producer.submit``: the request frame is queued on the connection, no Task per message) and
  its answer comes back as a callback, so a slow broker never slows the schedule (open loop).
  Failed attempts are retried as ``Producer.send`` retries them (route refresh, another broker
  name: a Raft failover is followed); a send that fails after its retries counts as an error.
* At most ``in_flight_max`` requests (a batch is one) are unacknowledged at once. When the window
  is full the sender waits, and that wait is recorded as publish delay (actual send time minus
  intended time) of every message that waited: a slow broker shows up as growing publish delay,
  and end-to-end latency (from the intended time, see ``stamps``) includes it.
* Batching (``batch_msgs > 1`` for a topic): undelayed messages of a topic are collected and go as
  one SEND_BATCH_MESSAGE when ``batch_msgs`` are collected or ``linger_ms`` (default
  ``LINGER_MS_DEFAULT``, 1 s) after the first one's intended time, whichever is first (a sender
  behind schedule first takes the messages already due, so it still sends full batches); their
  publish delay includes the wait for the batch to fill. One batch fills at a time per topic and
  goes to one queue; the producer's round-robin moves to the next queue with the next batch, so
  every stored batch holds up to ``batch_msgs`` messages of one queue. A batch reaches its size
  whenever this worker's share of the topic's rate is at least ``batch_msgs`` per linger (64 per
  second at the default); below that it holds what the linger collected, and the result's
  ``batch_achieved`` (read from the stores) shows it.
  Delayed messages always go alone (RocketMQ refuses delayed messages in a batch).
* Compression (``mqbench.client.Producer``): bodies of at least ``compress_over_bytes`` with the
  cell's codec; with ``batch_compression`` each whole batch body too (the batch envelope).
* ``--delay on``: a delayed message carries its DELAY level, or TIMER_DELIVER_MS for an arbitrary
  delay; its requested delivery time (send time + delay) goes in ``mqbDeliverNs``.
* At a rate, a generated profile's messages are drawn before the clock starts (``pool``: the
  worker's share of the run, at most ``POOL_MSGS_MAX``, sent in order and then again), each with
  its property text prebuilt (``pipeline.PropertyTemplate``: only the intended time, delivery
  time and id are filled in per send, the same bytes as the general path), so generating
  messages does not count as the load generator's per-message cost nor slow its sends.
* Every ``progress_ms`` it reports a ``progress`` document (cumulative counters and an encoded
  publish-latency histogram of the messages acknowledged since the previous report); at the end a
  ``done`` document with its ``RunMetrics``. Totals count, of the messages intended in the measured
  phase, those sent, acknowledged, and acknowledged by ``ack_grace_ms`` (default 1 s) after the
  phase ended (the cell verdict's count: ``harness.verdict``). Control: ``{"op": "rate", "rate_per_s", "from_ns"}``
  (a max-rate search) and ``{"op": "stop"}`` (end early, still waiting for acks).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

from mqbench.client import OutgoingMessage, Producer
from mqbench.client.pipeline import PropertyTemplate
from mqbench.errors import MqbenchError
from mqbench.harness.histograms import VALUE_US_MAX, encode_histogram, new_histogram, record_values
from mqbench.harness.metrics import RunMetrics
from mqbench.run.consumer_driver import Deliveries, spec_credentials
from mqbench.run.pool import Pool, pool_size
from mqbench.run.pooled_send import PooledSend, property_template
from mqbench.run.probes import with_own_cpu
from mqbench.run.schedule import Schedule
from mqbench.run.stamps import stamp
from mqbench.workloads.message import TraceMessage
from mqbench.workloads.source import is_trace_path, open_workload

log = logging.getLogger(__name__)
NS_PER_MS = 1_000_000
# Long enough for a batch of 64 to fill at 64 msgs/s per topic and producer worker, short enough
# that a batch never holds a message longer than an application batching by hand would.
LINGER_MS_DEFAULT = 1000
# A sender behind schedule (after the OS or a long callback held it up) sends what is due in turns
# of at most this long, or this many sends, then lets the loop run: each frame is written and each
# answer taken at the end of a turn, so a turn of 64 sends (the old slice, 13-26 ms at the worker's
# loaded cost per message) held every ack in flight and its own first frames that long, and showed
# as publish latency. A yield costs a loop turn and usually a write (tens of µs): 1 ms / 16 sends
# cut the producer's turns of >= 10 ms CPU at 2,400 msgs/s from 213-266 to 3-23 per run but looked
# costlier in producer CPU (noisy, load 15-20); 2 ms / 32 sends: 76-149 -> 16-45.
SEND_TURN_NS = 2 * NS_PER_MS
SEND_TURN_SENDS_MAX = 32
# The shortest sleep of the sender: the event loop's timer resolution. asyncio's own loop already
# waits at least this long for any shorter timer (its selector rounds the timeout up to a whole
# millisecond), but uvloop runs a timer under 0.5 ms as call_soon, so at a few thousand msgs/s the
# sender spun through about two empty loop turns per message (a future, a handle and a poll each),
# waiting for the next intended time. What is due when it wakes goes in that turn (one write), each
# message still stamped and judged by its own intended time: its lateness shows as publish delay.
# 2 ms, not the 1 ms resolution: each wake-up costs the sender a timer, a future, a write and the
# reads of the answers it caused (the broker answers each read of sends at once); below capacity
# that per-wake cost was most of the producer's CPU per message (#15: 53.7 µs at 6,000 msgs/s,
# 95.5 at 2,000, against ~33 at capacity). Twice the sends per wake-up halve it, for at most one
# more millisecond of publish delay (mean +0.5 ms), recorded against each message's intended time.
SLEEP_MIN_NS = 2 * NS_PER_MS


@dataclass
class ProducerTotals:
    """Cumulative counts of one producer worker, whole run (warm-up included)."""

    intended: int = 0  # messages taken from the schedule
    sent: int = 0  # messages whose send started
    acked: int = 0
    errors: int = 0
    acked_bytes: int = 0
    expected_deliveries: int = 0  # consumer deliveries owed for acknowledged undelayed messages
    delayed_acked: int = 0
    delayed_deliveries_owed: int = 0  # consumer deliveries owed for acknowledged delayed messages
    in_flight: int = 0  # requests awaiting an ack
    publish_backlog: int = 0  # due but not sent yet (schedule overdue + batches being filled)
    measured_sent: int = 0  # messages intended in the measured phase whose send started
    measured_acked: int = 0  # messages intended in the measured phase acknowledged (by whenever)
    measured_acked_on_time: int = 0  # of those, acknowledged by ack_grace_ms after the phase ended

    def as_dict(self) -> dict:
        return dict(vars(self))


class _Acked(NamedTuple):
    """A message of a batch or of the general path, as ``_acked_sends`` counts it (what a
    ``PooledSend`` holds of its message)."""

    intended: int
    message: TraceMessage
    sent_ns: int


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ProducerDriver:
    def __init__(self, spec: dict, report: Callable[[dict], None], *,
                 clock_ns: Callable[[], int] = time.monotonic_ns, wall_ms: Callable[[], int] | None = None):
        self.spec = spec
        self.report = with_own_cpu(report, clock_ns)   # every document carries this worker's CPU (probes)
        self.clock_ns = clock_ns
        # called once start-up is over; a worker process sets it to gc_pauses.settle_after_startup
        self.settle: Callable[[], object] = lambda: None
        self._workload: tuple | None = None     # prepare()'s (workload, messages, own)
        self.wall_ms = wall_ms or (lambda: time.time_ns() // NS_PER_MS)
        self.totals = ProducerTotals()
        self.deliveries = Deliveries(spec["subscriptions"])
        self.batch_sizes: dict[str, int] = dict(spec["batch_msgs"])
        self.linger_ns = int(spec.get("linger_ms", LINGER_MS_DEFAULT)) * NS_PER_MS
        self.ack_grace_ns = int(spec.get("ack_grace_ms", 1000)) * NS_PER_MS
        self.in_flight_max = int(spec.get("in_flight_max", 1000))
        self._window_free: asyncio.Future | None = None   # set when a send finds the window full
        self.interval_latency = new_histogram()
        self._interval_values: list[int] = []   # recorded in interval_latency in bulk, at each report
        self.stopping = False
        self.last_error: str | None = None
        self._buffers: dict[str, list[tuple[int, TraceMessage]]] = {}
        self._replies: set[asyncio.Future] = set()   # sends not answered yet (those with a future)
        self._gave_up = False      # ``_wait_acks`` gave up the unanswered sends: later answers are ignored
        self._waiter: asyncio.Future | None = None   # the send loop's sleep; a control message ends it
        self._started = asyncio.Event()
        self._pending_control: list[dict] = []
        self.metrics: RunMetrics | None = None
        self.schedule: Schedule | None = None
        self.rate_share = float(spec.get("topic_share", 1.0))   # this worker's topics' share of the total rate
        self._pooled = False    # the messages come from a pool (prepare): the same objects again and again
        self._templates: dict[int, tuple[TraceMessage, PropertyTemplate | None]] = {}   # id -> pooled message's
        self._owed: dict[int, tuple[TraceMessage, int]] = {}   # id -> pooled message, deliveries it owes

    def begin(self, start_ns: int) -> None:
        """The run's clock starts: build the metrics and the schedule on ``start_ns``."""
        spec = self.spec
        self.start_ns = int(start_ns)
        workload, messages, own = self._workload or self.prepare()
        self.metrics = RunMetrics(self.start_ns, duration_ms=spec["duration_ms"], warmup_ms=spec["warmup_ms"],
                                  window_ms=spec["window_ms"])
        self.end_ns = self.metrics.end_ns
        rate = spec.get("rate")
        if isinstance(rate, (int, float)) and not isinstance(rate, bool):
            rate = rate * self.rate_share
        self.schedule = Schedule(messages, self.start_ns, self.end_ns, rate=rate,
                                 worker_index=spec["worker_index"], workers=spec["workers"],
                                 strip_delays=not spec["delay"], own_messages=own,
                                 endless=workload.trace is None)  # a generated profile never runs out
        self._started.set()

    def prepare(self) -> tuple:
        """Open the workload and draw its first message, before the run's clock starts: what a
        workload builds first (a catalogue of products) is then start-up, and the worker's
        collector settles after it (``settle``), not in the measured run. Returns (workload,
        messages, own) for ``begin``."""
        spec = self.spec
        # At a rate, each worker generates its own part of a profile (schedule module doc); a trace's
        # rows and as-recorded times are shared out from the one stream. A worker placed with its
        # topics' consumers (``mqbench.ray.placement``, spec ``topic_share``) sends only its topics'
        # messages, at their share of the total rate, from its part of all producers (spec ``part``).
        part = tuple(spec.get("part") or (spec["worker_index"], spec["workers"]))
        topics = set(spec["topics"]) if "topic_share" in spec else None
        own = spec.get("rate") is not None and (part[1] > 1 or topics is not None) \
            and not is_trace_path(Path(spec["source"]))
        paced = spec.get("rate") is not None and not is_trace_path(Path(spec["source"]))
        # at a rate the pacer gives the times: the profile's own arrival times are not drawn
        workload = open_workload(spec["source"], spec["seed"], part=part if own else (0, 1), timed=not paced)
        messages = workload.messages if topics is None else (m for m in workload.messages if m.topic in topics)
        if paced:
            # drawn now, not per send: generating a message costs more than sending it (``pool``)
            rate = spec.get("rate")
            share = rate * self.rate_share / part[1] if isinstance(rate, (int, float)) else rate
            if not spec["delay"]:     # stripped once in the pool, not per send (the schedule's copy)
                messages = (replace(m, delay_ms=0, delay_level=0) if m.delay_ms or m.delay_level else m
                            for m in messages)
            pool = Pool(messages, pool_size(share, spec["warmup_ms"], spec["duration_ms"]))
            self._pooled = True
            if "run_id" in spec:                # each one's property text, now too
                for message in pool.messages:
                    self._property_template(message)
            # and the deliveries each one owes (what ``_acked_sends`` counts per ack): a pool sized
            # to the run is never sent twice, so filling this at the first ack missed every time
            count = self.deliveries.count
            for message in pool.messages:
                self._owed[id(message)] = (message, count(message.topic, message.tags))
            messages = iter(pool)
        else:
            first = next(messages, None)
            messages = itertools.chain(() if first is None else (first,), messages)
        self.settle()   # start-up is over (a worker process: short, rare collector pauses, gc_pauses)
        self._workload = (workload, messages, own)
        return self._workload

    # -- control ---------------------------------------------------------------------------------

    def control(self, message: dict) -> None:
        op = message.get("op")
        if op == "start":
            self.begin(message["start_ns"])
        elif self.schedule is None and op == "rate":
            self._pending_control.append(message)
        elif op == "rate":
            self.schedule.set_rate(message["rate_per_s"] * self.rate_share, max(int(message["from_ns"]), self.clock_ns()))
        elif op == "stop":
            self.stopping = True
            self._started.set()  # a stop before the start ends the worker at once
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- the send loop -----------------------------------------------------------------------------

    async def run(self) -> dict:
        spec = self.spec
        codec = spec["codec"]      # the cell's Codec, pickled to this worker (Codec.__reduce__)
        batch_codec = codec if spec.get("batch_compression") and not codec.is_none else None
        producer = Producer(spec["namesrv"], spec["group"], compression=codec, batch_compression=batch_codec,
                            compress_over_bytes=spec["compress_over_bytes"], send_timeout_ms=spec["send_timeout_ms"],
                            retries=spec.get("retries", 2), credentials=spec_credentials(spec))
        await producer.start()
        progress = None
        try:
            for topic in spec["topics"]:
                await producer.routes.get(topic)  # fails here, naming the topic, when it has no route
            self.prepare()
            self.report({"type": "ready", "role": "producer"})
            await self._started.wait()
            if self.schedule is None:
                return {"type": "done", "role": "producer", "metrics": None, "totals": self.totals.as_dict(),
                        "last_error": None}
            for message in self._pending_control:
                self.control(message)
            progress = asyncio.get_running_loop().create_task(self._progress_loop())
            await self._send_loop(producer)
            # What the schedule wanted sent by the end but the sender had not reached: the publish
            # backlog at the end, reported, never sent after the run (the measured phase is over).
            self.totals.publish_backlog = 0 if self.stopping else self.schedule.overdue(self.end_ns)
            for topic in list(self._buffers):
                await self._flush(producer, topic)
            await self._wait_acks(spec["send_timeout_ms"] * (spec.get("retries", 2) + 1) / 1000 + 2)
        finally:
            if progress is not None:
                progress.cancel()
                await asyncio.gather(progress, return_exceptions=True)
            await producer.close()
        return {"type": "done", "role": "producer", "metrics": self.metrics.to_dict() if self.metrics else None, "totals": self.totals.as_dict(),
                "last_error": self.last_error}

    async def _send_loop(self, producer: Producer) -> None:
        sends = 0
        turn_ns = self.clock_ns()
        while not self.stopping:
            now = self.clock_ns()
            if now >= self.end_ns:
                return
            if sends and (sends >= SEND_TURN_SENDS_MAX or now - turn_ns >= SEND_TURN_NS):
                await asyncio.sleep(0)   # end the turn (SEND_TURN_NS): frames go out, answers come in
                sends, turn_ns = 0, self.clock_ns()
                continue
            took = self.schedule.take_due(now)    # one call per message when on time
            if took is not None:
                intended, message = took
                self.totals.intended += 1
                if not message.delay_ms and self.batch_sizes.get(message.topic, 1) > 1:
                    buffer = self._buffers.setdefault(message.topic, [])
                    buffer.append((intended, message))
                    if len(buffer) >= self.batch_sizes[message.topic]:
                        await self._flush(producer, message.topic)
                elif self.totals.in_flight >= self.in_flight_max:
                    await self._window_wait()
                    self._send_one(producer, intended, message, self.clock_ns())
                else:
                    # sent now: ``now`` was read just before, in this step (no await since)
                    self._send_one(producer, intended, message, now)
                sends += 1
                continue
            intended = self.schedule.peek_ns()
            if intended is None or intended > now:
                # nothing due: batches whose linger is up go now (when behind schedule, the due
                # messages fill the batches first, so a late sender still sends full batches)
                if self._buffers:     # (a coroutine per wake-up otherwise: the unbatched path has none)
                    await self._flush_lingering(producer, now)
                if intended is None and not self.schedule.paused:
                    return
                wake_ns = self._next_linger_deadline()
                if intended is not None:
                    wake_ns = intended if wake_ns is None else min(wake_ns, intended)
                if wake_ns is None or wake_ns > now:
                    wait_ns = 20 * NS_PER_MS if wake_ns is None else \
                        max(min(wake_ns - now, 50 * NS_PER_MS), SLEEP_MIN_NS)
                    await self._sleep(wait_ns / 1e9)
                    sends, turn_ns = 0, self.clock_ns()
                continue
            intended, message = self.schedule.take()
            self.totals.intended += 1
            size = self.batch_sizes.get(message.topic, 1)
            if size > 1 and not message.delay_ms:
                buffer = self._buffers.setdefault(message.topic, [])
                buffer.append((intended, message))
                if len(buffer) >= size:
                    await self._flush(producer, message.topic)
            else:
                if self.totals.in_flight >= self.in_flight_max:
                    await self._window_wait()
                self._send_one(producer, intended, message, self.clock_ns())
            sends += 1

    async def _sleep(self, seconds: float) -> None:
        """Until ``seconds`` passed or a control message came: a timer and a future, no Task (the
        loop sleeps before almost every message at a paced rate)."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _next_linger_deadline(self) -> int | None:
        if not self._buffers:     # no batch filling (a _flush pops its topic): the unbatched path
            return None
        firsts = [buffer[0][0] for buffer in self._buffers.values() if buffer]
        return min(firsts) + self.linger_ns if firsts else None

    async def _flush_lingering(self, producer: Producer, now: int) -> None:
        for topic, buffer in list(self._buffers.items()):
            if buffer and buffer[0][0] + self.linger_ns <= now:
                await self._flush(producer, topic)

    async def _flush(self, producer: Producer, topic: str) -> None:
        items = self._buffers.pop(topic, [])
        if items:
            await self._dispatch(producer, items)

    async def _dispatch(self, producer: Producer, items: list[tuple[int, TraceMessage]]) -> None:
        if self.totals.in_flight >= self.in_flight_max:
            await self._window_wait()   # a full window is where a slow broker turns into publish delay
        self._dispatch_now(producer, items)

    def _send_one(self, producer: Producer, intended: int, message: TraceMessage, sent_ns: int) -> None:
        """Start the send of one message at ``sent_ns`` (the window has room): a pooled message
        with a prebuilt property template goes as a ``PooledSend`` record (``Producer.submit_to``), with
        one wall-clock reading for its id and born timestamp; anything else as ``_dispatch_now``."""
        entry = self._templates.get(id(message)) if self._pooled else None
        template = None
        if self._pooled:        # the pool's messages: their templates were built in prepare
            template = entry[1] if entry is not None else self._property_template(message)
        if template is None:      # the general path (``_dispatch_now`` finds no template either)
            self._dispatch_now(producer, [(intended, message)], sent_ns)
            return
        metrics, totals = self.metrics, self.totals
        metrics.record_send(intended, sent_ns)
        if metrics.measure_start_ns <= intended < self.end_ns:
            totals.measured_sent += 1
        totals.sent += 1
        totals.in_flight += 1
        try:
            born_ms = producer.clock_ms()
            uniq_key = producer.ids.next_at(born_ms)
            send = PooledSend()       # no future: the channel hands the answer to it
            send.driver, send.intended, send.message, send.sent_ns, send.template = \
                self, intended, message, sent_ns, template
            # the template is filled in the frame's step (one C call: SendFrameTemplate.frame_filled)
            values = (intended, uniq_key) if len(template.slots) == 2 else \
                (intended, sent_ns + message.delay_ms * NS_PER_MS, uniq_key)
            if producer.submit_to(send, message.topic, message.body, template, uniq_key, born_ms, values):
                return
            items = [(intended, message)]
            reply = producer.submit_text(message.topic, message.body, template.fill(send.values(uniq_key)),
                                         uniq_key, on_done=partial(self._answered, items, sent_ns))
        except MqbenchError as exc:
            self._failed([(intended, message)], exc)
            return
        self._replies.add(reply)

    def _dispatch_now(self, producer: Producer, items: list[tuple[int, TraceMessage]],
                      sent_ns: int | None = None) -> None:
        """Start the send of ``items`` now (the window has room); ``sent_ns``: the clock's reading
        for it when the caller just read it."""
        if sent_ns is None:
            sent_ns = self.clock_ns()
        if len(items) == 1 and self._pooled:
            intended, message = items[0]
            entry = self._templates.get(id(message))
            if (entry[1] if entry is not None else self._property_template(message)) is not None:
                self._send_one(producer, intended, message, sent_ns)
                return
        self.metrics.record_sends(sent_ns, [intended for intended, _message in items])
        for intended, _message in items:
            if self.metrics.measure_start_ns <= intended < self.end_ns:
                self.totals.measured_sent += 1
        self.totals.sent += len(items)
        self.totals.in_flight += 1
        # no Task per send: the producer queues the frame; the answer comes back in the loop turn
        # that read it (a ``PooledSend`` record, or the on_done callback), so the ack is timed there
        answered = partial(self._answered, items, sent_ns)
        try:
            if len(items) > 1:
                reply = producer.submit_batch([self._outgoing(m, i, sent_ns) for i, m in items], answered)
            else:
                intended, message = items[0]
                reply = producer.submit(self._outgoing(message, intended, sent_ns), answered)
        except MqbenchError as exc:
            self._failed(items, exc)
            return
        self._replies.add(reply)

    def _property_template(self, message: TraceMessage) -> PropertyTemplate | None:
        """``pooled_send.property_template`` of a pooled message, kept in ``_templates``."""
        return property_template(self._templates, message, self.spec["run_id"])

    async def _window_wait(self) -> None:
        while self.totals.in_flight >= self.in_flight_max:
            self._window_free = asyncio.get_running_loop().create_future()
            await self._window_free

    def _outgoing(self, message: TraceMessage, intended_ns: int, sent_ns: int) -> OutgoingMessage:
        deliver_ns = sent_ns + message.delay_ms * NS_PER_MS if message.delay_ms else None
        properties = stamp(message.properties, self.spec["run_id"], intended_ns, deliver_ns)
        out = OutgoingMessage(message.topic, message.body, tags=message.tags or None,
                              keys=[message.key] if message.key else [], properties=properties)
        if message.delay_level:
            out.delay_level = message.delay_level
        elif message.delay_ms:
            out.deliver_at_ms = self.wall_ms() + message.delay_ms
        return out

    def _answered(self, items: list[tuple[int, TraceMessage]], sent_ns: int, reply: asyncio.Future) -> None:
        self._replies.discard(reply)
        if reply.cancelled():     # given up unanswered at the end (``_wait_acks``): neither acked nor failed
            self._window_release()
            return
        failure = reply.exception()
        if failure is not None:
            self._failed(items, failure)
            return
        self._acked(items, sent_ns)

    def _acked(self, items: list[tuple[int, TraceMessage]], sent_ns: int) -> None:
        """One request's messages (a batch, or a send of the general path) acknowledged now."""
        self._acked_sends([_Acked(intended, message, sent_ns) for intended, message in items], 1)

    def _acked_sends(self, sends: Sequence[PooledSend | _Acked], requests: int) -> None:
        """The one home of the ack counts: the messages of ``sends`` (each with its intended ns,
        message and sent ns), of ``requests`` requests whose answers were just read (the pooled
        sends of one read, one request each; or one batch), acknowledged at one clock reading.
        Each message's publish latency, measured-phase counts, bytes and owed deliveries are its
        own; the totals are added once per call."""
        if self._gave_up:
            return
        acked_ns = self.clock_ns()
        totals, metrics = self.totals, self.metrics
        measure_from_ns, end_ns = metrics.measure_start_ns, self.end_ns
        interval, owed_by_id, pooled = self._interval_values, self._owed, self._pooled
        sent_ns_all: list[int] = []
        measured = acked_bytes = expected = delayed = delayed_owed = 0
        for send in sends:
            message, sent_ns = send.message, send.sent_ns
            size = len(message.body)
            if measure_from_ns <= send.intended < end_ns:
                measured += 1
            sent_ns_all.append(sent_ns)
            latency_us = (acked_ns - sent_ns) // 1000
            interval.append(latency_us if 0 < latency_us <= VALUE_US_MAX else min(max(1, latency_us), VALUE_US_MAX))
            acked_bytes += size
            entry = owed_by_id.get(id(message)) if pooled else None
            if entry is not None and entry[0] is message:
                owed = entry[1]
            else:                # kept with the message itself, so its id is not reused meanwhile
                owed = self.deliveries.count(message.topic, message.tags)
                if pooled:
                    owed_by_id[id(message)] = (message, owed)
            if message.delay_ms:
                delayed += 1
                delayed_owed += owed
            else:
                expected += owed
        metrics.record_acks(acked_ns, sent_ns_all, acked_bytes)
        totals.acked += len(sends)
        totals.acked_bytes += acked_bytes
        totals.measured_acked += measured
        if acked_ns <= end_ns + self.ack_grace_ns:
            totals.measured_acked_on_time += measured
        totals.expected_deliveries += expected
        totals.delayed_acked += delayed
        totals.delayed_deliveries_owed += delayed_owed
        totals.in_flight -= requests         # _window_release, inline
        waiter = self._window_free
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _failed(self, items: list[tuple[int, TraceMessage]], exc: BaseException) -> None:
        failed_ns = self.clock_ns()
        self.metrics.record_publish_error(failed_ns, len(items))
        self.totals.errors += len(items)
        self.last_error = f"{type(exc).__name__}: {exc}"
        log.debug("send failed: %s", exc)
        self._window_release()

    def _window_release(self) -> None:
        self.totals.in_flight -= 1
        waiter = self._window_free
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _in_measured_phase(self, intended_ns: int) -> bool:
        """Intended in the measured phase: the messages a cell's verdict counts as offered."""
        return self.metrics.measure_start_ns <= intended_ns < self.metrics.end_ns

    async def _wait_acks(self, timeout_s: float) -> None:
        """Until every send is answered or ``timeout_s``; the unanswered ones are then given up
        (never counted as acknowledged, nor failed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.totals.in_flight > 0 and loop.time() < deadline:
            waiter = self._window_free = loop.create_future()    # each answer wakes it (_window_release)
            timer = loop.call_later(deadline - loop.time(), _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
        self._gave_up = True
        for reply in list(self._replies):
            reply.cancel()
        await asyncio.sleep(0)   # their callbacks run
        self.totals.in_flight = 0

    # -- progress ----------------------------------------------------------------------------------

    def progress(self) -> dict:
        now = self.clock_ns()
        buffered = sum(len(b) for b in self._buffers.values())
        self.totals.publish_backlog = self.schedule.overdue(now) + buffered
        values, self._interval_values = self._interval_values, []
        record_values(self.interval_latency, values)
        histogram, self.interval_latency = self.interval_latency, new_histogram()
        return {"type": "progress", "role": "producer", "t_ns": now, "totals": self.totals.as_dict(),
                "rate_per_s": self.schedule.total_rate_per_s,
                "latency_histogram": encode_histogram(histogram) if histogram.get_total_count() else None}

    async def _progress_loop(self) -> None:
        interval_s = self.spec.get("progress_ms", 500) / 1000
        while True:
            await asyncio.sleep(interval_s)
            self.report(self.progress())
