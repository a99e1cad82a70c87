"""The consumer worker: the workload's consumer groups, measuring end-to-end latency and delay error.

Contract of ``ConsumerDriver(spec, report).run()``:

* One ``mqbench.client.Consumer`` per consumer group of the workload (clustering mode); with
  several consumer workers each runs every group, so the group's queues are split between them
  exactly as RocketMQ splits them between instances.
* It reports ``ready`` once every group holds its queues and knows where each starts, so the
  parent starts the producers only after that (with ``consume_from="last"`` a message sent before
  would be missed).
* For every received message of this run (``stamps.read_stamps``; other traffic is counted as
  ``foreign`` and ignored): undelayed ones record end-to-end latency from the intended send time,
  delayed ones the signed delay error ``receive time - requested delivery time``.
* Consumers acknowledge on receipt: the profiles' ``processing_ms`` is not simulated, so consume
  rate and backlog show what the broker delivers, not a slow application; unless the scenario says
  otherwise (below).
* ``spec["consume"]``: ``pull`` (``Consumer``, client rebalance) or ``pop`` (``PopConsumer``:
  each received batch is acked after its processing; ``invisible_time_ms``).
* The consumer scenario (``orchestrator.ConsumerScenario``): ``members`` consumers per group in
  this worker; ``processing_us`` per message before the ack (member 0 of each group takes 10x with
  ``slow``); ``churn_interval_ms`` > 0: every interval one member (in turn) is closed and started
  again 1 s later, a rolling restart of the group, until the measured phase ends (the drain runs
  with every member up). Every delivery also records whether it is a
  redelivery (reconsumeTimes > 0), a duplicate (a message id the group already received in this
  worker within the last ``DUPLICATE_WINDOW_IDS`` ids, see ``RecentIds``; run one consumer worker
  for exact counts) and the time since the previous delivery
  from its queue (``RunMetrics.record_consumes``, once per received batch: ``take``). Duplicates do not count as consumed in the totals
  (backlogs stay right).
* Progress every ``progress_ms``; ``{"op": "stop"}`` closes the consumers (committing offsets) and
  ends with a ``done`` document holding its ``RunMetrics``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from mqbench.broker.formats.headers import parse_tag_expression
from mqbench.broker.formats.properties import PROPERTY_UNIQ_KEY
from mqbench.client import Consumer, PopConsumer
from mqbench.errors import MqbenchError
from mqbench.harness.metrics import RunMetrics
from mqbench.client.messages import ReceivedMessage, properties_of
from mqbench.run.probes import with_own_cpu
from mqbench.run.stamps import read_stamps

log = logging.getLogger(__name__)
READY_WAIT_S = 15.0
#: how long a pull consumer's PULL_MESSAGE waits on the broker for a message (RocketMQ's 15 s; was 2 s,
#: which re-polled every idle queue every 2 s: in orders at 60 msgs/s 70 of 877 pulls). A run still ends
#: at once (close cancels the suspended pulls) and follows a failover at its next rebalance
#: (``Consumer.rebalance`` moves a queue's pull to the new read address). ``spec["suspend_timeout_ms"]``
#: overrides it
PULL_SUSPEND_MS = 15_000
#: a POP consumer's ``pollTime``: kept at 2 s because ``PopConsumer.close`` waits for the pop under
#: way (up to the poll time) so that nothing it pops is left invisible: longer would hold the run's end
POP_POLL_MS = 2_000
SLOW_FACTOR = 10
RESTART_DOWN_S = 1.0


@dataclass
class Member:
    """One consumer of a group in this worker (replaced by a fresh one on every churn restart)."""

    group: str
    topics: dict[str, str]
    index: int
    consumer: Consumer | PopConsumer | None = None
    restarts: int = 0


def spec_credentials(spec: dict):
    """The ACL credentials a worker signs every request with (``spec["credentials"]``: [accessKey,
    secretKey], set when the run's embedded cluster checks an ACL), or None."""
    pair = spec.get("credentials")
    if not pair:
        return None
    from mqbench.broker.formats.signature import Credentials

    return Credentials(str(pair[0]), str(pair[1]))


class Deliveries:
    """How many consumer deliveries one message owes: the groups whose subscription matches it.

    ``subscriptions`` is ``[(group, topic, tag expression), ...]``; the count of a message of
    ``topic`` with ``tags`` is the number of groups subscribed to the topic with ``*`` or with an
    expression that names the tag.
    """

    def __init__(self, subscriptions: list[tuple[str, str, str]]):
        self.by_topic: dict[str, list[set[str] | None]] = {}
        for _group, topic, expression in subscriptions:
            self.by_topic.setdefault(topic, []).append(parse_tag_expression(expression))
        self._cache: dict[tuple[str, str], int] = {}

    def count(self, topic: str, tags: str) -> int:
        key = (topic, tags)
        cached = self._cache.get(key)
        if cached is None:
            cached = sum(1 for wanted in self.by_topic.get(topic, ()) if wanted is None or tags in wanted)
            self._cache[key] = cached
        return cached


def group_subscriptions(subscriptions: list[tuple[str, str, str]]) -> dict[str, dict[str, str]]:
    """group -> {topic: expression}."""
    out: dict[str, dict[str, str]] = {}
    for group, topic, expression in subscriptions:
        out.setdefault(group, {})[topic] = expression
    return out


#: ids one consumer group's duplicate detection remembers at least (module doc, ``RecentIds``): at
#: the run's capacity on a 2-core machine (about 3,200 msgs/s on raft3, 13,000 on single) 80 s
#: and 20 s of messages, longer than what makes duplicates (a rebalance replays from the offset
#: committed every 5 s, a send retried within its timeout, a POP message back after its 10 s
#: invisible time); at most twice as many are held (about 110 bytes each)
DUPLICATE_WINDOW_IDS = 262_144


class RecentIds:
    """The message ids a consumer group received lately, for duplicate detection in bounded memory:
    two generations of at most ``window`` ids each; when the newer is full it becomes the older and
    the older is dropped. So an id is remembered at least until ``window`` more ids have been
    received, and at most ``2 * window`` ids are held (an unbounded set grew with the run)."""

    __slots__ = ("window", "_new", "_old")

    def __init__(self, window: int = DUPLICATE_WINDOW_IDS) -> None:
        self.window = max(1, window)
        self._new: set[str] = set()
        self._old: set[str] = set()

    def seen_before(self, msg_id: str) -> bool:
        """Whether ``msg_id`` was received within the window; it counts as received now."""
        return bool(self.seen_among((msg_id,)))

    def seen_among(self, msg_ids: Iterable[str]) -> list[int]:
        """``seen_before`` of each of ``msg_ids`` in turn (a received batch's): the positions of
        those seen before (usually none)."""
        found: list[int] = []
        new, old, window = self._new, self._old, self.window
        for position, msg_id in enumerate(msg_ids):
            if msg_id in new:
                found.append(position)
                continue
            if msg_id in old:
                found.append(position)
            if len(new) >= window:
                self._old, self._new = old, new = new, set()
            new.add(msg_id)
        return found

    def __len__(self) -> int:
        return len(self._new) + len(self._old)


@dataclass
class ConsumerTotals:
    consumed: int = 0
    consumed_undelayed: int = 0
    consumed_delayed: int = 0
    consumed_bytes: int = 0
    foreign: int = 0  # messages on the topics that this run did not send

    def as_dict(self) -> dict:
        return dict(vars(self))


class ConsumerDriver:
    def __init__(self, spec: dict, report: Callable[[dict], None], *, clock_ns: Callable[[], int] = time.monotonic_ns):
        self.spec = spec
        self.report = with_own_cpu(report, clock_ns)   # every document carries this worker's CPU (probes)
        self.clock_ns = clock_ns
        # called once start-up is over; a worker process sets it to gc_pauses.settle_after_startup
        self.settle: Callable[[], object] = lambda: None
        self.metrics: RunMetrics | None = None
        self._started = asyncio.Event()
        self.totals = ConsumerTotals()
        self.stopping = asyncio.Event()
        self.members: list[Member] = []
        self.close_error: str | None = None
        self._seen: dict[str, RecentIds] = {}
        self._last_ns: dict[tuple, int] = {}
        self._closing: set[asyncio.Task] = set()
        self._acks: set[asyncio.Task] = set()

    @property
    def consumers(self) -> list:
        return [m.consumer for m in self.members if m.consumer is not None]

    def _new_consumer(self, group: str, topics: dict[str, str]) -> Consumer | PopConsumer:
        spec = self.spec
        if spec.get("consume", "pull") == "pop":
            consumer: Consumer | PopConsumer = PopConsumer(
                spec["namesrv"], group, invisible_time_ms=spec.get("invisible_time_ms", 10_000),
                init_mode=spec.get("consume_from", "last"), pop_batch_size=32, buffer_messages_max=32,
                poll_time_ms=spec.get("pop_poll_ms", POP_POLL_MS), pop_error_backoff_ms=200,
                credentials=spec_credentials(spec))
        else:
            consumer = Consumer(spec["namesrv"], group, consume_from=spec.get("consume_from", "last"),
                                pull_batch_size=spec.get("pull_batch_size", 64),
                                suspend_timeout_ms=spec.get("suspend_timeout_ms", PULL_SUSPEND_MS),
                                rebalance_interval_ms=spec.get("rebalance_interval_ms", 5000),
                                pull_error_backoff_ms=200, credentials=spec_credentials(spec))
        for topic, expression in sorted(topics.items()):
            consumer.subscribe(topic, expression)
        return consumer

    def begin(self, start_ns: int) -> None:
        spec = self.spec
        self.metrics = RunMetrics(int(start_ns), duration_ms=spec["duration_ms"], warmup_ms=spec["warmup_ms"],
                                  window_ms=spec["window_ms"])
        self._started.set()

    def control(self, message: dict) -> None:
        if message.get("op") == "start":
            self.begin(message["start_ns"])
        elif message.get("op") == "stop":
            self.stopping.set()

    async def run(self) -> dict:
        spec = self.spec
        for group, topics in sorted(group_subscriptions(spec["subscriptions"]).items()):
            for index in range(max(1, spec.get("members", 1))):
                self.members.append(Member(group, topics, index, self._new_consumer(group, topics)))
        loops = []
        try:
            for consumer in self.consumers:
                await consumer.start()
            await self._wait_ready()
            self.settle()   # start-up is over (a worker process: short, rare collector pauses, gc_pauses)
            self.report({"type": "ready", "role": "consumer"})
            stop_wait = asyncio.get_running_loop().create_task(self.stopping.wait())
            await asyncio.wait([stop_wait, asyncio.get_running_loop().create_task(self._started.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if self.metrics is None:
                self.begin(self.clock_ns())  # stopped before the start: an empty but valid document
            loop = asyncio.get_running_loop()
            loops = [loop.create_task(self._receive_loop(m)) for m in self.members]
            loops.append(loop.create_task(self._progress_loop()))
            if spec.get("churn_interval_ms", 0) > 0:
                loops.append(loop.create_task(self._churn_loop(spec["churn_interval_ms"])))
            await self.stopping.wait()
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await asyncio.gather(*self._acks, return_exceptions=True)
            await asyncio.gather(*self._closing, return_exceptions=True)
            consumers = self.consumers     # closed together: each may wait for a long poll to answer
            results = await asyncio.gather(*(c.close() for c in consumers), return_exceptions=True)
            for consumer, outcome in zip(consumers, results):
                if isinstance(outcome, MqbenchError):   # offsets not committed: the figures still stand
                    self.close_error = f"closing consumer group {consumer.group}: {outcome}"
                    log.warning("%s", self.close_error)
                elif isinstance(outcome, BaseException):
                    raise outcome
        return {"type": "done", "role": "consumer", "metrics": self.metrics.to_dict() if self.metrics else None,
                "totals": self.totals.as_dict(), "close_error": self.close_error}

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_WAIT_S
        while time.monotonic() < deadline:
            pops = [c for c in self.consumers if isinstance(c, PopConsumer)]
            if pops and all(c.polled_loops >= c.loops for c in pops):
                return
            states = [s for c in self.consumers if isinstance(c, Consumer) for s in c.assigned.values()]
            if states and all(s.next_offset >= 0 for s in states):
                return
            await asyncio.sleep(0.05)
        # Not every queue is assigned (e.g. more consumer workers than queues): go on; the
        # consumer's own rebalance keeps running, and warm-up absorbs the start.
        log.info("consumers not fully assigned after %.0f s", READY_WAIT_S)

    async def _receive_loop(self, member: Member) -> None:
        processing_s = self.spec.get("processing_us", 0) / 1e6
        if self.spec.get("slow") and member.index == 0:
            processing_s *= SLOW_FACTOR
        seen = self._seen.setdefault(member.group, RecentIds())
        while True:
            consumer = member.consumer
            if consumer is None:                    # restarting (churn)
                await asyncio.sleep(0.05)
                continue
            batch = await consumer.receive(64, timeout_ms=200)
            if not batch:
                continue
            self.take(batch, self.clock_ns(), member.group, seen)
            if processing_s:
                await asyncio.sleep(processing_s * len(batch))
            if isinstance(consumer, PopConsumer):    # acked in the background, as ackAsync: the next
                task = asyncio.get_running_loop().create_task(self._ack(consumer, batch))   # receive goes on
                self._acks.add(task)
                task.add_done_callback(self._acks.discard)

    def take(self, batch: list[ReceivedMessage], now: int, group: str, seen: RecentIds) -> None:
        """Count the messages of one received ``batch`` (received at ``now`` by ``group``): the
        totals, the duplicate ids (``seen``), each queue's last delivery and the metrics, with the
        per-message steps in a few loops over the batch instead of calls per message (what one
        ``read_stamp``, ``seen_before`` and ``record_consume`` per message gave)."""
        totals = self.totals
        properties = properties_of(batch)       # decoded once, read for the stamp and the id
        stamps = read_stamps(properties, self.spec["run_id"])
        borns: list[int] = []
        dues: list[int] = []
        ids: list[str] = []
        kept: list[tuple[int, int | None]] = []        # (size, deliver_ns) of the messages of this run
        queues = set()
        size_bytes = redeliveries = 0
        for message, props, stamp in zip(batch, properties, stamps):
            if stamp is None:
                totals.foreign += 1
                continue
            deliver_ns = stamp[1]
            if deliver_ns is None:
                borns.append(stamp[0])
            else:
                dues.append(deliver_ns)
            size = len(message.body)
            size_bytes += size
            kept.append((size, deliver_ns))
            # ReceivedMessage.msg_id from the dict at hand: UNIQ_KEY, else the offset message id
            ids.append(props.get(PROPERTY_UNIQ_KEY) or message.offset_msg_id)
            if message.reconsume_times > 0:
                redeliveries += 1
            queues.add((group, message.topic, message.broker_name, message.queue_id))
        if not kept:
            return
        # a queue's later messages in the batch have a gap of 0 (received at the same ``now``)
        gap_max_ns = None
        last_ns = self._last_ns
        for queue in queues:
            last = last_ns.get(queue)
            if last is not None and (gap_max_ns is None or now - last > gap_max_ns):
                gap_max_ns = now - last
            last_ns[queue] = now
        duplicates = seen.seen_among(ids)
        if self.metrics is not None:
            self.metrics.record_consumes(now, borns, size_bytes, dues, redeliveries=redeliveries,
                                         duplicates=len(duplicates), gap_max_ns=gap_max_ns)
        undelayed, delayed = len(borns), len(dues)
        for position in duplicates:          # not consumed in the totals
            size, deliver_ns = kept[position]
            size_bytes -= size
            if deliver_ns is None:
                undelayed -= 1
            else:
                delayed -= 1
        totals.consumed += undelayed + delayed
        totals.consumed_bytes += size_bytes
        totals.consumed_undelayed += undelayed
        totals.consumed_delayed += delayed

    async def _ack(self, consumer: PopConsumer, batch: list) -> None:
        try:
            await consumer.ack(batch)
        except MqbenchError as exc:      # not acked: it comes back after its invisible time
            log.warning("ack of %d messages failed: %s", len(batch), exc)

    async def _churn_loop(self, interval_ms: int) -> None:
        """A rolling restart: every ``interval_ms`` the next member is closed, and started afresh
        ``RESTART_DOWN_S`` later."""
        turn = 0
        while True:
            await asyncio.sleep(interval_ms / 1000)
            if self.metrics is not None and self.clock_ns() >= self.metrics.end_ns:
                return          # the drain after the measured phase runs with every member up
            member = self.members[turn % len(self.members)]
            turn += 1
            old, member.consumer = member.consumer, None
            if old is not None:    # a close of its own, awaited by run() if this loop is cancelled first
                closing = asyncio.get_running_loop().create_task(old.close())
                self._closing.add(closing)
                try:
                    await asyncio.shield(closing)
                except MqbenchError as exc:
                    log.warning("closing a churned consumer of %s: %s", member.group, exc)
            await asyncio.sleep(RESTART_DOWN_S)
            member.consumer = self._new_consumer(member.group, member.topics)
            await member.consumer.start()
            member.restarts += 1

    def progress(self) -> dict:
        return {"type": "progress", "role": "consumer", "t_ns": self.clock_ns(), "totals": self.totals.as_dict()}

    async def _progress_loop(self) -> None:
        interval_s = self.spec.get("progress_ms", 500) / 1000
        while True:
            await asyncio.sleep(interval_s)
            self.report(self.progress())
