"""SEND_MESSAGE (10, long header names), SEND_MESSAGE_V2 (310, one-letter names),
SEND_BATCH_MESSAGE (320), and CONSUMER_SEND_MSG_BACK (36, see ``on_send_back``).

Contract (what the client sees; RocketMQ's ``SendMessageProcessor`` behaviour unless said):

* Only the leader takes a send; a follower answers the not-leader response (``handlers``).
* The answer comes once the entry is committed by the group's quorum (``group.put`` returns
  then), with ``msgId`` (the offsetMsgId: store host + commitlog offset; for a batch stored as
  separate records, the ids joined by commas), ``queueId``, ``queueOffset`` (the first message's)
  and ``transactionId`` (the message's, or the batch's, ``PROPERTY_UNIQ_KEY``).
* The topic must be a valid name (``../x``: MESSAGE_ILLEGAL 13 naming the problem) that clients
  may send to: an internal topic (``rmq_sys_*``, ``SCHEDULE_TOPIC_XXXX``...) is NO_PERMISSION 16,
  "Sending message to topic[T] is forbidden.", as RocketMQ answers. An unknown topic is created with 4 queues (autoCreateTopicEnable), which
  also covers ``%RETRY%<group>`` topics. A ``queueId`` below 0 picks a random queue; one at or
  beyond the topic's write queues is SYSTEM_ERROR; a topic without the write perm NO_PERMISSION 16.
* Bodies (a whole batch body for a batch) larger than ``message_bytes_max`` (4 MiB) and empty
  bodies are MESSAGE_ILLEGAL; so are malformed property strings and batch bodies.
* A batch holds at most ``BATCH_MESSAGES_MAX`` (1,024) messages, or 32,767 to a BatchCQ topic (one
  record): more is MESSAGE_ILLEGAL ("split it"), found while walking the body, so a huge batch
  never holds up the event loop (the per-request work bound).
* A batch body is checked whole first (``compression.decode_client_batch``: item layout, count,
  and for a whole-batch compressed body the envelope and a bounded decompression); a bad one is
  MESSAGE_ILLEGAL naming the byte offset. To a topic with ``queue.type=BatchCQ`` the batch is
  stored as ONE record (``consolidate=True``) with the request's sysflag passed through, the
  compressed STREAM as its body when the sysflag says compressed. To any other topic it is stored
  as one record per message; a compressed batch is stored decompressed there (its messages
  carry no codec bits), since each record's COMPRESSED flag must describe its own body. A plain
  batch to a BatchCQ topic is stored as sent, with no item decoded, when its body is exactly what
  the encoder writes (``canonical_batch_count``) and no item can hold a delay property or need its
  property room checked; the answers and stored bytes are the same as decoding it.
* A single message passes through ``ctx.message_rewriters`` before it is put (the delay service
  moves DELAY / TIMER_* messages to its topics there). Its properties as stored (after those
  additions) may take at most ``SEND_PROPERTIES_BYTES_MAX`` (31,743) bytes, else MESSAGE_ILLEGAL:
  the remaining ``PROPERTIES_RESERVE_BYTES`` of the record's 32,767 are kept for what a later
  re-put adds (a delayed delivery's TIMER_*/source properties, a send-back's RETRY_TOPIC,
  ORIGIN_MESSAGE_ID, DELAY and REAL_*), so a message accepted once can always be re-put. The same
  bound holds for each message of a batch.
* A single message flagged compressed (COMPRESSED and the codec in the compression-type bits) must
  decompress, within ``message_bytes_max``, with that codec: else MESSAGE_ILLEGAL naming the codec
  error. Consumers could not read it, so it is never stored.
* Transactional (prepared) messages are refused with NO_PERMISSION: the reference broker has no
  transaction check service, so a half message would never be resolved.

The sends of one read (consecutive SEND_MESSAGE or SEND_MESSAGE_V2 requests of one connection,
``on_send_many``, the channel's ``on_batch``) are checked one by one by the same rules, with the
same answers, and those that pass are proposed together: one Raft proposal of one entry per
message, committed, applied and answered together (each still acknowledged only once its own
entry is committed). A request that must wait first (its topic is created on this first send, a
batch flag, ACL on) takes the single-request path beside them.
"""
from __future__ import annotations

import asyncio

from mqbench import hop_trace
from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.formats.command import RemotingCommand, send_success_frame
from mqbench.broker.formats.command import parse_java_long
from mqbench.broker.formats.headers import HeaderError
from mqbench.broker.server.handlers import REFUSALS, BrokerContext, Refused, log, peer_host, refusal_response
from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_layout
from mqbench.broker.formats.batch import canonical_batch_count
from mqbench.broker.formats.compression import (
    BATCH_ITEMS_MAX,
    SYSFLAG_COMPRESSION_BITS,
    decode_client_batch,
    decompress_body,
)
from mqbench.broker.formats.configs import PERM_WRITE, TopicConfig
from mqbench.broker.formats.topics import (
    client_may_send,
    dlq_topic,
    retry_topic,
    validate_group,
    validate_topic,
)
from mqbench.errors import CorruptDataError
from mqbench.broker.formats.properties import (
    PROPERTY_DELAY,
    PROPERTY_ORIGIN_MESSAGE_ID,
    PROPERTY_RETRY_TOPIC,
    PROPERTY_TIMER_DELAY_MS,
    PROPERTY_TIMER_DELAY_SEC,
    PROPERTY_TIMER_DELIVER_MS,
    PROPERTY_UNIQ_KEY,
)

MAX_RECONSUME_TIMES = 16   # RocketMQ's default maxReconsumeTimes
RECORD_BYTES_MAX = 64 * 1024 * 1024
PROPERTIES_RESERVE_BYTES = 1024
#: The per-request work bound: a batch stored one record per message holds at most this many
#: (each is a Raft entry appended, applied and answered on the event loop); a BatchCQ topic's
#: batch is one record and may hold up to BATCH_ITEMS_MAX (32,767).
BATCH_MESSAGES_MAX = 1024
SEND_PROPERTIES_BYTES_MAX = record_layout.PROPERTIES_MAX_BYTES - PROPERTIES_RESERVE_BYTES
_PROPERTY_ADDITIONS_CHARS_MAX = 600   # what rewriters add at most, in characters (a topic, a time, ...)


def check_properties_room(properties: dict[str, str], topic: str, wire_chars: int | None = None) -> None:
    """MESSAGE_ILLEGAL when ``properties`` (as they will be stored) leave less than
    ``PROPERTIES_RESERVE_BYTES`` of room for a later re-put (module doc). ``wire_chars``: the
    length of the property string as sent, when ``properties`` are it plus what rewriters added
    (at most ``_PROPERTY_ADDITIONS_CHARS_MAX``): a short one needs no look at the dict."""
    if wire_chars is not None and (wire_chars + _PROPERTY_ADDITIONS_CHARS_MAX) * 4 <= SEND_PROPERTIES_BYTES_MAX:
        return
    chars = sum(len(k) + len(v) + 2 for k, v in properties.items() if v is not None)
    if chars * 4 <= SEND_PROPERTIES_BYTES_MAX:    # a character is at most 4 UTF-8 bytes: no need to encode
        return
    size = len(rec.encode_properties(properties))
    if size > SEND_PROPERTIES_BYTES_MAX:
        raise Refused(codes.MESSAGE_ILLEGAL, f"message properties to {topic} take {size} bytes as stored, over the "
                                             f"maximum of {SEND_PROPERTIES_BYTES_MAX} (32767 minus "
                                             f"{PROPERTIES_RESERVE_BYTES} kept for delivery and retry)")


def check_compressed_body(body: bytes, sys_flag: int, topic: str, size_max: int) -> None:
    """MESSAGE_ILLEGAL unless a body flagged compressed decompresses within ``size_max`` (module doc)."""
    if not sys_flag & SYSFLAG_COMPRESSION_BITS:
        return
    try:
        decompress_body(body, sys_flag, size_max=size_max)
    except CorruptDataError as exc:
        raise Refused(codes.MESSAGE_ILLEGAL, f"message body to {topic} is flagged compressed (sysflag "
                                             f"0x{sys_flag:x}) but does not decompress: {exc}") from None


_SENDABLE_TOPICS: set[str] = set()     # names that passed _check_send_topic (a pure function of the name)
_SENDABLE_TOPICS_MAX = 65_536


def _check_send_topic(topic: str) -> None:
    if topic in _SENDABLE_TOPICS:
        return
    validate_topic(topic)
    if not client_may_send(topic):
        raise Refused(codes.NO_PERMISSION, f"Sending message to topic[{topic}] is forbidden.")
    if len(_SENDABLE_TOPICS) >= _SENDABLE_TOPICS_MAX:
        _SENDABLE_TOPICS.clear()
    _SENDABLE_TOPICS.add(topic)


async def _prepare(ctx: BrokerContext, cmd: RemotingCommand, parsed: headers.SendMessageHeader | None = None,
                   ) -> tuple[headers.SendMessageHeader, TopicConfig, int]:
    """The parsed header, the topic's config (created if needed) and the queue id to write to;
    ``parsed``: ``cmd``'s header when the caller parsed it already (parsed once per request)."""
    header = _checked_header(ctx, cmd, parsed=parsed)
    cfg = ctx.topic_config(header.topic) or await ctx.ensure_topic(header.topic)
    return header, cfg, _queue_id(ctx, header, cfg)


def _checked_header(ctx: BrokerContext, cmd: RemotingCommand, leader: bool = False,
                    parsed: headers.SendMessageHeader | None = None) -> headers.SendMessageHeader:
    """The parsed send header, after the checks that need no topic config; ``leader``: the caller
    saw ``ctx.is_leader()`` true in this loop turn; ``parsed``: ``headers.send_header(cmd)``
    when the caller has it."""
    header = headers.send_header(cmd) if parsed is None else parsed
    _check_send_topic(header.topic)
    if not leader:
        ctx.require_leader(f"send to {header.topic}")
    if not cmd.body:
        raise Refused(codes.MESSAGE_ILLEGAL, f"message body to {header.topic} is empty")
    if len(cmd.body) > ctx.message_bytes_max:
        raise Refused(codes.MESSAGE_ILLEGAL, f"message body of {len(cmd.body)} bytes to {header.topic} exceeds "
                                             f"the maximum of {ctx.message_bytes_max} bytes")
    if header.sys_flag & record_layout.SYSFLAG_TX_MASK == record_layout.SYSFLAG_TX_PREPARED:
        raise Refused(codes.NO_PERMISSION, f"{ctx.broker_name} does not take transactional (prepared) messages")
    return header


def _queue_id(ctx: BrokerContext, header: headers.SendMessageHeader, cfg: TopicConfig) -> int:
    """The queue id to write to (the header's, or a random one for a negative id); refused when
    the topic is not writable or has no such queue."""
    if not cfg.perm & PERM_WRITE:
        raise Refused(codes.NO_PERMISSION, f"topic {header.topic} is not writable on {ctx.broker_name} "
                                           f"(perm {cfg.perm})")
    queue_id = header.queue_id
    if queue_id < 0:
        queue_id = ctx.rng.randrange(cfg.write_queue_nums)
    if queue_id >= cfg.write_queue_nums:
        raise Refused(codes.SYSTEM_ERROR, f"queueId {queue_id} is illegal: topic {header.topic} has "
                                          f"{cfg.write_queue_nums} write queues on {ctx.broker_name}")
    return queue_id


def _response(ctx: BrokerContext, cmd: RemotingCommand, topic: str, result, queue_id: int,
              transaction_id: str | None, message_count: int) -> RemotingCommand:
    ids = getattr(result, "msg_ids", None) or [result.msg_id]
    ctx.stats.record_put(topic, message_count, ctx.clock_ms())
    ctx.counters.put_message_count += message_count
    ctx.counters.put_request_count += 1
    return _success(cmd, ids[0] if len(ids) == 1 else ",".join(ids), getattr(result, "queue_id", queue_id),
                    result.queue_offset, transaction_id)


def _success(cmd: RemotingCommand, msg_id: str, queue_id: int, queue_offset: int,
             transaction_id: str | None) -> RemotingCommand:
    # SendMessageResponseHeader's wire names, built directly: one response per request
    ext = {"msgId": msg_id, "queueId": str(queue_id), "queueOffset": str(queue_offset)}
    if transaction_id is not None:
        ext["transactionId"] = transaction_id
    return RemotingCommand(code=codes.SUCCESS, opaque=cmd.opaque, flag=codes.FLAG_RESPONSE, language="JAVA",
                           version=cmd.version, ext_fields=ext, serialize_type=cmd.serialize_type)


def _born_host(channel: Channel) -> tuple[str, int]:
    """``peer_host(channel)``, parsed once per connection."""
    attributes = getattr(channel, "attributes", None)
    if attributes is None:
        return peer_host(channel)
    host = attributes.get("born_host")
    if host is None:
        host = attributes["born_host"] = peer_host(channel)
    return host  # type: ignore[return-value]


async def on_send(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    batch_field = "m" if cmd.code == codes.SEND_MESSAGE_V2 else "batch"
    if cmd.ext_fields.get(batch_field, "").lower() == "true":   # RocketMQ dispatches on the batch flag
        return await on_send_batch(ctx, cmd, channel)
    header, _cfg, queue_id = await _prepare(ctx, cmd)
    stored, transaction_id = _stored_message(ctx, cmd, channel, header, queue_id)
    result = await ctx.group.put(stored)
    return _response(ctx, cmd, header.topic, result, queue_id, transaction_id, 1)


def _stored_message(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel, header: headers.SendMessageHeader,
                    queue_id: int) -> tuple[rec.Message, str | None]:
    """The message to store for a single send (after the rewriters) and its transaction id."""
    if header.sys_flag & (record_layout.SYSFLAG_INNER_BATCH | record_layout.SYSFLAG_NEED_UNWRAP):
        raise Refused(codes.MESSAGE_ILLEGAL, "a single message cannot carry the inner-batch sysflag bits")
    check_compressed_body(cmd.body, header.sys_flag, header.topic, ctx.message_bytes_max)
    wire = header.properties or ""
    properties = rec.decode_properties(wire)
    msg = rec.Message(topic=header.topic, body=cmd.body, properties=properties, queue_id=queue_id, flag=header.flag,
                      sysflag=header.sys_flag, born_timestamp_ms=header.born_timestamp_ms,
                      born_host=_born_host(channel), reconsume_times=header.reconsume_times or 0)
    stored = ctx.rewrite(msg)
    check_properties_room(stored.properties, header.topic, len(wire))
    return stored, properties.get(PROPERTY_UNIQ_KEY)


_FIELDS_SYSFLAG_REFUSED = record_layout.SYSFLAG_INNER_BATCH | record_layout.SYSFLAG_NEED_UNWRAP | record_layout.SYSFLAG_TX_MASK


def _fields_record(ctx: BrokerContext, group, cmd: RemotingCommand, channel: Channel,
                   header: headers.SendMessageHeader, queue_id: int, writable: bool) -> tuple[bytes, str | None] | None:
    """``_stored_message`` + ``prepare_put`` for a usual send, built straight from the request's
    fields (``prepare_fields_put``: the same record): no transaction or inner-batch bits, the
    property string exactly as ``encode_properties`` writes it (stored as sent), and either no
    rewriter acting on it or rewriters that rewrite it on its fields (``ctx.rewrite_fields``: a
    delayed message moved to its delay level's queue, REAL_TOPIC/REAL_QID appended to the string).
    The record and transaction id; None: take the ``Message`` path."""
    sys_flag = header.sys_flag
    if sys_flag & _FIELDS_SYSFLAG_REFUSED:
        return None
    wire = header.properties or ""
    properties = rec.decode_properties(wire)
    if wire and (wire[-1] != record_layout.PROPERTY_SEPARATOR or wire.count(record_layout.PROPERTY_SEPARATOR) != len(properties)):
        return None                       # not canonical: stored as encode_properties rewrites it
    topic, sent_chars = header.topic, len(wire)
    if ctx.message_rewriters and ctx.may_rewrite(topic, properties):
        moved = ctx.rewrite_fields(topic, queue_id, sys_flag, properties, wire)
        if moved is None:
            return None
        topic, queue_id, properties, wire = moved
    check_compressed_body(cmd.body, sys_flag, header.topic, ctx.message_bytes_max)
    check_properties_room(properties, header.topic, sent_chars)
    record = group.prepare_fields_put(topic, queue_id, cmd.body, properties, wire.encode("utf-8"),
                                      flag=header.flag, sysflag=sys_flag, born_timestamp_ms=header.born_timestamp_ms,
                                      born_host=_born_host(channel), reconsume_times=header.reconsume_times or 0,
                                      writable=writable)
    return record, properties.get(PROPERTY_UNIQ_KEY)


async def on_send_many(ctx: BrokerContext, cmds: list[RemotingCommand], channel: Channel, one) -> list:
    """The sends of one read (module doc): one response per request, in order. ``one`` is the
    wrapped single-request handler, for the requests that take that path."""
    responses: list = [None] * len(cmds)
    if ctx.acl is not None:
        slow = list(range(len(cmds)))
        fast: list[tuple[int, RemotingCommand, str, str | None]] = []
        records: list[bytes] = []
    else:
        slow, fast, records = [], [], []
        group = ctx.group
        leader = ctx.is_leader()                  # nothing in this loop can change either
        writable = leader and group.writable()
        batch_field = "m" if cmds[0].code == codes.SEND_MESSAGE_V2 else "batch"   # the channel groups by code
        for i, cmd in enumerate(cmds):
            try:
                if cmd.ext_fields.get(batch_field, "").lower() == "true":
                    slow.append(i)
                    continue
                header = _checked_header(ctx, cmd, leader)
                cfg = ctx.topic_config(header.topic)
                if cfg is None:            # created on this send: it waits for that
                    slow.append(i)
                    continue
                queue_id = _queue_id(ctx, header, cfg)
                built = _fields_record(ctx, group, cmd, channel, header, queue_id, writable)
                if built is None:
                    stored, transaction_id = _stored_message(ctx, cmd, channel, header, queue_id)
                    built = group.prepare_put(stored, writable=writable), transaction_id
                records.append(built[0])
                fast.append((i, cmd, header.topic, built[1]))
            except REFUSALS as exc:
                responses[i] = refusal_response(ctx, cmd, exc, codes.MESSAGE_ILLEGAL)
            except Exception as exc:  # noqa: BLE001 - answered as the channel answers a failed handler
                responses[i] = channel.failure_response(cmd, exc)
    return await propose_then_wait(ctx, cmds, channel, one, fast, records, slow, responses)


async def propose_then_wait(ctx: BrokerContext, cmds: list[RemotingCommand], channel: Channel, one,
                            fast: list[tuple[int, RemotingCommand, str, str | None]], records: list[bytes],
                            slow: list[int], responses: list, counts: list[int] | None = None) -> list:
    """The end of a read's handled-together sends (``on_send_many``, ``handlers_send_batch``):
    ``records`` (those of ``fast``) proposed as one proposal, and the requests of ``slow`` handled
    by ``one`` each, started after that proposal (they come after it in the log); every response
    filled in (a failure as the channel answers a failed handler) and ``responses`` returned. A
    slow request still running when this is cancelled is cancelled with it."""
    waiting = [asyncio.ensure_future(one(cmds[i], channel)) for i in slow]
    try:
        if records:
            await _propose_fast(ctx, fast, records, responses, channel, counts)
        if waiting:
            outcomes = await asyncio.gather(*waiting, return_exceptions=True)
            for i, outcome in zip(slow, outcomes):
                responses[i] = (channel.failure_response(cmds[i], outcome) if isinstance(outcome, BaseException)
                                else outcome)
    finally:
        for task in waiting:
            if not task.done():
                task.cancel()
    return responses


async def _propose_fast(ctx: BrokerContext, fast: list[tuple[int, RemotingCommand, str, str | None]],
                        records: list[bytes], responses: list, channel: Channel,
                        counts: list[int] | None = None) -> None:
    """Propose ``records`` (one per request of ``fast``) as one proposal and fill in the responses
    of ``fast`` from the results; ``counts``: the messages each record holds (None: one each)."""
    if hop_trace.ON:
        for _i, cmd, _topic, _tid in fast:
            hop_trace.mark("p", channel._trace_key, cmd.opaque)
    try:
        results = await ctx.group.propose_puts(records, counts)
        if hop_trace.ON:
            for _i, cmd, _topic, _tid in fast:
                hop_trace.mark("c", channel._trace_key, cmd.opaque)
    except REFUSALS as exc:
        for i, cmd, _topic, _tid in fast:
            responses[i] = refusal_response(ctx, cmd, exc, codes.MESSAGE_ILLEGAL)
        return
    except Exception as exc:  # noqa: BLE001 - answered as the channel answers a failed handler
        for i, cmd, _topic, _tid in fast:
            responses[i] = channel.failure_response(cmd, exc)
        return
    now_ms = ctx.clock_ms()
    per_topic: dict[str, tuple[int, int]] = {}       # topic -> (messages, requests)
    for n, ((i, cmd, topic, transaction_id), result) in enumerate(zip(fast, results)):
        messages, requests = per_topic.get(topic, (0, 0))
        per_topic[topic] = (messages + (1 if counts is None else counts[n]), requests + 1)
        if cmd.serialize_type == codes.SERIALIZE_JSON:
            responses[i] = send_success_frame(cmd.opaque, cmd.version, result.msg_id, result.queue_id,
                                              result.queue_offset, transaction_id)
        else:
            responses[i] = _success(cmd, result.msg_id, result.queue_id, result.queue_offset, transaction_id)
    for topic, (messages, requests) in per_topic.items():
        ctx.stats.record_put(topic, messages, now_ms, requests=requests)
    ctx.counters.put_message_count += len(fast) if counts is None else sum(counts)
    ctx.counters.put_request_count += len(fast)


_DELAY_KEYS = frozenset({PROPERTY_DELAY, PROPERTY_TIMER_DELIVER_MS, PROPERTY_TIMER_DELAY_SEC, PROPERTY_TIMER_DELAY_MS})
_DELAY_NAMES = frozenset(key.encode() for key in _DELAY_KEYS)
_DELAY_MARKS = (b"DELAY", b"TIMER_DELIVER_MS")     # each name in _DELAY_KEYS holds one of these


def _stored_as_sent(ctx: BrokerContext, cmd: RemotingCommand, header, existing: TopicConfig | None) -> int | None:
    """The message count of a plain batch to a BatchCQ topic whose body the inner-batch record can
    store as sent (``canonical_batch_count``: what ``encode_batch(decode_batch(body))`` gives), when
    no item holds a delay property and every item's properties with the batch's fit the room check
    (an item's string no longer than the bound less the batch's string: the merged properties
    encode to at most both); else None, and the batch is decoded item by item as before, which
    refuses what is refused. No property dict is built on this path."""
    if existing is None or not existing.is_batch_cq or header.sys_flag & SYSFLAG_COMPRESSION_BITS:
        return None
    body = cmd.body
    if len(body) > ctx.message_bytes_max:
        return None
    room = SEND_PROPERTIES_BYTES_MAX - len((header.properties or "").encode("utf-8", "surrogatepass"))
    return canonical_batch_count(body, items_max=BATCH_ITEMS_MAX, names_refused=_DELAY_NAMES,
                                 properties_bytes_max=room)


async def on_send_batch(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    header = headers.send_header(cmd)
    _check_send_topic(header.topic)
    # the whole body is checked before anything happens (no topic is auto-created for a bad batch)
    existing = ctx.topic_config(header.topic)
    items_max = BATCH_ITEMS_MAX if existing is not None and existing.is_batch_cq else BATCH_MESSAGES_MAX
    as_sent = _stored_as_sent(ctx, cmd, header, existing)
    batch = None if as_sent is not None else decode_client_batch(
        cmd.body, header.sys_flag, size_max=ctx.message_bytes_max, where=f"batch body to {header.topic}",
        items_max=items_max)
    header, cfg, queue_id = await _prepare(ctx, cmd, header)
    if batch is None and not cfg.is_batch_cq:    # the topic changed meanwhile: decoded after all
        batch = decode_client_batch(cmd.body, header.sys_flag, size_max=ctx.message_bytes_max,
                                    where=f"batch body to {header.topic}", items_max=BATCH_MESSAGES_MAX)
    properties = rec.decode_properties(header.properties or "")
    # an item's delay property name is in a plain body's bytes: without one, no item is looked at
    delayed = _DELAY_KEYS.intersection(properties) or batch is not None and (
        header.sys_flag & SYSFLAG_COMPRESSION_BITS or any(mark in cmd.body for mark in _DELAY_MARKS)) and next(
        (keys for item in batch.items if (keys := _DELAY_KEYS.intersection(item.properties))), None)
    if delayed:  # RocketMQ refuses these too: a batch shares one queue and one delivery time
        raise Refused(codes.MESSAGE_ILLEGAL, f"a batch to {header.topic} cannot carry delay properties "
                                             f"({', '.join(sorted(delayed))}); send delayed messages one by one")
    compressed = bool(header.sys_flag & SYSFLAG_COMPRESSION_BITS)
    # a plain body shorter than the bound cannot hold an item's properties over it; a batch stored as
    # sent (batch None) had each item's string held to the room left by the batch's (_stored_as_sent)
    if batch is not None and (compressed or len(cmd.body) + len(header.properties or "") * 4
                              > SEND_PROPERTIES_BYTES_MAX):
        for item in batch.items:
            check_properties_room({**properties, **item.properties}, header.topic)
    common = dict(properties=properties, born_timestamp_ms=header.born_timestamp_ms, born_host=_born_host(channel))
    if batch is None:       # a BatchCQ topic's plain batch, stored as sent (_stored_as_sent)
        result = await ctx.group.put_batch(header.topic, queue_id, as_sent, consolidate=True,
                                           sysflag=header.sys_flag, inner_body=cmd.body, **common)
        return _response(ctx, cmd, header.topic, result, queue_id, properties.get(PROPERTY_UNIQ_KEY), as_sent)
    if cfg.is_batch_cq and compressed:
        result = await ctx.group.put_batch(header.topic, queue_id, batch.items, consolidate=True,
                                           sysflag=header.sys_flag, inner_body=batch.stored_body, **common)
    else:
        # a plain batch keeps its sysflag; a compressed one to a non-BatchCQ topic was checked and
        # decompressed above and is stored as plain messages, so their sysflag drops the codec bits
        result = await ctx.group.put_batch(header.topic, queue_id, batch.items, consolidate=cfg.is_batch_cq,
                                           sysflag=header.sys_flag & ~SYSFLAG_COMPRESSION_BITS, **common)
    return _response(ctx, cmd, header.topic, result, queue_id, properties.get(PROPERTY_UNIQ_KEY), batch.count)


def _long_field(ext: dict[str, str], name: str, default: int | None = None) -> int:
    raw = ext.get(name)
    if raw is None or raw == "":
        if default is None:
            raise Refused(codes.INVALID_PARAMETER, f"CONSUMER_SEND_MSG_BACK: missing header field {name!r}")
        return default
    return parse_java_long(raw, f"CONSUMER_SEND_MSG_BACK header field {name!r}", HeaderError)


async def on_send_back(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    """CONSUMER_SEND_MSG_BACK (36): a consumer could not process the message stored at commitlog
    ``offset``; store a copy for ``group`` to consume again (RocketMQ's ``consumerSendMsgBack``).

    The copy goes to ``%RETRY%<group>`` (created on demand) with reconsumeTimes + 1, the original
    topic in ``RETRY_TOPIC``, the original id in ``ORIGIN_MESSAGE_ID`` and ``DELAY`` = ``delayLevel``
    (0: 3 + reconsume times, RocketMQ's back-off). Once reconsumeTimes reaches ``maxReconsumeTimes``
    (default 16), or for ``delayLevel`` < 0, it goes to ``%DLQ%<group>`` (one write-only queue)
    instead. The DELAY property takes effect through ``ctx.message_rewriters`` (the delay service);
    without one the retry is consumable at once. A message inside a consolidated batch record
    cannot be addressed by its offset: SYSTEM_ERROR, and the client resends it itself.
    """
    ext = cmd.ext_fields
    group = validate_group(ext.get("group", ""))
    offset = _long_field(ext, "offset")
    delay_level = _long_field(ext, "delayLevel", 0)
    max_reconsume = _long_field(ext, "maxReconsumeTimes", MAX_RECONSUME_TIMES)
    ctx.require_leader(f"send-back for group {group}")
    original = _message_at(ctx, offset)
    if original.sysflag & record_layout.SYSFLAG_INNER_BATCH:
        raise Refused(codes.SYSTEM_ERROR, f"commitlog offset {offset} holds a batch record of {original.topic}; "
                                          "its messages cannot be sent back one by one")
    properties = dict(original.properties)
    properties.setdefault(PROPERTY_RETRY_TOPIC, original.topic)
    properties[PROPERTY_ORIGIN_MESSAGE_ID] = ext.get("originMsgId") or rec.message_id(original.store_host, offset)
    properties.pop(PROPERTY_DELAY, None)
    if original.reconsume_times >= max_reconsume or delay_level < 0:
        topic = dlq_topic(group)
        cfg = await ctx.ensure_topic(topic, queue_nums=1, perm=PERM_WRITE)
    else:
        topic = retry_topic(group)
        cfg = await ctx.ensure_topic(topic)
        properties[PROPERTY_DELAY] = str(delay_level or 3 + original.reconsume_times)
    msg = rec.Message(topic=topic, body=original.body, properties=properties,
                      queue_id=ctx.rng.randrange(cfg.write_queue_nums), flag=original.flag,
                      sysflag=original.sysflag & ~record_layout.SYSFLAG_TX_MASK,
                      born_timestamp_ms=original.born_timestamp_ms, born_host=original.born_host,
                      reconsume_times=original.reconsume_times + 1)
    await ctx.group.put(ctx.rewrite(msg))
    log.info("message at %d sent back for group %s to %s (reconsume %d)", offset, group, topic, msg.reconsume_times)
    return cmd.response_to(codes.SUCCESS)


def message_record_at(ctx: BrokerContext, offset: int) -> bytes:
    """The whole stored-message record that starts at commitlog ``offset`` (CRC checked), or
    Refused(SYSTEM_ERROR) naming the offset when none starts there."""
    store = ctx.store
    missing = Refused(codes.SYSTEM_ERROR, f"no message at commitlog offset {offset} on {ctx.broker_name}")
    if not store.log.min_offset <= offset < store.log.end_offset:
        raise missing
    head = store.log.read(offset, 4)
    size = int.from_bytes(head, "big", signed=True) if len(head) == 4 else 0
    if not 0 < size <= RECORD_BYTES_MAX:
        raise missing
    raw = store.log.read(offset, size)
    if len(raw) != size:
        raise missing
    try:
        rec.decode_message(raw, 0, where=f"commitlog at {offset}")
    except CorruptDataError as exc:
        raise Refused(codes.SYSTEM_ERROR, f"{missing.remark}: {exc}") from None
    return raw


def _message_at(ctx: BrokerContext, offset: int) -> rec.Message:
    return rec.decode_message(message_record_at(ctx, offset), 0)[0]


#: codes whose consecutive requests of one read are handled together (``handlers.build_batch_handlers``)
BATCH_HANDLERS = {
    codes.SEND_MESSAGE: on_send_many,
    codes.SEND_MESSAGE_V2: on_send_many,
}

HANDLERS = {
    codes.SEND_MESSAGE: (on_send, codes.MESSAGE_ILLEGAL),
    codes.SEND_MESSAGE_V2: (on_send, codes.MESSAGE_ILLEGAL),
    codes.SEND_BATCH_MESSAGE: (on_send_batch, codes.MESSAGE_ILLEGAL),
    codes.CONSUMER_SEND_MSG_BACK: (on_send_back, codes.INVALID_PARAMETER),
}
