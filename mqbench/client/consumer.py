"""mqbench's consumer: clustering-mode pull consumer against any RocketMQ 4.x/5.x cluster.

Lifecycle: ``subscribe(topic, "*" | "a || b")``, ``await start()``, then ``await receive()`` (or
``async for msg in consumer``), ``await close()``. What runs in the background:

* heartbeat (HEART_BEAT with the subscriptions) to every master of the subscribed topics, at start
  and every ``heartbeat_interval_ms``;
* rebalance at start, every ``rebalance_interval_ms`` and when a broker pushes
  NOTIFY_CONSUMER_IDS_CHANGED: GET_CONSUMER_LIST_BY_GROUP, then ``allocate_averagely`` over the
  topic's readable queues, exactly as RocketMQ clients split them;
* one long-poll loop per assigned queue: the start offset from QUERY_CONSUMER_OFFSET, or, when the
  group has none (QUERY_NOT_FOUND), GET_MIN_OFFSET (``consume_from="first"``) or GET_MAX_OFFSET
  (``"last"``); then PULL_MESSAGE with the suspend flag and ``suspend_timeout_ms``; answers 19/20/21
  move to ``nextBeginOffset``; errors back off ``pull_error_backoff_ms`` and refresh the route; when a
  rebalance finds a queue's read address moved (a failover), its loop pulls anew from there at once
  (a pull suspended on the old address, or hanging on a frozen broker, is dropped: nothing of it
  was taken), so a long ``suspend_timeout_ms`` does not delay following a new leader;
* offset commits (UPDATE_CONSUMER_OFFSET, one-way) every ``commit_interval_ms``, and a confirmed
  commit of every queue on ``close`` and when a queue is taken away by a rebalance.

Offsets: a message counts as consumed once ``receive`` has returned it. The committed offset of a
queue is the offset of its oldest message still buffered, or the next offset to pull when none is
(so a message is committed only after it was handed out: at-least-once). Messages of a queue that
a rebalance took away are dropped from the buffer, as RocketMQ drops its process queue. The
buffer takes a pull's messages at once; a pull loop waits while it holds ``buffer_messages_max``
or more (so it holds at most that plus one pull per assigned queue).
Pulled bodies are decoded by ``messages.decode_pulled`` (inner batches unwrapped, decompressed;
each pull asks ``innerBatchAsStored``, so a BatchCQ queue's inner batches come as stored, and the
messages of one below the pull's offset are left out); tags are also filtered on the client, because the broker filters by tag hash only. A whole record
whose body does not decompress or unwrap (a broker may hold one: another broker's store, a client
that flagged garbage as compressed) is skipped like RocketMQ's client skips it, and reported: an
error log line naming queue, offset and cause, ``skipped_count`` and the most recent ones in
``skipped`` (``SKIPPED_KEPT``). A pull body whose record layout is broken stops that queue and
makes ``receive`` raise ``ClientError`` naming it (the records after it cannot be found).
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from mqbench.broker.formats import codes, headers
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.formats.topics import validate_group, validate_topic
from mqbench.client.connections import TRANSPORT_ERRORS, ClientError
from mqbench.client.messages import ReceivedMessage, decode_pulled, keep_pulled
from mqbench.client.pipeline import FrameTemplate
from mqbench.client.producer import ClientBase
from mqbench.client.routes import MessageQueue, allocate_averagely
from mqbench.codecs.registry import BODY_SIZE_MAX_BYTES, Codec
from mqbench.errors import CorruptDataError, UserError

log = logging.getLogger(__name__)

CONSUME_FROM = {"first": "CONSUME_FROM_FIRST_OFFSET", "last": "CONSUME_FROM_LAST_OFFSET"}
SKIPPED_KEPT = 100


@dataclass(frozen=True)
class SkippedMessage:
    """A message the consumer could not decode and skipped: where it is and why."""
    topic: str
    broker_name: str
    queue_id: int
    queue_offset: int
    reason: str


class _Chunk:
    """The body of one pull, in the buffer until handed out. It is decoded when ``receive`` first
    reaches it (``messages`` is None until then, and ``count`` the pull's offset span, an estimate
    for the buffer's bound), so the next pull of its queue is on the wire while it is decoded.
    ``offset`` is the offset the pull asked for (at most its first message's); ``taken`` counts
    the messages handed out."""

    __slots__ = ("state", "messages", "taken", "body", "offset", "count", "tags")

    def __init__(self, state: "_QueueState", body: bytes, offset: int, count: int, tags: set[str] | None) -> None:
        self.state, self.body, self.offset, self.count, self.tags = state, body, offset, count, tags
        self.messages: list[ReceivedMessage] | None = None
        self.taken = 0


@dataclass
class _QueueState:
    queue: MessageQueue
    next_offset: int = -1                                  # next offset to pull; -1 until known
    inflight: deque = field(default_factory=deque)         # this queue's chunks buffered, in order
    committed: int = -1                                    # last offset sent to the broker
    active: bool = True
    task: asyncio.Task | None = None
    pull_ext: dict | None = None                           # the PULL_MESSAGE header fields, built once
    pull_frame: FrameTemplate | None = None                # and encoded once (for pull_ext's subscription)
    pull_addr: str | None = None                           # where the pull loop sends (its last pull)

    def commit_offset(self) -> int:
        """The oldest offset buffered and not handed out (a chunk not decoded yet: the offset its
        pull asked for), else the next offset to pull."""
        if self.inflight:
            chunk = self.inflight[0]
            messages = chunk.messages
            return chunk.offset if messages is None else messages[chunk.taken].queue_offset
        return self.next_offset


class Consumer(ClientBase):
    def __init__(self, namesrv: str | list[str], group: str, *, consume_from: str = "last",
                 pull_batch_size: int = 32, suspend_timeout_ms: int = 15_000, pull_error_backoff_ms: int = 1000,
                 rebalance_interval_ms: int = 20_000, heartbeat_interval_ms: int = 30_000,
                 commit_interval_ms: int = 5_000, buffer_messages_max: int = 4096,
                 body_size_max: int = BODY_SIZE_MAX_BYTES, codecs: dict[int, Codec] | None = None, **kwargs) -> None:
        super().__init__(namesrv, **kwargs)
        validate_group(group)
        if consume_from not in CONSUME_FROM:
            raise UserError(f"consume_from must be one of {', '.join(CONSUME_FROM)}, not {consume_from!r}")
        self.group = group
        self.consume_from = consume_from
        self.pull_batch_size = pull_batch_size
        self.suspend_timeout_ms = suspend_timeout_ms
        self.pull_error_backoff_ms = pull_error_backoff_ms
        self.rebalance_interval_ms = rebalance_interval_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.commit_interval_ms = commit_interval_ms
        self.body_size_max = body_size_max
        self.codecs = codecs
        self.subscriptions: dict[str, str] = {}
        self.assigned: dict[MessageQueue, _QueueState] = {}
        # messages pulled, not yet handed out: one chunk per pull in a deque, and two events, not a
        # Queue put and get per message (a pull adds its whole batch at once; it waits for room first)
        self._buffer: deque[_Chunk] = deque()
        self._buffered_msgs = 0
        self._buffer_max = max(1, buffer_messages_max)
        self._buffered = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._rebalance_wanted = asyncio.Event()
        self._error: ClientError | None = None
        self._rebalance_lock = asyncio.Lock()
        self._heartbeated: set[str] = set()   # addresses that took a heartbeat from this consumer
        self.skipped_count = 0                  # undecodable messages skipped (module doc)
        self.skipped: deque[SkippedMessage] = deque(maxlen=SKIPPED_KEPT)

    def subscribe(self, topic: str, expression: str = "*") -> None:
        validate_topic(topic)
        self.subscriptions[topic] = expression

    async def start(self) -> "Consumer":
        if not self.subscriptions:
            raise UserError("subscribe to at least one topic before start()")
        await self.heartbeat()
        await self.rebalance()
        self._spawn(self._every(self.heartbeat_interval_ms, self.heartbeat, "consumer heartbeat"), "consumer-heartbeat")
        self._spawn(self._every(self.commit_interval_ms, self.commit, "offset commit"), "consumer-commit")
        self._spawn(self._rebalance_loop(), "consumer-rebalance")
        return self

    async def __aenter__(self) -> "Consumer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __aiter__(self):
        return self

    async def __anext__(self) -> ReceivedMessage:
        while True:
            got = await self.receive(1, timeout_ms=1000)
            if got:
                return got[0]
            if self._closed:
                raise StopAsyncIteration

    # --- receiving -------------------------------------------------------------------------------

    async def receive(self, max_messages: int = 32, timeout_ms: int = 1000) -> list[ReceivedMessage]:
        """Up to ``max_messages`` buffered messages; waits up to ``timeout_ms`` for the first one."""
        if self._error is not None:
            raise self._error
        out: list[ReceivedMessage] = []
        buffer = self._buffer
        if not buffer:
            self._buffered.clear()
            try:
                async with asyncio.timeout(timeout_ms / 1000):   # a timer, not a Task per wait (wait_for)
                    await self._buffered.wait()
            except TimeoutError:
                return out
        while buffer and len(out) < max_messages:
            chunk = buffer[0]
            messages = chunk.messages
            if messages is None:
                if chunk.state.active:
                    messages = self._decode(chunk)
                    if messages is None:        # a broken pull body: its queue stopped (_decode)
                        break
                else:       # the queue went to another consumer, which delivers from the committed offset
                    messages = chunk.messages = []
                    self._buffered_msgs -= chunk.count
                    chunk.count = 0
            taken = chunk.taken
            n = len(messages) - taken
            if chunk.state.active:      # else the queue went to another consumer, which delivers
                n = min(n, max_messages - len(out))      # from the committed offset
                out.extend(messages[taken:taken + n] if taken or n < len(messages) else messages)
            chunk.taken = taken = taken + n
            self._buffered_msgs -= n
            if taken == len(messages):
                buffer.popleft()
                inflight = chunk.state.inflight
                if inflight and inflight[0] is chunk:
                    inflight.popleft()
        if self._buffered_msgs < self._buffer_max:
            self._room.set()
        if not out and self._error is not None:
            raise self._error
        return out

    def _decode(self, chunk: _Chunk) -> list[ReceivedMessage] | None:
        """The fresh messages of ``chunk``'s pull body (tags filtered here too, offsets below the
        pull's left out), kept in the chunk; None when the body's record layout is broken: then
        ``_error`` names it and the chunk's queue stops pulling (the records after it cannot be
        found), so its committed offset stays at this pull's."""
        state = chunk.state
        queue = state.queue
        tags, offset = chunk.tags, chunk.offset
        try:
            messages = decode_pulled(chunk.body, queue.broker_name, body_size_max=self.body_size_max,
                                     codecs=self.codecs, on_undecodable=lambda msg, exc: self._skip(queue, msg, exc))
        except CorruptDataError as exc:
            self._error = ClientError(f"pull from {queue.topic}/{queue.broker_name}/{queue.queue_id} "
                                      f"at offset {offset}: {exc}")
            log.error("%s", self._error)
            if state.task is not None and state.task is not asyncio.current_task():
                state.task.cancel()
            return None
        if tags is not None or not messages or messages[0].queue_offset < offset:
            # (an offset below the pull's was already seen: a broker may answer from an earlier one)
            messages = keep_pulled(messages, offset, tags)
        chunk.messages, chunk.body = messages, b""
        self._buffered_msgs += len(messages) - chunk.count
        chunk.count = len(messages)
        return messages

    # --- background duties -----------------------------------------------------------------------

    async def heartbeat(self) -> int:
        """Heartbeat every master of the subscribed topics; how many took it (0 when no route is
        known yet: the group does not know this consumer)."""
        reached = 0
        for addr in await self._master_addrs():
            reached += await self._heartbeat_to(addr)
        return reached

    async def _heartbeat_to(self, addr: str) -> bool:
        data = headers.consumer_data(self.group, self.subscriptions, consume_from_where=CONSUME_FROM[self.consume_from])
        body = headers.heartbeat_body(self.client_id, [], [data])
        try:
            await self.pool.request(addr, RemotingCommand.request(codes.HEART_BEAT, body=body),
                                    self.request_timeout_ms)
            self._heartbeated.add(addr)
            return True
        except TRANSPORT_ERRORS as exc:
            log.info("heartbeat to %s failed: %s", addr, exc)
            return False

    async def _master_addrs(self) -> list[str]:
        addrs: set[str] = set()
        for topic in self.subscriptions:
            try:
                addrs.update((await self.routes.get(topic)).master_addrs())
            except (ClientError, *TRANSPORT_ERRORS) as exc:
                log.info("route of %s unavailable: %s", topic, exc)
        return sorted(addrs)

    async def _on_server_request(self, cmd: RemotingCommand, channel) -> RemotingCommand | None:
        if cmd.code == codes.NOTIFY_CONSUMER_IDS_CHANGED:
            self._rebalance_wanted.set()
            return None if cmd.is_oneway else cmd.response_to(codes.SUCCESS)
        return await super()._on_server_request(cmd, channel)

    async def _rebalance_loop(self) -> None:
        # Loops also check _closed: asyncio.wait_for in 3.11 can swallow a cancel that races a wakeup.
        while not self._closed:
            try:
                await asyncio.wait_for(self._rebalance_wanted.wait(), self.rebalance_interval_ms / 1000)
            except asyncio.TimeoutError:
                pass
            self._rebalance_wanted.clear()
            if self._closed:
                return
            try:
                await self.rebalance()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep rebalancing on the next tick
                log.warning("rebalance failed: %s", exc)

    async def rebalance(self) -> None:
        """Recompute this consumer's queues and start/stop pull loops to match; restart the loop of a
        queue whose read address moved (module doc)."""
        async with self._rebalance_lock:
            wanted: set[MessageQueue] = set()
            read_addrs: dict[str, str | None] = {}         # broker name -> where its queues are read
            for topic, _expression in sorted(self.subscriptions.items()):
                route = await self.routes.refresh(topic)
                read_addrs.update((name, broker.read_addr()) for name, broker in route.brokers.items())
                queues = route.read_queues()
                addrs = route.master_addrs() or [b.read_addr() for b in route.brokers.values() if b.read_addr()]
                if not queues or not addrs:
                    continue
                if addrs[0] not in self._heartbeated:
                    # a new leader (the route moved since the last heartbeat) does not know this
                    # consumer yet and would answer that none is connected
                    await self._heartbeat_to(addrs[0])
                response = await self.pool.request(addrs[0], RemotingCommand.request(
                    codes.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": self.group}), self.request_timeout_ms)
                if response.code != codes.SUCCESS:
                    self._heartbeated.discard(addrs[0])   # it may have dropped us (a closed connection)
                    raise ClientError(f"consumer list of {self.group!r}: {codes.response_name(response.code)} "
                                      f"{response.remark or ''}")
                wanted.update(allocate_averagely(self.client_id, queues, headers.parse_consumer_list(response.body)))
            for queue in sorted(set(self.assigned) - wanted):
                state = self.assigned.pop(queue)
                state.active = False
                if state.task is not None:
                    state.task.cancel()
                    await asyncio.gather(state.task, return_exceptions=True)
                await self._commit_one(state, confirmed=True)
            if self._closed:
                return
            for queue, state in sorted(self.assigned.items()):
                addr = read_addrs.get(queue.broker_name)
                if (state.task is not None and not state.task.done() and state.pull_addr is not None and addr
                        and addr != state.pull_addr):
                    # the route moved (a failover) while a pull may be suspended on the old address
                    # for up to suspend_timeout_ms (or hang on a frozen broker): pull anew from the
                    # new one. Cancelling leaves the queue's offset and buffered chunks as they are.
                    log.info("%s moved from %s to %s: pulling there", queue, state.pull_addr, addr)
                    state.task.cancel()
                    await asyncio.gather(state.task, return_exceptions=True)
                    state.task = None
            for queue in sorted(wanted):
                state = self.assigned.get(queue) or _QueueState(queue)
                self.assigned[queue] = state
                if state.task is None:
                    state.task = asyncio.get_running_loop().create_task(self._pull_loop(state), name=f"pull {queue}")

    async def commit(self, confirmed: bool = False) -> None:
        for state in list(self.assigned.values()):
            await self._commit_one(state, confirmed)

    async def _commit_one(self, state: _QueueState, confirmed: bool) -> None:
        """Commit the queue's offset on its group's leader. Every commit waits for the answer (a
        one-way commit cannot notice a follower's not-leader refusal): on a refusal the route is
        fetched afresh and the commit sent once more, so a leadership move never loses a commit
        until the route cache expires."""
        offset = state.commit_offset()
        if offset < 0 or offset == state.committed:
            return
        cmd_fields = headers.UpdateConsumerOffsetHeader(self.group, state.queue.topic, state.queue.queue_id,
                                                        offset).to_ext()
        for attempt in range(2):
            if attempt:
                try:
                    await self.routes.refresh(state.queue.topic)
                except (ClientError, *TRANSPORT_ERRORS) as exc:
                    log.info("commit of %s at %d: route refresh failed: %s", state.queue, offset, exc)
                    return
            addr = await self._broker_addr(state.queue)
            if addr is None:
                continue
            cmd = RemotingCommand.request(codes.UPDATE_CONSUMER_OFFSET, dict(cmd_fields))
            try:
                response = await self.pool.request(addr, cmd, self.request_timeout_ms)
            except TRANSPORT_ERRORS as exc:
                log.info("commit of %s at %d failed: %s", state.queue, offset, exc)
                continue
            if response.code == codes.SUCCESS:
                state.committed = offset
                return
            log.info("commit of %s at %d refused by %s: %s %s", state.queue, offset, addr,
                     codes.response_name(response.code), response.remark or "")
        if confirmed:
            log.warning("commit of %s at %d did not reach the leader", state.queue, offset)

    async def _broker_addr(self, queue: MessageQueue) -> str | None:
        route = await self.routes.get(queue.topic)
        broker = route.brokers.get(queue.broker_name)
        return broker.read_addr() if broker is not None else None

    # --- pulling ---------------------------------------------------------------------------------

    async def _pull_loop(self, state: _QueueState) -> None:
        """Pull the queue until it is taken away. The next pull is queued on the connection before
        the receiver is woken for the body just buffered, so the broker reads the queue on while
        this process decodes (one pull in flight per queue, as RocketMQ's consumer has)."""
        queue = state.queue
        tags = headers.parse_tag_expression(self.subscriptions.get(queue.topic))
        buffered = False            # a chunk the receiver has not been woken for yet
        try:
            while state.active:
                try:
                    addr = await self._broker_addr(queue)
                    if addr is None:
                        raise ClientError(f"no broker address for {queue.broker_name}")
                    state.pull_addr = addr
                    if state.next_offset < 0:
                        state.next_offset = await self._start_offset(addr, queue)
                        state.committed = state.next_offset
                    try:
                        pending = await self._send_pull(addr, state)
                    finally:
                        if buffered:
                            buffered = False
                            self._buffered.set()
                    response = await pending
                    buffered = await self._on_pull_response(state, response, tags)
                except asyncio.CancelledError:
                    raise
                except (ClientError, *TRANSPORT_ERRORS) as exc:
                    log.info("pull from %s failed: %s", queue, exc)
                    await self._backoff(queue)
        finally:
            if buffered:
                self._buffered.set()

    async def _backoff(self, queue: MessageQueue) -> None:
        await asyncio.sleep(self.pull_error_backoff_ms / 1000)
        try:
            await self.routes.refresh(queue.topic)
        except (ClientError, *TRANSPORT_ERRORS) as exc:
            log.info("route refresh of %s failed: %s", queue.topic, exc)

    async def _start_offset(self, addr: str, queue: MessageQueue) -> int:
        response = await self.pool.request(addr, RemotingCommand.request(
            codes.QUERY_CONSUMER_OFFSET, headers.QueryConsumerOffsetHeader(self.group, queue.topic,
                                                                           queue.queue_id).to_ext()),
            self.request_timeout_ms)
        if response.code == codes.SUCCESS:
            offset = headers.OffsetResponseHeader.from_ext(response.ext_fields).offset
            if offset >= 0:
                return offset
        elif response.code != codes.QUERY_NOT_FOUND:
            raise ClientError(f"offset of {self.group!r} on {queue}: {codes.response_name(response.code)} "
                              f"{response.remark or ''}")
        code = codes.GET_MIN_OFFSET if self.consume_from == "first" else codes.GET_MAX_OFFSET
        response = await self.pool.request(addr, RemotingCommand.request(
            code, headers.QueueOffsetHeader(queue.topic, queue.queue_id).to_ext()), self.request_timeout_ms)
        if response.code != codes.SUCCESS:
            raise ClientError(f"{codes.request_name(code)} of {queue}: {codes.response_name(response.code)} "
                              f"{response.remark or ''}")
        return headers.OffsetResponseHeader.from_ext(response.ext_fields).offset

    def _pull_fields(self, state: _QueueState) -> tuple[dict, tuple[str, str, str]]:
        """The queue's PULL_MESSAGE header fields (fixed per queue and subscription: built once) and
        the three that change per pull: (queueOffset, sysFlag, commitOffset)."""
        commit = state.commit_offset()
        sys_flag = codes.PULL_FLAG_SUSPEND | codes.PULL_FLAG_SUBSCRIPTION
        if commit > 0 and commit != state.committed:
            sys_flag |= codes.PULL_FLAG_COMMIT_OFFSET
        subscription = self.subscriptions.get(state.queue.topic, "*")
        template = state.pull_ext
        if template is None or template.get("subscription") != subscription:
            template = state.pull_ext = headers.PullMessageHeader(
                consumer_group=self.group, topic=state.queue.topic, queue_id=state.queue.queue_id, queue_offset=0,
                max_msg_nums=self.pull_batch_size, sys_flag=0, commit_offset=0,
                suspend_timeout_ms=self.suspend_timeout_ms, subscription=subscription, sub_version=0,
                expression_type="TAG", inner_batch_as_stored=True).to_ext()
            state.pull_frame = None
        return template, (str(state.next_offset), str(sys_flag), str(max(commit, 0)))

    def _pull_request(self, state: _QueueState) -> RemotingCommand:
        template, (queue_offset, sys_flag, commit) = self._pull_fields(state)
        ext = dict(template)
        ext["queueOffset"], ext["sysFlag"], ext["commitOffset"] = queue_offset, sys_flag, commit
        return RemotingCommand.request(codes.PULL_MESSAGE, ext)

    async def _send_pull(self, addr: str, state: _QueueState) -> asyncio.Future:
        """Queue the queue's next PULL_MESSAGE on ``addr``'s connection; the future gets the answer.
        Without credentials the frame is submitted as it is (no Task, no timer per pull); a signed
        pull goes through ``request`` in a Task."""
        timeout_ms = self.suspend_timeout_ms + self.request_timeout_ms
        channel = await self.pool.channel(addr)
        if channel.credentials is not None:
            return asyncio.ensure_future(channel.request(self._pull_request(state), timeout_ms))
        # the frame encoded once per queue, the three fields that change spliced in (pipeline.py)
        template, values = self._pull_fields(state)
        frame = state.pull_frame
        if frame is None:
            frame = state.pull_frame = FrameTemplate(codes.PULL_MESSAGE, template,
                                                     ("queueOffset", "sysFlag", "commitOffset"))
        opaque = channel.next_opaque()
        return channel.submit(opaque, frame.frame(opaque, tuple(v.encode() for v in values)), timeout_ms)

    async def _on_pull_response(self, state: _QueueState, response: RemotingCommand, tags: set[str] | None) -> bool:
        """Move the queue to the answer's next offset; a SUCCESS body goes into the buffer as one
        chunk, decoded by ``receive`` (after waiting for room). Whether a chunk was buffered (the
        caller wakes the receiver once the next pull is queued)."""
        queue = state.queue
        if response.code not in (codes.SUCCESS, codes.PULL_NOT_FOUND, codes.PULL_RETRY_IMMEDIATELY,
                                 codes.PULL_OFFSET_MOVED):
            raise ClientError(f"{codes.response_name(response.code)} {response.remark or ''}")
        answer = headers.PullMessageResponseHeader.from_ext(response.ext_fields)
        buffered = False
        if response.code == codes.SUCCESS and response.body:
            while self._buffered_msgs >= self._buffer_max and state.active:
                self._room.clear()
                await self._room.wait()
            if state.active:
                chunk = _Chunk(state, response.body, state.next_offset,
                               max(1, answer.next_begin_offset - state.next_offset), tags)
                state.inflight.append(chunk)
                self._buffer.append(chunk)
                self._buffered_msgs += chunk.count
                buffered = True
        elif response.code == codes.PULL_OFFSET_MOVED:
            log.warning("offset %d of %s moved to %d", state.next_offset, queue, answer.next_begin_offset)
        if state.active:
            state.next_offset = answer.next_begin_offset
        return buffered

    def _skip(self, queue: MessageQueue, msg, exc: CorruptDataError) -> None:
        skipped = SkippedMessage(msg.topic, queue.broker_name, msg.queue_id, msg.queue_offset, str(exc))
        self.skipped_count += 1
        self.skipped.append(skipped)
        log.error("consumer %s skips %s/%s/%d offset %d: it cannot be decoded (%s)", self.group, msg.topic,
                  queue.broker_name, msg.queue_id, msg.queue_offset, exc)

    async def close(self) -> None:
        """Stop pulling, commit every queue's offset (confirmed), unregister, close connections."""
        if self._closed:
            return
        self._closed = True
        await self._stop_tasks()  # heartbeat, commit and rebalance loops first: no new queues after this
        async with self._rebalance_lock:
            for state in self.assigned.values():
                state.active = False
                if state.task is not None:
                    state.task.cancel()
            await asyncio.gather(*(s.task for s in self.assigned.values() if s.task), return_exceptions=True)
        await self.commit(confirmed=True)
        for addr in await self._master_addrs():
            try:
                await self.pool.request(addr, RemotingCommand.request(
                    codes.UNREGISTER_CLIENT, {"clientID": self.client_id, "consumerGroup": self.group}),
                    self.request_timeout_ms)
            except TRANSPORT_ERRORS as exc:
                log.info("unregister from %s failed: %s", addr, exc)
        await self.pool.close()
