"""mqbench's POP consumer: RocketMQ 5's broker-side consumption over remoting (JSON headers).

    consumer = PopConsumer(namesrv, "GID_x", invisible_time_ms=30_000)
    consumer.subscribe("Orders", "paid || refunded")
    async with consumer:
        msgs = await consumer.receive(32, timeout_ms=1000)     # each with msg.properties["POP_CK"]
        await consumer.ack(msgs)                               # or ack some, let others come back
        await consumer.change_invisible_time(msg, 5_000)       # returns the message's new handle

No rebalance: one long-poll loop per broker group of each subscribed topic sends POP_MESSAGE with
queueId -1 (the broker picks the queues, its retry topic included) only while the application
waits in ``receive`` on an empty buffer (a SimpleConsumer's receive is a pop), so popped messages
do not sit invisible in a consumer that is busy; ``close`` hands any still buffered back
(invisible time 1 ms). A message not acked within ``invisible_time_ms`` of its pop comes back (from the
group's retry topic, ``reconsume_times`` + 1); ``receive`` hands redelivered messages out under
their original topic (``RETRY_TOPIC``), as RocketMQ's client does. Acks go to the broker group the
message came from (its leader; a not-leader answer refreshes the route and retries once per
attempt, up to ``ack_attempts``). Errors in the loops back off ``pop_error_backoff_ms`` and refresh
the route. ``init_mode``: ``"first"`` (a queue the group never consumed starts at its first
message) or ``"last"`` (at its end).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import replace

from mqbench.broker.pop import handles
from mqbench.broker.formats import codes
from mqbench.broker.formats import headers_pop as hp
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.formats.topics import validate_group, validate_topic
from mqbench.client.connections import TRANSPORT_ERRORS, ClientError
from mqbench.client.messages import ReceivedMessage, decode_pulled, matches_tags
from mqbench.client.producer import ClientBase
from mqbench.broker.formats import headers
from mqbench.errors import UserError
from mqbench.broker.formats.properties import PROPERTY_POP_CK, PROPERTY_RETRY_TOPIC

log = logging.getLogger(__name__)

INIT_MODES = {"last": 0, "first": 1}


class PopConsumer(ClientBase):
    def __init__(self, namesrv: str | list[str], group: str, *, invisible_time_ms: int = 30_000,
                 init_mode: str = "first", pop_batch_size: int = 32, poll_time_ms: int = 5_000,
                 pop_error_backoff_ms: int = 500, buffer_messages_max: int = 1024, ack_attempts: int = 5,
                 **kwargs) -> None:
        super().__init__(namesrv, **kwargs)
        validate_group(group)
        if init_mode not in INIT_MODES:
            raise UserError(f"init_mode must be one of {', '.join(INIT_MODES)}, not {init_mode!r}")
        if invisible_time_ms <= 0:
            raise UserError(f"invisible_time_ms must be positive, not {invisible_time_ms}")
        self.group = group
        self.invisible_time_ms = invisible_time_ms
        self.init_mode = init_mode
        self.pop_batch_size = pop_batch_size
        self.poll_time_ms = poll_time_ms
        self.pop_error_backoff_ms = pop_error_backoff_ms
        self.ack_attempts = ack_attempts
        self.subscriptions: dict[str, str] = {}
        self.buffer_messages_max = buffer_messages_max
        self._buffer: deque[ReceivedMessage] = deque()
        self._has_messages = asyncio.Event()
        self._room = asyncio.Event()     # set while the application waits in receive() on an empty buffer
        self.released_count = 0         # buffered messages handed back on close (invisible 1 ms)
        self.popped_count = 0
        self.late_ack_count = 0
        self.loops = 0                  # pop loops started (one per topic and broker group)
        self.polled_loops = 0           # loops that had a first answer: the group's start is fixed

    def subscribe(self, topic: str, expression: str = "*") -> None:
        validate_topic(topic)
        self.subscriptions[topic] = expression

    async def start(self) -> "PopConsumer":
        if not self.subscriptions:
            raise UserError("subscribe to at least one topic before start()")
        for topic in self.subscriptions:
            route = await self.routes.get(topic)
            for broker_name in sorted({q.broker_name for q in route.queues}):
                self.loops += 1
                self._spawn(self._pop_loop(topic, broker_name), f"pop-{topic}-{broker_name}")
        return self

    async def __aenter__(self) -> "PopConsumer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop popping (a pop under way is answered first, up to the poll time), hand the messages
        popped but not yet received back to the broker (invisible time 1 ms: they come back at once
        to the other consumers instead of after ``invisible_time_ms``), close the connections."""
        if self._closed:
            return
        self._closed = True
        self._room.set()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=(self.poll_time_ms + 500) / 1000)
        await self._stop_tasks()
        held, self._buffer = list(self._buffer), deque()
        results = await asyncio.gather(*(self.change_invisible_time(m, 1) for m in held), return_exceptions=True)
        self.released_count += sum(not isinstance(r, BaseException) for r in results)
        await self.pool.close()

    async def receive(self, max_messages: int = 32, timeout_ms: int = 1000) -> list[ReceivedMessage]:
        """Up to ``max_messages`` popped messages; waits up to ``timeout_ms`` for the first one."""
        if not self._buffer:
            self._room.set()
            try:
                await asyncio.wait_for(self._has_messages.wait(), timeout_ms / 1000)
            except asyncio.TimeoutError:
                return []
        out: list[ReceivedMessage] = []
        while self._buffer and len(out) < max_messages:
            out.append(self._buffer.popleft())
        if not self._buffer:
            self._has_messages.clear()
        return out

    async def _leader(self, topic: str, broker_name: str) -> str:
        route = await self.routes.get(topic)
        broker = route.brokers.get(broker_name)
        addr = broker.master_addr if broker is not None else None
        if addr is None:
            raise ClientError(f"no leader address for {broker_name} of {topic}")
        return addr

    def _pop_request(self, topic: str) -> RemotingCommand:
        expression = self.subscriptions[topic]
        ext = {"consumerGroup": self.group, "topic": topic, "queueId": "-1", "maxMsgNums": str(self.pop_batch_size),
               "invisibleTime": str(self.invisible_time_ms), "pollTime": str(self.poll_time_ms),
               "bornTime": str(self.clock_ms()), "initMode": str(INIT_MODES[self.init_mode]), "order": "false"}
        if expression and expression.strip() != "*":
            ext.update(expType="TAG", exp=expression)
        return RemotingCommand.request(codes.POP_MESSAGE, ext)

    async def _pop_loop(self, topic: str, broker_name: str) -> None:
        tags = headers.parse_tag_expression(self.subscriptions.get(topic))
        polled = False
        while not self._closed:
            await self._room.wait()      # pop only what the buffer can take: nothing waits invisible here
            if self._closed:
                return
            try:
                addr = await self._leader(topic, broker_name)
                response = await self.pool.request(addr, self._pop_request(topic),
                                                   self.poll_time_ms + self.request_timeout_ms)
                if not polled:
                    polled = True
                    self.polled_loops += 1
                if response.code == codes.SUCCESS:
                    for msg in decode_pulled(response.body, broker_name):
                        msg = _original_topic(msg, topic)
                        if matches_tags(msg, tags):
                            self.popped_count += 1
                            self._buffer.append(msg)
                    if self._buffer:
                        self._has_messages.set()
                        self._room.clear()
                elif response.code not in (codes.PULL_NOT_FOUND, codes.POLLING_TIMEOUT, codes.NO_MESSAGE):
                    raise ClientError(f"POP from {broker_name}: {codes.response_name(response.code)} {response.remark}")
            except asyncio.CancelledError:
                raise
            except (ClientError, *TRANSPORT_ERRORS) as exc:
                log.info("pop from %s/%s failed: %s", topic, broker_name, exc)
                await asyncio.sleep(self.pop_error_backoff_ms / 1000)
                try:
                    await self.routes.refresh(topic)
                except (ClientError, *TRANSPORT_ERRORS) as exc2:
                    log.info("route refresh of %s failed: %s", topic, exc2)

    async def _request_leader(self, topic: str, broker_name: str, cmd_factory, what: str) -> RemotingCommand:
        """Send to the broker group's leader, following a not-leader answer or a lost connection."""
        last = ""
        for attempt in range(self.ack_attempts):
            try:
                addr = await self._leader(topic, broker_name)
                response = await self.pool.request(addr, cmd_factory(), self.request_timeout_ms)
                if response.code == codes.SUCCESS or response.code == codes.NO_MESSAGE:
                    return response
                last = f"{codes.response_name(response.code)} {response.remark}"
                if response.code not in (codes.SYSTEM_ERROR, codes.SYSTEM_BUSY, codes.SERVICE_NOT_AVAILABLE):
                    break
            except (ClientError, *TRANSPORT_ERRORS) as exc:
                last = str(exc)
            await asyncio.sleep(self.pop_error_backoff_ms / 1000 * (attempt + 1))
            try:
                await self.routes.refresh(topic)
            except (ClientError, *TRANSPORT_ERRORS):
                pass
        raise ClientError(f"{what} on {broker_name} failed: {last}")

    async def ack(self, messages: list[ReceivedMessage]) -> None:
        """Ack every message, each to its broker group's leader: one ACK_MESSAGE for a single
        message, else one BATCH_ACK_MESSAGE per broker group and topic (the broker merges them)."""
        by_target: dict[tuple[str, str], list[ReceivedMessage]] = {}
        for m in messages:
            by_target.setdefault((m.broker_name, m.topic), []).append(m)
        await asyncio.gather(*(self._ack_one(ms[0]) if len(ms) == 1 else self._ack_batch(ms)
                               for ms in by_target.values()))

    async def _ack_batch(self, messages: list[ReceivedMessage]) -> None:
        by_ck: dict[tuple, list[int]] = {}
        for m in messages:
            h = handles.parse(m.properties[PROPERTY_POP_CK])
            by_ck.setdefault((h.kind, h.ck_queue_offset, h.queue_id, h.revive_qid, h.pop_time_ms,
                              h.invisible_time_ms), []).append(h.offset)
        first = messages[0]
        acks = [{"group": self.group, "topic": first.topic, "retry": kind, "start_offset": so, "queue_id": q,
                 "revive_qid": rq, "pop_time_ms": pt, "invisible_time_ms": it, "offsets": sorted(offsets)}
                for (kind, so, q, rq, pt, it), offsets in by_ck.items()]

        def cmd() -> RemotingCommand:
            return RemotingCommand.request(codes.BATCH_ACK_MESSAGE, {},
                                           body=hp.batch_ack_body(first.broker_name, acks))
        response = await self._request_leader(first.topic, first.broker_name, cmd, "batch ack")
        late = (response.remark or "").split(" ", 1)[0]
        if late.isdigit():
            self.late_ack_count += int(late)

    async def _ack_one(self, msg: ReceivedMessage) -> None:
        handle = msg.properties[PROPERTY_POP_CK]
        h = handles.parse(handle)

        def cmd() -> RemotingCommand:
            return RemotingCommand.request(codes.ACK_MESSAGE, {
                "consumerGroup": self.group, "topic": msg.topic, "queueId": str(h.queue_id), "extraInfo": handle,
                "offset": str(h.offset)})
        response = await self._request_leader(msg.topic, msg.broker_name, cmd, "ack")
        if response.remark and response.remark.startswith("late"):
            self.late_ack_count += 1

    async def change_invisible_time(self, msg: ReceivedMessage, invisible_time_ms: int) -> ReceivedMessage:
        """Make ``msg`` invisible for ``invisible_time_ms`` from now; returns it with its new handle.
        ClientError when the handle is no longer in flight (NO_MESSAGE)."""
        handle = msg.properties[PROPERTY_POP_CK]
        h = handles.parse(handle)

        def cmd() -> RemotingCommand:
            return RemotingCommand.request(codes.CHANGE_MESSAGE_INVISIBLETIME, {
                "consumerGroup": self.group, "topic": msg.topic, "queueId": str(h.queue_id), "extraInfo": handle,
                "offset": str(h.offset), "invisibleTime": str(invisible_time_ms)})
        response = await self._request_leader(msg.topic, msg.broker_name, cmd, "change of invisible time")
        if response.code != codes.SUCCESS:
            raise ClientError(f"change of invisible time on {msg.broker_name}: {response.remark}")
        fields = hp.ChangeInvisibleTimeResponseHeader.from_ext(response.ext_fields)
        new = handles.Handle(h.offset, fields.pop_time_ms, fields.invisible_time_ms, fields.revive_qid, h.kind,
                             h.broker_name, h.queue_id, h.offset).text()
        return replace(msg, properties={**msg.properties, PROPERTY_POP_CK: new})


def _original_topic(msg: ReceivedMessage, topic: str) -> ReceivedMessage:
    """A redelivered message (from the retry topic) under the topic it was sent to."""
    if msg.topic.startswith(handles.RETRY_PREFIX):
        return replace(msg, topic=msg.properties.get(PROPERTY_RETRY_TOPIC, topic))
    return msg
