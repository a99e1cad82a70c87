"""mqbench's producer: SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE to any RocketMQ 4.x/5.x cluster.

Contract of ``send`` / ``send_batch``:

* The queue is chosen round-robin over the topic's writable queues (brokers with a master).
* A failed attempt is retried up to ``retries`` more times, on another broker name when the route
  has one. Failures that trigger a retry: no answer or a broken connection, and the answers
  SYSTEM_ERROR, SYSTEM_BUSY, SERVICE_NOT_AVAILABLE, NO_PERMISSION, TOPIC_NOT_EXIST (how a broker
  says "not the leader / not writable here"). Each of these refreshes the route first, so a Raft
  failover is followed as soon as the name server knows the new leader.
* Any other answer (e.g. MESSAGE_ILLEGAL) fails at once with ``ClientError`` naming the code and
  the broker's remark; after the last attempt ``ClientError`` lists every attempt.
* SEND_OK, FLUSH_DISK_TIMEOUT, FLUSH_SLAVE_TIMEOUT and SLAVE_NOT_AVAILABLE are deliveries: the
  result's ``status`` names which.
* Per-message compression, RocketMQ's rule: with ``compression`` set (a codec spec such as
  ``"zlib:5"``, ``"zstd:3"``, ``"lz4"``, or a ``Codec``), a body of at least ``compress_over_bytes``
  (default 4096, RocketMQ's ``compressMsgBodyOverHowmuch``) is sent compressed with sysflag
  ``compression.sysflag_bits(codec)``: zlib as 0x1, exactly what RocketMQ 4.x and the C++ client
  send (at their default level 5, ``"zlib:5"`` is byte for byte their body), other codecs with
  their RocketMQ 5 type bits. Smaller bodies go as they are. ``codec=`` is the older name of
  ``compression=``.
* Batches are not compressed per message (RocketMQ never compresses them). With
  ``batch_compression`` set, the whole client batch body is compressed as one stream and sent in
  the envelope of ``mqbench.broker.formats.compression`` (header sysflag = the codec's bits), which a
  broker that does not know it refuses rather than stores. The plain batch body must fit
  ``body_bytes_max``.

The born timestamp (header ``g``) comes from the injected ``clock_ms`` (wall-clock milliseconds by
default) and is returned in the result, so the harness can compute end-to-end latency.
"""
from __future__ import annotations

import asyncio
import datetime
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable

from mqbench.broker.formats import codes, headers
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.formats import record as rec
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.compression import COMPRESS_OVER_BYTES_DEFAULT, compress_body, encode_client_batch
from mqbench.broker.formats.topics import validate_topic
from mqbench.broker.remoting.channel import RemotingClosedError
from mqbench.client.connections import (TRANSPORT_ERRORS, ClientError, ConnectionPool, NameServerClient,
                                        RouteCache)
from mqbench.client.messages import OutgoingMessage, UniqueIdGenerator
from mqbench.client.pipeline import PropertyTemplate, SendFrameTemplate, json_string_content
from mqbench.client.routes import MessageQueue, TopicRoute
from mqbench.codecs.registry import BODY_SIZE_MAX_BYTES, Codec, parse_codec
from mqbench.errors import UserError
from mqbench.broker.formats.properties import PROPERTY_UNIQ_KEY, PROPERTY_WAIT

log = logging.getLogger(__name__)

DELIVERED = {codes.SUCCESS: "SEND_OK", codes.FLUSH_DISK_TIMEOUT: "FLUSH_DISK_TIMEOUT",
             codes.FLUSH_SLAVE_TIMEOUT: "FLUSH_SLAVE_TIMEOUT", codes.SLAVE_NOT_AVAILABLE: "SLAVE_NOT_AVAILABLE"}
TEMPLATES_MAX = 4096     # prebuilt send headers kept (one per topic, queue, code, sysflag and flag)
RETRIED = {codes.SYSTEM_ERROR, codes.SYSTEM_BUSY, codes.SERVICE_NOT_AVAILABLE, codes.NO_PERMISSION,
           codes.TOPIC_NOT_EXIST}


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def month_start_ms(now_ms: int) -> int:
    now = datetime.datetime.fromtimestamp(now_ms / 1000, datetime.timezone.utc)
    return int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)


@dataclass
class SendResult:
    status: str
    msg_id: str                      # client id (UNIQ_KEY); for a batch, the ids joined by commas
    offset_msg_id: str               # the broker's id(s): store host + commitlog offset
    queue: MessageQueue
    queue_offset: int                # of the first message for a batch
    born_timestamp_ms: int
    attempts: int
    msg_ids: list[str] = field(default_factory=list)


def send_header_v2(group: str, topic: str, queue_id: int, sys_flag: int, born_ms: int, flag: int,
                   properties: str, batch: bool, broker_name: str) -> dict[str, str]:
    """The SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE ext fields, as ``headers.SendMessageHeader(...).to_v2()``
    writes them (same names, values and order; tested), built directly: the load generator sends
    one per message and must not cost more than the broker it measures."""
    return {"a": group, "b": topic, "c": codes.DEFAULT_TOPIC, "d": "4", "e": str(queue_id), "f": str(sys_flag),
            "g": str(born_ms), "h": str(flag), "i": properties, "j": "0", "k": "false",
            "m": "true" if batch else "false", "n": broker_name}


class _Attempt(Exception):
    """One failed attempt that may be retried; ``refresh`` says the route is probably stale."""

    def __init__(self, text: str, refresh: bool = True):
        super().__init__(text)
        self.refresh = refresh


class ClientBase:
    """What producer and consumer share: connections, name server, route cache, clock, ids."""

    def __init__(self, namesrv: str | list[str], *, client_ip: str = "127.0.0.1", client_id: str | None = None,
                 request_timeout_ms: int = 3000, route_ttl_ms: int = 30_000,
                 clock_ms: Callable[[], int] = wall_clock_ms, rng: random.Random | None = None,
                 credentials=None) -> None:
        """``credentials``: a ``broker.formats.signature.Credentials`` (RocketMQ ACL accessKey and
        secretKey): every request to the name servers and brokers is signed with it."""
        self.clock_ms = clock_ms
        self.rng = rng or random.Random()
        self.client_ip = client_ip
        self.client_id = client_id or f"{client_ip}@{os.getpid()}#{self.rng.getrandbits(32)}"
        self.request_timeout_ms = request_timeout_ms
        self.pool = ConnectionPool(connect_timeout_ms=request_timeout_ms, on_request=self._on_server_request,
                                   credentials=credentials)
        self.namesrv = NameServerClient(namesrv, self.pool, timeout_ms=request_timeout_ms)
        self.routes = RouteCache(self.namesrv, route_ttl_ms=route_ttl_ms, clock_ms=clock_ms)
        now = clock_ms()
        self.ids = UniqueIdGenerator(client_ip, os.getpid(), self.rng.getrandbits(31), clock_ms, month_start_ms(now))
        self._tasks: list[asyncio.Task] = []
        self._closed = False

    async def _on_server_request(self, cmd: RemotingCommand, channel) -> RemotingCommand | None:
        return cmd.response_to(codes.REQUEST_CODE_NOT_SUPPORTED, f"request {cmd.code} not supported by mqbench")

    def _spawn(self, coro, name: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    async def _stop_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _every(self, interval_ms: int, action: Callable, what: str) -> None:
        while not self._closed:
            await asyncio.sleep(interval_ms / 1000)
            if self._closed:
                return
            try:
                await action()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a background duty must keep running
                log.warning("%s failed: %s", what, exc)


def codec_option(value: str | Codec | None, what: str) -> Codec | None:
    """A codec setting given as a spec string, a ``Codec`` or None; ``none`` means None.
    UserError (naming ``what``) for an unknown codec or one without a compression type id."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = parse_codec(value)
        except UserError as exc:
            raise UserError(f"{what}: {exc}") from None
    if not isinstance(value, Codec):
        raise UserError(f"{what} must be a codec spec such as 'zstd:3', not {value!r}")
    if value.is_none:
        return None
    if value.type_id is None:
        raise UserError(f"{what}: codec {value.spec} has no compression type id")
    return value


class Producer(ClientBase):
    def __init__(self, namesrv: str | list[str], group: str = "PID_mqbench", *, send_timeout_ms: int = 3000,
                 retries: int = 2, compression: str | Codec | None = None,
                 compress_over_bytes: int = COMPRESS_OVER_BYTES_DEFAULT,
                 batch_compression: str | Codec | None = None, codec: Codec | None = None,
                 body_bytes_max: int = BODY_SIZE_MAX_BYTES, heartbeat_interval_ms: int = 30_000, **kwargs) -> None:
        if compression is not None and codec is not None:
            raise UserError("pass compression= or its older name codec=, not both")
        if isinstance(compress_over_bytes, bool) or not isinstance(compress_over_bytes, int) or compress_over_bytes < 0:
            raise UserError(f"compress_over_bytes must be an integer >= 0, not {compress_over_bytes!r}")
        self.codec = codec_option(compression if compression is not None else codec, "compression")
        self.batch_codec = codec_option(batch_compression, "batch_compression")
        super().__init__(namesrv, **kwargs)
        self.group = group
        self.send_timeout_ms = send_timeout_ms
        self.retries = retries
        self.compress_over_bytes = compress_over_bytes
        self.body_bytes_max = body_bytes_max
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._next_queue = self.rng.randrange(1 << 16)
        self._heartbeat_addrs: set[str] = set()
        self._templates: dict[tuple, SendFrameTemplate] = {}
        self._write_queues: dict[str, tuple[TopicRoute, list[MessageQueue]]] = {}
        self._valid_topics: set[str] = set()    # names validate_topic accepted (checked once each)
        self._lanes: dict[str, tuple] = {}       # topic -> submit_to's targets (_lane)

    async def start(self) -> "Producer":
        self._spawn(self._every(self.heartbeat_interval_ms, self.heartbeat, "producer heartbeat"), "producer-heartbeat")
        return self

    async def __aenter__(self) -> "Producer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stop_tasks()
        for addr in sorted(self._heartbeat_addrs):
            try:
                await self.pool.request(addr, RemotingCommand.request(
                    codes.UNREGISTER_CLIENT, {"clientID": self.client_id, "producerGroup": self.group}),
                    self.request_timeout_ms)
            except TRANSPORT_ERRORS as exc:
                log.info("unregister from %s failed: %s", addr, exc)
        await self.pool.close()

    async def heartbeat(self) -> None:
        body = headers.heartbeat_body(self.client_id, [self.group], [])
        for addr in sorted(self._heartbeat_addrs):   # a dead broker must not cost the others their heartbeat
            try:
                await self.pool.request(addr, RemotingCommand.request(codes.HEART_BEAT, body=body),
                                        self.request_timeout_ms)
            except TRANSPORT_ERRORS as exc:
                log.info("heartbeat to %s failed: %s", addr, exc)

    # --- sending ---------------------------------------------------------------------------------

    async def send(self, msg: OutgoingMessage) -> SendResult:
        """Send one message (SEND_MESSAGE_V2); see the module contract."""
        return await self.submit(msg)

    async def send_batch(self, msgs: list[OutgoingMessage]) -> SendResult:
        """Send messages of one topic as one SEND_BATCH_MESSAGE: the client batch body, or with
        ``batch_compression`` that body compressed whole (see the module contract)."""
        return await self.submit_batch(msgs)

    def submit(self, msg: OutgoingMessage, on_done: Callable[[asyncio.Future], object] | None = None
               ) -> asyncio.Future:
        """``send`` without a coroutine or Task per message (a load generator's path): the future
        gets the ``SendResult`` or the exception ``send`` would raise. The first attempt is queued
        on the broker's channel at once (a prebuilt frame, ``pipeline.SendFrameTemplate``) when
        the topic's route is fresh and the connection open and writable; otherwise, and for every
        retry, it goes on as ``send`` does, in a task. A bad message raises here, at once.
        ``on_done(future)``, when given, is called once the future is done, exactly once: in the
        callback that took the broker's answer when the first attempt succeeds (a done callback
        would run a loop turn later, and a load generator times the ack there), else as a done
        callback."""
        if msg.topic not in self._valid_topics:
            self._valid_topics.add(validate_topic(msg.topic))
        self._check_body(msg.body)
        uniq_key = self.ids.next()
        text = rec.encode_properties(msg.wire_properties(uniq_key)).decode("utf-8")
        body, sys_flag = compress_body(msg.body, self.codec, self.compress_over_bytes)
        return self._submit(codes.SEND_MESSAGE_V2, msg.topic, body, sys_flag, msg.flag, text, [uniq_key], on_done)

    def submit_text(self, topic: str, body: bytes, properties_text: str, uniq_key: str, flag: int = 0,
                    on_done: Callable[[asyncio.Future], object] | None = None) -> asyncio.Future:
        """``submit`` of a message whose property text the caller built: ``encode_properties`` of
        what ``OutgoingMessage.wire_properties(uniq_key)`` gives, as text, with ``uniq_key`` from
        ``self.ids``. For a load generator that prebuilds each message's properties once
        (``pipeline.PropertyTemplate``); the text is sent as it is, so the caller vouches for it
        (built by that encoder). Topic and body are checked, and the body compressed, as
        ``submit`` does."""
        if topic not in self._valid_topics:
            self._valid_topics.add(validate_topic(topic))
        self._check_body(body)
        body, sys_flag = compress_body(body, self.codec, self.compress_over_bytes)
        return self._submit(codes.SEND_MESSAGE_V2, topic, body, sys_flag, flag, properties_text, [uniq_key], on_done)

    def submit_to(self, receiver, topic: str, body: bytes, properties_wire: bytes | PropertyTemplate,
                  uniq_key: str, born_ms: int | None = None, values: tuple | None = None) -> bool:
        """``submit_text``'s first attempt for a caller that keeps its own record of each send
        (a load generator): the frame is queued on the broker's channel with ``receiver`` filed
        under its opaque in the channel's table of pending requests, so no future, Task or
        callback is made per send and the answer reaches ``receiver.delivered()`` in the read that
        took it (``send_receiver.SendReceiver``: retries and failures as ``submit`` has them). The queue is
        chosen as ``submit`` chooses it, from targets (queue, channel, prebuilt header) kept per
        topic until the route is refreshed or expires. ``properties_wire`` is the property text
        as JSON-string content (``json_string_content``) and ``receiver.text()`` that text, read
        only for a retry; ``uniq_key`` is its UNIQ_KEY. True when queued; False when the send
        cannot go this way (no fresh route, a connection not open or not writable, ACL
        credentials, a topic not validated yet, an empty or oversized body): the caller then
        sends through ``submit_text``, which connects, refreshes and refuses as ever. ``born_ms``:
        the request's born timestamp when the caller already read ``clock_ms`` for this send
        (``ids.next_at``), so the clock is read once per send; None reads it here. With
        ``values``, ``properties_wire`` is a ``PropertyTemplate`` and ``values`` its slots' values
        (ints, or ids of ASCII letters and digits): the template is filled in the frame's own step
        (``SendFrameTemplate.frame_filled``, one C call), not by the caller."""
        if born_ms is None:
            born_ms = self.clock_ms()
        lane = self._lanes.get(topic)
        if lane is None or born_ms > lane[0] or lane[1] != self.routes.version:
            lane = self._lane(topic)
            if lane is None:
                return False
        if not body or len(body) > self.body_bytes_max or topic not in self._valid_topics:
            return False
        targets = lane[2]
        self._next_queue = (self._next_queue + 1) & 0x7FFFFFFF
        queue, channel, template, addr = targets[self._next_queue % len(targets)]
        if channel.closed or not channel.writable:     # the general path waits or reconnects
            self._lanes.pop(topic, None)
            self._next_queue = (self._next_queue - 1) & 0x7FFFFFFF     # the same queue goes there
            return False
        sys_flag = 0
        if self.codec is not None:
            body, sys_flag = compress_body(body, self.codec, self.compress_over_bytes)
            if sys_flag:
                template = self._template(codes.SEND_MESSAGE_V2, topic, queue, sys_flag, 0)
        receiver.producer, receiver.topic, receiver.body, receiver.sys_flag = self, topic, body, sys_flag
        receiver.queue, receiver.addr, receiver.uniq_key = queue, addr, uniq_key
        opaque = channel.next_opaque()
        if values is None:
            frame = template.frame(opaque, born_ms, properties_wire, body)
        else:
            frame = template.frame_filled(opaque, born_ms, properties_wire, values, body)
        channel.submit_to(opaque, frame, self.send_timeout_ms, receiver)
        return True

    def _lane(self, topic: str) -> tuple | None:
        """``submit_to``'s targets of ``topic``: (fresh-until ms, the routes' version, [(queue, channel, header
        template of an uncompressed message, broker address)] in ``_select``'s order), or None when
        the route is not fresh, a broker is not connected yet or requests are signed."""
        self._lanes.pop(topic, None)
        entry = self.routes.fresh_until_ms(topic)
        if entry is None or self.pool.credentials is not None:
            return None
        route, until_ms = entry
        version = self.routes.version
        if self._select(route, None) is None:     # the route's writable queues, cached as _select keeps them
            return None
        self._next_queue = (self._next_queue - 1) & 0x7FFFFFFF     # (without moving the round robin)
        targets = []
        for queue in self._write_queues[topic][1]:
            addr = route.brokers[queue.broker_name].master_addr
            channel = self.pool.open_channel(addr)
            if channel is None:
                return None
            targets.append((queue, channel, self._template(codes.SEND_MESSAGE_V2, topic, queue, 0, 0), addr))
        if not targets:
            return None
        lane = self._lanes[topic] = (until_ms, version, targets)
        return lane

    def submit_batch(self, msgs: list[OutgoingMessage], on_done: Callable[[asyncio.Future], object] | None = None
                     ) -> asyncio.Future:
        """``send_batch`` as ``submit`` sends one message."""
        if not msgs:
            raise UserError("send_batch needs at least one message")
        topic = msgs[0].topic
        validate_topic(topic)
        items, ids = [], []
        for msg in msgs:
            if msg.topic != topic:
                raise UserError(f"a batch goes to one topic: {topic!r} and {msg.topic!r} differ")
            if msg.delay_level or msg.deliver_at_ms or msg.delay_ms:
                raise UserError("a batch cannot carry delayed messages (RocketMQ refuses them)")
            self._check_body(msg.body)
            uniq_key = self.ids.next()
            ids.append(uniq_key)
            items.append(BatchItem(msg.body, msg.wire_properties(uniq_key), msg.flag))
        body, sys_flag = encode_client_batch(items, self.batch_codec, size_max=self.body_bytes_max)
        if len(body) > self.body_bytes_max:  # an incompressible batch can grow by a few bytes
            raise UserError(f"compressed batch body of {len(body)} bytes exceeds {self.body_bytes_max}")
        batch_props = {PROPERTY_UNIQ_KEY: self.ids.next(), PROPERTY_WAIT: "true"}
        return self._submit(codes.SEND_BATCH_MESSAGE, topic, body, sys_flag, 0,
                            rec.encode_properties(batch_props).decode("utf-8"), ids, on_done)

    def _check_body(self, body: bytes) -> None:
        if not body:
            raise UserError("message body is empty (RocketMQ refuses empty bodies)")
        if len(body) > self.body_bytes_max:
            raise UserError(f"message body of {len(body)} bytes exceeds {self.body_bytes_max}")

    def _submit(self, code: int, topic: str, body: bytes, sys_flag: int, flag: int, properties: str,
                ids: list[str],
                on_done: Callable[[asyncio.Future], object] | None = None) -> asyncio.Future:
        """The first attempt queued at once when it can be (``submit``), else ``_send`` in a task."""
        loop = asyncio.get_running_loop()
        result = loop.create_future()
        if on_done is not None:
            result.add_done_callback(on_done)
        route = self.routes.fresh(topic)
        queue = None if route is None or self.pool.credentials is not None else self._select(route, None)
        channel = None if queue is None else self.pool.open_channel(route.brokers[queue.broker_name].master_addr)
        if channel is None or not channel.writable:
            self._continue(result, self._send(code, topic, body, sys_flag, flag, properties, ids))
            return result
        born_ms = self.clock_ms()
        properties_wire = json_string_content(properties)
        opaque = channel.next_opaque()
        reply = channel.submit(opaque, self._template(code, topic, queue, sys_flag, flag).frame(
            opaque, born_ms, properties_wire, body), self.send_timeout_ms)

        def answered(reply: asyncio.Future) -> None:
            if result.done():       # the caller gave up (cancelled)
                return
            failure = reply.exception() if not reply.cancelled() else RemotingClosedError("request cancelled")
            refresh = True
            if failure is None:
                try:
                    value = self._result(reply.result(), queue, born_ms, 1, ids)
                except _Attempt as exc:
                    failure, refresh = exc, exc.refresh
                except TRANSPORT_ERRORS as exc:    # an answer that does not parse: as _send, retried
                    failure = exc
                except Exception as exc:  # noqa: BLE001 - a callback must hand every failure to the caller
                    result.set_exception(exc)
                    return
                else:
                    if on_done is not None:
                        result.remove_done_callback(on_done)    # called here, not a loop turn later
                    result.set_result(value)
                    self._heartbeat_addrs.add(channel_addr)
                    if on_done is not None:
                        on_done(result)
                    return
            elif not isinstance(failure, TRANSPORT_ERRORS):
                result.set_exception(failure)
                return
            # as ``_send`` goes on after a failed attempt: another broker name, a fresh route
            self._continue(result, self._send(code, topic, body, sys_flag, flag, properties, ids, first_attempt=2,
                                              failures=[f"{queue.broker_name} ({channel_addr}): {failure}"],
                                              avoid=queue.broker_name, refresh=refresh))

        channel_addr = route.brokers[queue.broker_name].master_addr
        reply.add_done_callback(answered)
        return result

    @staticmethod
    def _continue(result: asyncio.Future, coro) -> None:
        """Run ``coro`` in a task whose outcome becomes ``result``'s (cancelling ``result`` cancels it)."""
        task = asyncio.get_running_loop().create_task(coro)

        def settle(task: asyncio.Task) -> None:
            if result.done():
                return
            if task.cancelled():
                result.cancel()
            elif task.exception() is not None:
                result.set_exception(task.exception())
            else:
                result.set_result(task.result())

        task.add_done_callback(settle)
        result.add_done_callback(lambda r: task.cancel() if r.cancelled() else None)

    async def _send(self, code: int, topic: str, body: bytes, sys_flag: int, flag: int, properties: str,
                    ids: list[str], *, first_attempt: int = 1, failures: list[str] | None = None,
                    avoid: str | None = None, refresh: bool = False) -> SendResult:
        """Attempts of one send; ``properties`` is the property text (``encode_properties``)."""
        failures = [] if failures is None else failures
        wire_properties = properties
        properties_wire: bytes | None = None
        route = await self.routes.get(topic)
        if refresh:
            route = await self._refresh(topic, route)
        for attempt in range(first_attempt, self.retries + 2):
            queue = self._select(route, avoid)
            if queue is None:
                failures.append("no writable queue with a master in the route")
                route = await self._refresh(topic, route)
                continue
            addr = route.brokers[queue.broker_name].master_addr
            born_ms = self.clock_ms()
            try:
                if self.pool.credentials is None:
                    # the header prebuilt per queue, the per-message fields spliced in (pipeline.py)
                    channel = await self.pool.channel(addr)
                    if not channel.writable:
                        await channel.wait_writable()
                    if properties_wire is None:
                        properties_wire = json_string_content(wire_properties)
                    template = self._template(code, topic, queue, sys_flag, flag)
                    opaque = channel.next_opaque()
                    response = await channel.submit(opaque, template.frame(opaque, born_ms, properties_wire, body),
                                                    self.send_timeout_ms)
                else:       # signed: the request's fields go into the signature
                    cmd = RemotingCommand(code=code, ext_fields=send_header_v2(
                        self.group, topic, queue.queue_id, sys_flag, born_ms, flag, wire_properties,
                        code == codes.SEND_BATCH_MESSAGE, queue.broker_name), body=body, language="PYTHON")
                    response = await self.pool.request(addr, cmd, self.send_timeout_ms)
                self._heartbeat_addrs.add(addr)
                return self._result(response, queue, born_ms, attempt, ids)
            except _Attempt as exc:
                failures.append(f"{queue.broker_name} ({addr}): {exc}")
                avoid = queue.broker_name
                if exc.refresh:
                    route = await self._refresh(topic, route)
            except TRANSPORT_ERRORS as exc:
                failures.append(f"{queue.broker_name} ({addr}): {exc}")
                avoid = queue.broker_name
                route = await self._refresh(topic, route)
        raise ClientError(f"send to {topic!r} failed after {self.retries + 1} attempts: " + "; ".join(failures))

    def _template(self, code: int, topic: str, queue: MessageQueue, sys_flag: int, flag: int) -> SendFrameTemplate:
        key = (code, topic, queue.broker_name, queue.queue_id, sys_flag, flag)
        template = self._templates.get(key)
        if template is None:
            if len(self._templates) >= TEMPLATES_MAX:
                self._templates.clear()
            template = self._templates[key] = SendFrameTemplate(code, send_header_v2(
                self.group, topic, queue.queue_id, sys_flag, 0, flag, "", code == codes.SEND_BATCH_MESSAGE,
                queue.broker_name))
        return template

    async def _refresh(self, topic: str, route: TopicRoute) -> TopicRoute:
        try:
            return await self.routes.refresh(topic)
        except (ClientError, *TRANSPORT_ERRORS) as exc:
            log.info("route refresh of %s failed: %s", topic, exc)
            return route

    def _select(self, route: TopicRoute, avoid: str | None) -> MessageQueue | None:
        queues = self._write_queues.get(route.topic, (None, None))
        if queues[0] is not route:     # a route is replaced, never changed, when it is refreshed
            queues = self._write_queues[route.topic] = (route, route.write_queues())
        queues = queues[1]
        if not queues:
            return None
        for _ in range(len(queues)):
            self._next_queue = (self._next_queue + 1) & 0x7FFFFFFF
            queue = queues[self._next_queue % len(queues)]
            if queue.broker_name != avoid:
                return queue
        return queues[self._next_queue % len(queues)]

    def _result(self, response: RemotingCommand, queue: MessageQueue, born_ms: int, attempt: int,
                ids: list[str]) -> SendResult:
        status = DELIVERED.get(response.code)
        if status is None:
            text = f"{codes.response_name(response.code)} {response.remark or ''}".strip()
            if response.code in RETRIED:
                raise _Attempt(text)
            raise ClientError(f"send to {queue.topic!r} on {queue.broker_name}: {text}")
        answer = headers.SendMessageResponseHeader.from_ext(response.ext_fields)
        return SendResult(status=status, msg_id=",".join(ids), offset_msg_id=answer.msg_id,
                          queue=MessageQueue(queue.topic, queue.broker_name, answer.queue_id),
                          queue_offset=answer.queue_offset, born_timestamp_ms=born_ms, attempts=attempt,
                          msg_ids=list(ids))
