"""Consumer offsets, queue offsets and message look-ups: QUERY_CONSUMER_OFFSET (14),
UPDATE_CONSUMER_OFFSET (15), SEARCH_OFFSET_BY_TIMESTAMP (29), GET_MAX_OFFSET (30), GET_MIN_OFFSET
(31), GET_EARLIEST_MSG_STORETIME (32), VIEW_MESSAGE_BY_ID (33).

* QUERY_CONSUMER_OFFSET answers header ``offset`` from this replica's store (consumer offsets are
  Raft entries, so every replica has the committed ones). A group with no offset for the queue
  gets offset 0 while the queue's min offset is 0 (RocketMQ's ``ConsumerManageProcessor``, which
  official clients rely on to see messages sent before they started), else QUERY_NOT_FOUND 22;
  ``setZeroIfNotFound=false`` asks for QUERY_NOT_FOUND in every case.
* UPDATE_CONSUMER_OFFSET is a write: the leader stores it through the Raft log and answers once it
  is committed (a follower answers not-leader). Offsets never go backwards for a group and queue
  (the replicated group ignores an older one); an offset beyond the queue's max offset is
  INVALID_PARAMETER (no consumer can have consumed past the last message: such a commit could
  only park a group, anyone's, past every message to come).
* GET_MAX_OFFSET / GET_MIN_OFFSET: the queue's offsets (0 for a queue that has none).
* SEARCH_OFFSET_BY_TIMESTAMP: the first offset whose message was stored at or after
  ``timestamp`` (ms), by binary search over the queue (store timestamps grow along a queue);
  the max offset when every message is older.
* GET_EARLIEST_MSG_STORETIME: header ``timestamp``, the store time of the queue's first message
  (SYSTEM_ERROR for an empty queue).
* VIEW_MESSAGE_BY_ID: header ``offset`` (a commitlog offset, what an offsetMsgId encodes); the body
  is that stored-message record as it is in the log (SYSTEM_ERROR when no record starts there).
Bad names (topic ``../x``) or negative numbers: INVALID_PARAMETER 29 naming the problem.
Every read here first waits for the replica to be readable (``BrokerContext.require_readable``:
SYSTEM_BUSY 2 after ``READ_WAIT_MS_MAX``), so a new leader or a restarted replica never answers
an offset older than one already shown.
"""
from __future__ import annotations

from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.formats.command import RemotingCommand, parse_java_long
from mqbench.broker.formats.headers import HeaderError
from mqbench.broker.server.handlers import BrokerContext, Refused
from mqbench.broker.formats.topics import validate_group, validate_topic


def _check_queue(topic: str, queue_id: int) -> None:
    validate_topic(topic)
    if not 0 <= queue_id < 1 << 31:
        raise Refused(codes.INVALID_PARAMETER, f"queueId {queue_id} is out of range")


def _offset(cmd: RemotingCommand, offset: int) -> RemotingCommand:
    return cmd.response_to(codes.SUCCESS, None, headers.OffsetResponseHeader(offset).to_ext())


async def on_query_consumer_offset(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    header = headers.QueryConsumerOffsetHeader.from_ext(cmd.ext_fields)
    validate_group(header.consumer_group)
    _check_queue(header.topic, header.queue_id)
    await ctx.require_readable("QUERY_CONSUMER_OFFSET")
    offset = ctx.store.query_offset(header.consumer_group, header.topic, header.queue_id)
    if offset >= 0:
        return _offset(cmd, offset)
    if header.set_zero_if_not_found is not False and ctx.store.min_offset(header.topic, header.queue_id) <= 0:
        return _offset(cmd, 0)
    raise Refused(codes.QUERY_NOT_FOUND, f"no offset of group {header.consumer_group} for "
                                         f"{header.topic}/{header.queue_id}: the consumer starts from its "
                                         "consumeFromWhere")


async def on_update_consumer_offset(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    header = headers.UpdateConsumerOffsetHeader.from_ext(cmd.ext_fields)
    validate_group(header.consumer_group)
    _check_queue(header.topic, header.queue_id)
    if header.commit_offset < 0:
        raise Refused(codes.INVALID_PARAMETER, f"commitOffset {header.commit_offset} is negative")
    ctx.require_leader(f"offset commit of {header.consumer_group}")
    top = ctx.store.max_offset(header.topic, header.queue_id)
    if header.commit_offset > top:
        raise Refused(codes.INVALID_PARAMETER, f"commitOffset {header.commit_offset} of {header.consumer_group} is "
                                               f"beyond {header.topic}/{header.queue_id}'s max offset {top}")
    await ctx.group.commit_offset(header.consumer_group, header.topic, header.queue_id, header.commit_offset)
    return cmd.response_to(codes.SUCCESS)


async def on_get_max_offset(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    header = headers.QueueOffsetHeader.from_ext(cmd.ext_fields)
    _check_queue(header.topic, header.queue_id)
    await ctx.require_readable("GET_MAX_OFFSET")
    return _offset(cmd, ctx.store.max_offset(header.topic, header.queue_id))


async def on_get_min_offset(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    header = headers.QueueOffsetHeader.from_ext(cmd.ext_fields)
    _check_queue(header.topic, header.queue_id)
    await ctx.require_readable("GET_MIN_OFFSET")
    return _offset(cmd, ctx.store.min_offset(header.topic, header.queue_id))


def offset_by_time(store, topic: str, queue_id: int, timestamp_ms: int) -> int:
    """The first offset of the queue stored at or after ``timestamp_ms``; the max offset if none."""
    lo, hi = store.min_offset(topic, queue_id), store.max_offset(topic, queue_id)
    while lo < hi:
        mid = (lo + hi) // 2
        found = store.read_queue(topic, queue_id, mid, 1).messages
        if not found:  # the queue's head moved while we searched: what remains starts later
            lo = mid + 1
            continue
        if found[0].store_timestamp_ms >= timestamp_ms:
            hi = mid
        else:
            lo = mid + 1
    return lo


async def on_search_offset(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    header = headers.SearchOffsetHeader.from_ext(cmd.ext_fields)
    _check_queue(header.topic, header.queue_id)
    await ctx.require_readable("SEARCH_OFFSET_BY_TIMESTAMP")
    return _offset(cmd, offset_by_time(ctx.store, header.topic, header.queue_id, header.timestamp_ms))


async def on_earliest_store_time(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    header = headers.QueueOffsetHeader.from_ext(cmd.ext_fields)
    _check_queue(header.topic, header.queue_id)
    await ctx.require_readable("GET_EARLIEST_MSG_STORETIME")
    found = ctx.store.read_queue(header.topic, header.queue_id, 0, 1).messages
    if not found:
        raise Refused(codes.SYSTEM_ERROR, f"{header.topic}/{header.queue_id} has no message on {ctx.broker_name}")
    return cmd.response_to(codes.SUCCESS, None, {"timestamp": found[0].store_timestamp_ms})


async def on_view_message(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    from mqbench.broker.server.handlers_send import message_record_at
    raw = cmd.ext_fields.get("offset")
    if raw is None:
        raise Refused(codes.INVALID_PARAMETER, "VIEW_MESSAGE_BY_ID: missing header field 'offset'")
    offset = parse_java_long(raw, "VIEW_MESSAGE_BY_ID header field 'offset'", HeaderError)
    return cmd.response_to(codes.SUCCESS, body=message_record_at(ctx, offset))


HANDLERS = {
    codes.QUERY_CONSUMER_OFFSET: (on_query_consumer_offset, codes.INVALID_PARAMETER),
    codes.UPDATE_CONSUMER_OFFSET: (on_update_consumer_offset, codes.INVALID_PARAMETER),
    codes.GET_MAX_OFFSET: (on_get_max_offset, codes.INVALID_PARAMETER),
    codes.GET_MIN_OFFSET: (on_get_min_offset, codes.INVALID_PARAMETER),
    codes.SEARCH_OFFSET_BY_TIMESTAMP: (on_search_offset, codes.INVALID_PARAMETER),
    codes.GET_EARLIEST_MSG_STORETIME: (on_earliest_store_time, codes.INVALID_PARAMETER),
    codes.VIEW_MESSAGE_BY_ID: (on_view_message, codes.INVALID_PARAMETER),
}
