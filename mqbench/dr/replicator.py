"""``Replicator``: scheme C's asynchronous cross-cluster copy of messages and consumer offsets.

It pulls every queue of the given topics from the source cluster and sends each message to the
target cluster, keeping queues one to one where it can (the i-th source queue, in RocketMQ's
queue order, goes to the i-th target write queue modulo their number), so per-queue order
survives. Every copy is remembered in an ``OffsetMap`` (source queue offset -> target queue offset).
Every ``offset_sync_interval_ms`` it reads each listed consumer group's committed offsets in the
source, translates them through the map and writes them to the target (UPDATE_CONSUMER_OFFSET),
never moving a target offset backwards.

Contract:

* ``source_dial`` maps a source broker address (as the source name server gives it) to the address
  to connect to: the drills route the replicator's cross-room traffic through a delay proxy.
* At least once: a message is recorded as copied only after the target acknowledged it, and a
  send that fails is retried (after ``retry_backoff_ms``) until it succeeds or the replicator is
  closed; nothing is skipped. A restart resumes from the map saved at ``state_path`` (written
  atomically every ``persist_interval_ms`` and on close), so copies made after the last save are
  made again (duplicates, never gaps). Without ``state_path`` a new replicator starts at
  ``start`` ("first": each queue's min offset, "last": its max offset).
* Asynchronous: the source acknowledged its producers long before the copy; ``lag()`` says how
  many acknowledged messages the target does not have yet. That is scheme C's loss window.
* What a copy carries: body, tags, keys, flag and user properties. RocketMQ's own properties of
  the stored original (delay and timer settings, which already fired in the source; the client
  id; inner-batch and transaction markers) are dropped; the copy gets a new client id and two
  properties naming its origin: ``MQBENCH_ORIGIN_MSG_ID`` (the original client id) and
  ``MQBENCH_ORIGIN`` (``broker:queue:offset`` in the source).
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mqbench.broker.formats import codes, headers
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.store.atomic import read_with_backup, write_atomic
from mqbench.broker.formats.topics import validate_group, validate_topic
from mqbench.client import ClientError, MessageQueue, OutgoingMessage, Producer
from mqbench.client.connections import TRANSPORT_ERRORS
from mqbench.client.messages import ReceivedMessage, decode_pulled
from mqbench.client.producer import ClientBase
from mqbench.dr.offsets import OffsetMap, QueueKey
from mqbench.errors import CorruptDataError, UserError
from mqbench.broker.formats.properties import (
    PROPERTY_ARRIVE_TIME,
    PROPERTY_CLUSTER,
    PROPERTY_CONSUME_START_TIME,
    PROPERTY_CORRELATION_ID,
    PROPERTY_DELAY,
    PROPERTY_DUP_INFO,
    PROPERTY_FIRST_POP_TIME,
    PROPERTY_INNER_BASE,
    PROPERTY_INNER_NUM,
    PROPERTY_KEYS,
    PROPERTY_MAX_OFFSET,
    PROPERTY_MAX_RECONSUME_TIMES,
    PROPERTY_MIN_OFFSET,
    PROPERTY_MQBENCH_ORIGIN,
    PROPERTY_MQBENCH_ORIGIN_MSG_ID,
    PROPERTY_MSG_REGION,
    PROPERTY_ORIGIN_MESSAGE_ID,
    PROPERTY_PGROUP,
    PROPERTY_POP_CK,
    PROPERTY_POP_CK_OFFSET,
    PROPERTY_PUSH_REPLY_TIME,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_RECONSUME_TIME,
    PROPERTY_REPLY_TO_CLIENT,
    PROPERTY_RETRY_TOPIC,
    PROPERTY_START_DELIVER_TIME,
    PROPERTY_TAGS,
    PROPERTY_TIMER_DELAY_MS,
    PROPERTY_TIMER_DELAY_SEC,
    PROPERTY_TIMER_DELIVER_MS,
    PROPERTY_TIMER_DEL_UNIQKEY,
    PROPERTY_TIMER_DEQUEUE_MS,
    PROPERTY_TIMER_ENQUEUE_MS,
    PROPERTY_TIMER_OUT_MS,
    PROPERTY_TIMER_ROLL_TIMES,
    PROPERTY_TRACE_ON,
    PROPERTY_TRAN_MSG,
    PROPERTY_TRAN_PREPARED_QUEUE_OFFSET,
    PROPERTY_TTL,
    PROPERTY_UNIQ_KEY,
    PROPERTY_WAIT,
)

log = logging.getLogger(__name__)

# RocketMQ's own message properties (MessageConst) that describe the stored original, not the message.
SYSTEM_PROPERTIES = frozenset({
    PROPERTY_TAGS, PROPERTY_KEYS, PROPERTY_UNIQ_KEY, PROPERTY_WAIT, PROPERTY_DELAY, PROPERTY_TIMER_DELIVER_MS, PROPERTY_TIMER_DELAY_MS,
    PROPERTY_TIMER_DELAY_SEC, PROPERTY_TIMER_OUT_MS, PROPERTY_TIMER_ENQUEUE_MS, PROPERTY_TIMER_DEQUEUE_MS, PROPERTY_TIMER_ROLL_TIMES, PROPERTY_TIMER_DEL_UNIQKEY,
    PROPERTY_REAL_TOPIC, PROPERTY_REAL_QID, PROPERTY_INNER_NUM, PROPERTY_INNER_BASE, PROPERTY_MIN_OFFSET, PROPERTY_MAX_OFFSET, PROPERTY_CONSUME_START_TIME,
    PROPERTY_RETRY_TOPIC, PROPERTY_ORIGIN_MESSAGE_ID, PROPERTY_TRAN_MSG, PROPERTY_TRAN_PREPARED_QUEUE_OFFSET, PROPERTY_PGROUP, PROPERTY_MSG_REGION,
    PROPERTY_TRACE_ON, PROPERTY_START_DELIVER_TIME, PROPERTY_CLUSTER, PROPERTY_DUP_INFO, PROPERTY_RECONSUME_TIME, PROPERTY_MAX_RECONSUME_TIMES,
    PROPERTY_CORRELATION_ID, PROPERTY_REPLY_TO_CLIENT, PROPERTY_TTL, PROPERTY_ARRIVE_TIME, PROPERTY_PUSH_REPLY_TIME, PROPERTY_POP_CK, PROPERTY_POP_CK_OFFSET,
    PROPERTY_FIRST_POP_TIME, "SHARDING_KEY", PROPERTY_MQBENCH_ORIGIN_MSG_ID, PROPERTY_MQBENCH_ORIGIN})

_wanted_queue: contextvars.ContextVar[MessageQueue | None] = contextvars.ContextVar("wanted_queue", default=None)


class _TargetProducer(Producer):
    """The target-side producer: sends to the queue the calling pull loop asks for (a context
    variable, so concurrent loops do not mix), falling back to round robin when that queue's
    broker just failed or is not in the route."""

    def _select(self, route, avoid):
        wanted = _wanted_queue.get()
        if wanted is not None and wanted.broker_name != avoid and wanted in route.write_queues():
            return wanted
        return super()._select(route, avoid)


@dataclass
class ReplicatorStats:
    copied: int = 0  # messages copied (acknowledged by the target) by this replicator
    send_failures: int = 0  # copies the target refused after the producer's own retries (retried)
    pull_failures: int = 0
    offsets_written: int = 0  # target consumer offsets moved forward
    offset_sync_failures: int = 0
    last_copy_store_timestamp_ms: int = 0  # source store time of the newest copied message


class Replicator:
    def __init__(self, source_namesrv: str, target_namesrv: str, topics: list[str], groups: list[str] = (), *,
                 start: str = "first", state_path: str | Path | None = None, pull_batch_size: int = 32,
                 suspend_timeout_ms: int = 1000, offset_sync_interval_ms: int = 1000,
                 persist_interval_ms: int = 1000, retry_backoff_ms: int = 200, request_timeout_ms: int = 3000,
                 name: str = "mqbench-replicator", clock_ms: Callable[[], int] | None = None,
                 source_dial: Callable[[str], str] | None = None) -> None:
        if not topics:
            raise UserError("the replicator needs at least one topic")
        for topic in topics:
            validate_topic(topic)
        for group in groups:
            validate_group(group)
        validate_group(name)
        if start not in ("first", "last"):
            raise UserError(f"start must be 'first' or 'last', not {start!r}")
        self.topics, self.groups, self.start_at, self.name = list(topics), list(groups), start, name
        self.pull_batch_size = pull_batch_size
        self.suspend_timeout_ms = suspend_timeout_ms
        self.offset_sync_interval_ms = offset_sync_interval_ms
        self.persist_interval_ms = persist_interval_ms
        self.retry_backoff_ms = retry_backoff_ms
        self.request_timeout_ms = request_timeout_ms
        self.state_path = Path(state_path) if state_path is not None else None
        kwargs = {"request_timeout_ms": request_timeout_ms}
        if clock_ms is not None:
            kwargs["clock_ms"] = clock_ms
        self.source = ClientBase(source_namesrv, **kwargs)
        self.target = _TargetProducer(target_namesrv, f"{name}-producer", **kwargs)
        self.map = OffsetMap()
        self.stats = ReplicatorStats()
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._dirty = False
        self._positions: dict[QueueKey, int] = {}  # next source offset to copy, per queue
        self._dial = source_dial or (lambda addr: addr)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> "Replicator":
        """Load saved state, learn the source queues and start one copy loop per queue."""
        if self.state_path is not None:
            loaded = read_with_backup(self.state_path, lambda data: OffsetMap.from_json(data, str(self.state_path)))
            if loaded is not None:
                self.map = loaded
        await self.target.start()
        loop = asyncio.get_running_loop()
        for topic in self.topics:
            route = await self.source.routes.refresh(topic)
            queues = route.read_queues()
            if not queues:
                raise ClientError(f"topic {topic!r} has no readable queue in the source cluster")
            for index, queue in enumerate(queues):
                self._tasks.append(loop.create_task(self._copy_loop(queue, index), name=f"copy {queue}"))
        if self.groups:
            self._tasks.append(loop.create_task(self._every(self.offset_sync_interval_ms, self.sync_offsets),
                                                name="offset sync"))
        if self.state_path is not None:
            self._tasks.append(loop.create_task(self._every(self.persist_interval_ms, self._persist), name="persist"))
        return self

    async def close(self) -> None:
        """Stop copying, save the map, close both clusters' connections."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._persist()
        await self.target.close()
        await self.source.pool.close()

    async def __aenter__(self) -> "Replicator":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _every(self, interval_ms: int, action) -> None:
        while not self._closed:
            await asyncio.sleep(interval_ms / 1000)
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a background duty keeps running; the error is logged
                log.warning("replicator %s: %s", getattr(action, "__name__", action), exc)

    async def _persist(self) -> None:
        if self.state_path is not None and self._dirty:
            self._dirty = False
            data = self.map.to_json()
            await asyncio.get_running_loop().run_in_executor(None, write_atomic, self.state_path, data)

    # --- copying ---------------------------------------------------------------------------------

    async def _copy_loop(self, queue: MessageQueue, index: int) -> None:
        source_key = QueueKey(*queue)
        offset = self.map.next_source_offset(source_key)
        while not self._closed:
            try:
                addr = await self._source_addr(queue)
                if offset is None:
                    offset = await self._edge_offset(addr, queue)
                self._positions[source_key] = offset
                response = await self.source.pool.request(addr, self._pull_request(queue, offset),
                                                          self.suspend_timeout_ms + self.request_timeout_ms)
                if response.code not in (codes.SUCCESS, codes.PULL_NOT_FOUND, codes.PULL_RETRY_IMMEDIATELY,
                                         codes.PULL_OFFSET_MOVED):
                    raise ClientError(f"pull {queue} at {offset}: {codes.response_name(response.code)} "
                                      f"{response.remark or ''}")
                answer = headers.PullMessageResponseHeader.from_ext(response.ext_fields)
                if response.code == codes.SUCCESS and response.body:
                    for message in decode_pulled(response.body, queue.broker_name):
                        if message.queue_offset >= offset:
                            await self._copy(queue, index, message)
                if response.code == codes.PULL_OFFSET_MOVED:
                    log.warning("replicator: %s offset %d moved to %d; the messages between were deleted "
                                "in the source before they were copied", queue, offset, answer.next_begin_offset)
                offset = max(offset, answer.next_begin_offset) if response.code != codes.PULL_OFFSET_MOVED \
                    else answer.next_begin_offset
                self._positions[source_key] = offset
            except asyncio.CancelledError:
                raise
            except CorruptDataError as exc:  # never skip: stop this queue and say where
                log.error("replicator: %s at offset %s does not decode, copying of this queue stopped: %s",
                          queue, offset, exc)
                return
            except (ClientError, *TRANSPORT_ERRORS) as exc:
                self.stats.pull_failures += 1
                log.info("replicator: pull %s failed: %s", queue, exc)
                await asyncio.sleep(self.retry_backoff_ms / 1000)
                await self._refresh(self.source, queue.topic)

    async def _copy(self, queue: MessageQueue, index: int, message: ReceivedMessage) -> None:
        """Send one message to the target until it is acknowledged, then record the copy."""
        properties = {k: v for k, v in message.properties.items() if k not in SYSTEM_PROPERTIES}
        properties[PROPERTY_MQBENCH_ORIGIN] = f"{queue.broker_name}:{queue.queue_id}:{message.queue_offset}"
        properties[PROPERTY_MQBENCH_ORIGIN_MSG_ID] = message.msg_id
        outgoing = OutgoingMessage(queue.topic, message.body, tags=message.tags, keys=message.keys,
                                   properties=properties, flag=message.flag)
        while True:
            try:
                token = _wanted_queue.set(await self._target_queue(queue.topic, index))
                try:
                    result = await self.target.send(outgoing)
                finally:
                    _wanted_queue.reset(token)
                break
            except (ClientError, *TRANSPORT_ERRORS) as exc:
                if self._closed:
                    raise asyncio.CancelledError() from exc
                self.stats.send_failures += 1
                log.info("replicator: copy of %s offset %d failed, retrying: %s", queue, message.queue_offset, exc)
                await asyncio.sleep(self.retry_backoff_ms / 1000)
        self.map.record(QueueKey(*queue), message.queue_offset, QueueKey(*result.queue), result.queue_offset)
        self._dirty = True
        self.stats.copied += 1
        self.stats.last_copy_store_timestamp_ms = max(self.stats.last_copy_store_timestamp_ms,
                                                      message.store_timestamp_ms)

    async def _target_queue(self, topic: str, index: int) -> MessageQueue | None:
        try:
            queues = (await self.target.routes.get(topic)).write_queues()
        except ClientError:
            return None  # no route yet (auto-created on first send): the producer picks
        return queues[index % len(queues)] if queues else None

    def _pull_request(self, queue: MessageQueue, offset: int) -> RemotingCommand:
        header = headers.PullMessageHeader(
            consumer_group=self.name, topic=queue.topic, queue_id=queue.queue_id, queue_offset=offset,
            max_msg_nums=self.pull_batch_size, sys_flag=codes.PULL_FLAG_SUSPEND | codes.PULL_FLAG_SUBSCRIPTION,
            commit_offset=0, suspend_timeout_ms=self.suspend_timeout_ms, subscription="*", sub_version=0,
            expression_type="TAG")
        return RemotingCommand.request(codes.PULL_MESSAGE, header.to_ext())

    async def _edge_offset(self, addr: str, queue: MessageQueue) -> int:
        code = codes.GET_MIN_OFFSET if self.start_at == "first" else codes.GET_MAX_OFFSET
        response = await self.source.pool.request(addr, RemotingCommand.request(
            code, headers.QueueOffsetHeader(queue.topic, queue.queue_id).to_ext()), self.request_timeout_ms)
        if response.code != codes.SUCCESS:
            raise ClientError(f"{codes.request_name(code)} of {queue}: {codes.response_name(response.code)}")
        return headers.OffsetResponseHeader.from_ext(response.ext_fields).offset

    async def _source_addr(self, queue: MessageQueue, dial: bool = True) -> str:
        route = await self.source.routes.get(queue.topic)
        broker = route.brokers.get(queue.broker_name)
        addr = broker.read_addr() if broker is not None else None
        if addr is None:
            raise ClientError(f"no address for {queue.broker_name} in the source route of {queue.topic!r}")
        return self._dial(addr) if dial else addr

    @staticmethod
    async def _refresh(client: ClientBase, topic: str) -> None:
        try:
            await client.routes.refresh(topic)
        except (ClientError, *TRANSPORT_ERRORS) as exc:
            log.info("replicator: route of %s: %s", topic, exc)

    # --- consumer offsets ------------------------------------------------------------------------

    async def sync_offsets(self) -> int:
        """One pass: translate every listed group's source offsets and move the target's forward.
        Returns how many target offsets moved; a failure on one queue is counted and skipped."""
        moved = 0
        for topic in self.topics:
            source_route = await self.source.routes.get(topic)
            for group in self.groups:
                committed: dict[QueueKey, int] = {}
                for queue in source_route.read_queues():
                    offset = await self._query_offset(self.source, queue, group)
                    if offset is not None and offset >= 0:
                        committed[QueueKey(*queue)] = offset
                for target_key, offset in sorted(self.map.translate(committed).items()):
                    target_queue = MessageQueue(*target_key)
                    current = await self._query_offset(self.target, target_queue, group)
                    if current is not None and current >= offset:
                        continue  # never move a target offset backwards (its consumers may be ahead)
                    if await self._update_offset(target_queue, group, offset):
                        moved += 1
        self.stats.offsets_written += moved
        return moved

    async def _query_offset(self, client: ClientBase, queue: MessageQueue, group: str) -> int | None:
        """The group's committed offset, -1 when it has none, None when the broker did not answer."""
        try:
            route = await client.routes.get(queue.topic)
            broker = route.brokers.get(queue.broker_name)
            addr = broker.read_addr() if broker is not None else None
            if addr is None:
                return None
            if client is self.source:
                addr = self._dial(addr)
            response = await client.pool.request(addr, RemotingCommand.request(
                codes.QUERY_CONSUMER_OFFSET, headers.QueryConsumerOffsetHeader(group, queue.topic,
                                                                               queue.queue_id).to_ext()),
                self.request_timeout_ms)
        except (ClientError, *TRANSPORT_ERRORS) as exc:
            self.stats.offset_sync_failures += 1
            log.info("replicator: offset of %s on %s: %s", group, queue, exc)
            return None
        if response.code == codes.QUERY_NOT_FOUND:
            return -1
        if response.code != codes.SUCCESS:
            self.stats.offset_sync_failures += 1
            return None
        return headers.OffsetResponseHeader.from_ext(response.ext_fields).offset

    async def _update_offset(self, queue: MessageQueue, group: str, offset: int) -> bool:
        try:
            route = await self.target.routes.get(queue.topic)
            addr = route.brokers[queue.broker_name].master_addr
            response = await self.target.pool.request(addr, RemotingCommand.request(
                codes.UPDATE_CONSUMER_OFFSET, headers.UpdateConsumerOffsetHeader(group, queue.topic, queue.queue_id,
                                                                                 offset).to_ext()),
                self.request_timeout_ms)
        except (ClientError, KeyError, *TRANSPORT_ERRORS) as exc:
            self.stats.offset_sync_failures += 1
            log.info("replicator: writing offset of %s on %s: %s", group, queue, exc)
            return False
        if response.code != codes.SUCCESS:
            self.stats.offset_sync_failures += 1
            return False
        return True

    # --- measurements ----------------------------------------------------------------------------

    async def lag(self, direct: bool = False) -> dict[QueueKey, int]:
        """Per source queue: acknowledged messages in the source not yet copied (source max offset
        minus the next offset to copy). Queues whose broker does not answer are left out.
        ``direct`` asks the source brokers at their own addresses, not through ``source_dial``
        (a drill measuring the window while the replicator's link is cut)."""
        out: dict[QueueKey, int] = {}
        for topic in self.topics:
            route = await self.source.routes.get(topic)
            for queue in route.read_queues():
                try:
                    addr = await self._source_addr(queue, dial=not direct)
                    response = await self.source.pool.request(addr, RemotingCommand.request(
                        codes.GET_MAX_OFFSET, headers.QueueOffsetHeader(queue.topic, queue.queue_id).to_ext()),
                        self.request_timeout_ms)
                except (ClientError, *TRANSPORT_ERRORS):
                    continue
                if response.code != codes.SUCCESS:
                    continue
                max_offset = headers.OffsetResponseHeader.from_ext(response.ext_fields).offset
                key = QueueKey(*queue)
                copied_to = max(self._positions.get(key, 0), self.map.next_source_offset(key) or 0)
                out[key] = max(0, max_offset - copied_to)
        return out

    def lag_ms(self, now_ms: int | None = None) -> int:
        """How far behind the newest copied message's source store time is (wall clock)."""
        now_ms = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        if not self.stats.last_copy_store_timestamp_ms:
            return 0
        return max(0, now_ms - self.stats.last_copy_store_timestamp_ms)
