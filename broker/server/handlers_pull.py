"""PULL_MESSAGE (11) with long polling.

The answer, as RocketMQ's ``PullMessageProcessor`` and ``DefaultMessageStore.getMessage`` give it
(``min``/``max`` are the queue's offsets in this replica's store, which holds committed entries
only; every answer carries ``nextBeginOffset``, ``minOffset``, ``maxOffset`` and
``suggestWhichBrokerId``, the leader's id 0):

=====================================  ======================  ============================
situation                              code                    nextBeginOffset
=====================================  ======================  ============================
messages at ``queueOffset``            SUCCESS 0, records      after the last one returned
messages there, none match the tags    PULL_RETRY_IMMEDIATELY  after the last one skipped
offset == max (an empty queue: 0)      PULL_NOT_FOUND 19 *     max
offset < min, on the leader            PULL_OFFSET_MOVED 21    min
offset > max, on the leader            PULL_OFFSET_MOVED 21    min if min == 0 else max
offset > max, on a follower            PULL_RETRY_IMMEDIATELY  queueOffset (it may be behind) *
offset < min, on a follower            PULL_RETRY_IMMEDIATELY  queueOffset
replica not readable yet (see below)   PULL_RETRY_IMMEDIATELY  queueOffset
unknown topic                          TOPIC_NOT_EXIST 17      -
queueId beyond the read queues         SYSTEM_ERROR 1          -
=====================================  ======================  ============================

A follower never moves a consumer's offset (RocketMQ's slave, ``offsetCheckInSlave=false``): its
queue may only be behind the leader's, even empty while the leader's holds messages (a replica cut
off, or one that lagged when the whole group restarted); "offset moved" from there would send the
consumer back to the queue's start.

``*``: with the suspend flag the pull first waits up to ``suspendTimeoutMillis`` (capped at
``ctx.suspend_ms_max``) for the queue to grow past ``queueOffset``; ``PullWaiters`` wakes it as
soon as committed entries are applied, and the read is redone. A suspended pull whose read skipped
every message up to ``max`` (none matched the tags) goes on waiting from there instead of answering
PULL_RETRY_IMMEDIATELY: that answer only brought the client straight back to wait at ``max`` (a
round trip per unmatched message for a tag-filtering group); on timeout it answers PULL_NOT_FOUND
with ``max``, as a pull from there would.

A replica answers a pull only once it is readable (``ReplicatedGroup.reads_ready``): a new leader
that has not applied its term's no-op, or a restarted replica that has not applied again what it
held, would find the queue shorter than the consumer's offset and send it back to 0 (offset moved).
The pull waits for readiness (until its suspend deadline, or ``READ_WAIT_MS_MAX`` without suspend);
if the replica is still not readable it is answered PULL_RETRY_IMMEDIATELY with the offset it asked
for, which every RocketMQ client pulls again from.

The body is the concatenation of stored-message records (spec protocols.md section 8), one per
message, sent as they are stored (``Store.read_queue_records``: records just written come from the
commitlog's in-memory tail, older ones with one read per run of records, a DLedger store's entry
framing left out, no decode or re-encode), at most ``PULL_MESSAGES_MAX`` (256) messages looked at
and ``PULL_BYTES_MAX`` (256 KiB) per answer, whatever the client asks (one answer is one loop turn). An inner batch of a BatchCQ topic
is handed out unwrapped (message ``base + i`` as its own record), so any client can read it; a
client that sets ``innerBatchAsStored=true`` in the request (mqbench's, which unwraps them itself)
gets a BatchCQ queue's records as stored, as RocketMQ 5 sends them to its Java client, when it
filters by no tag (the first record may hold messages below ``queueOffset``: the client leaves
them out, as it does any such message).
Tags are filtered by the subscription in the request (or the one the group heartbeated), exactly:
by the consume queue's tag hash, then the candidates' TAGS. With the commit-offset flag
the leader also stores the consumer's ``commitOffset`` (through the Raft log, not waited for).
"""
from __future__ import annotations

import functools
import logging
from typing import NamedTuple

from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.server.handlers import READ_WAIT_MS_MAX, BrokerContext, Refused
from mqbench.broker.formats.configs import PERM_READ
from mqbench.broker.formats.topics import validate_group, validate_topic

log = logging.getLogger(__name__)

# One answer's bound (the client may ask for less): every pull is answered inside one turn of the
# leader's loop, so it must stay well under the 10 ms that delays every other request there. The
# C path takes a record in well under a microsecond; the Python paths (a tag filter, a record no
# longer in the tail cache, MQBENCH_NATIVE=0) about 5-10 us per unit looked at, so 256 units stay
# within a few ms. 256 KiB is RocketMQ's maxTransferBytesOnMessageInMemory (its count cap, 32,
# would halve a 64-message consumer's drain); at least one message is always answered.
PULL_BYTES_MAX = 256 * 1024
PULL_MESSAGES_MAX = 256


def _tags(ctx: BrokerContext, header: headers.PullMessageHeader) -> frozenset[str] | None:
    if header.sys_flag & codes.PULL_FLAG_SUBSCRIPTION and header.subscription is not None:
        expression = header.subscription
    else:
        info = ctx.clients.consumers.get(header.consumer_group)
        expression = info.subscriptions.get(header.topic) if info is not None else None
    if header.expression_type not in (None, "", "TAG"):
        return None  # SQL92 filters are not evaluated here: hand out everything, the client filters
    return _parsed_tags(expression)


@functools.lru_cache(maxsize=1024)
def _parsed_tags(expression: str | None) -> frozenset[str] | None:
    """``parse_tag_expression``, once per subscription string: every pull of a group carries the same
    expression, parsed (and its tag codes hashed, ``reader``) per pull before."""
    tags = headers.parse_tag_expression(expression)
    return None if tags is None else frozenset(tags)


class PullAnswer(NamedTuple):
    code: int
    next_offset: int
    body: bytes = b""
    count: int = 0
    may_wait: bool = False       # a suspended pull may wait for more instead of answering this
    min_offset: int = 0
    max_offset: int = 0


def _answer(ctx: BrokerContext, header: headers.PullMessageHeader, tags: set[str] | None,
            offset: int) -> PullAnswer:
    """One read of the queue from ``offset`` (the module's table)."""
    store = ctx.store
    topic, queue_id = header.topic, header.queue_id
    lo, hi = store.min_offset(topic, queue_id), store.max_offset(topic, queue_id)
    if offset == hi:
        return PullAnswer(codes.PULL_NOT_FOUND, hi, may_wait=True, min_offset=lo, max_offset=hi)
    if offset < lo or offset > hi:
        if not ctx.is_leader():      # never moved by a follower (module doc)
            return PullAnswer(codes.PULL_RETRY_IMMEDIATELY, offset, may_wait=offset > hi, min_offset=lo, max_offset=hi)
        if offset < lo:
            return PullAnswer(codes.PULL_OFFSET_MOVED, lo, min_offset=lo, max_offset=hi)
        return PullAnswer(codes.PULL_OFFSET_MOVED, lo if lo == 0 else hi, min_offset=lo, max_offset=hi)
    wanted = max(1, min(header.max_msg_nums, PULL_MESSAGES_MAX))
    bytes_max = min(header.max_msg_bytes or PULL_BYTES_MAX, PULL_BYTES_MAX)
    result = store.read_queue_records(topic, queue_id, offset, wanted, max(bytes_max, 1), tags,
                                      batches_as_stored=bool(header.inner_batch_as_stored))
    bounds = dict(min_offset=result.min_offset, max_offset=result.max_offset)
    if result.count:
        return PullAnswer(codes.SUCCESS, result.next_offset, result.body, result.count, **bounds)
    if result.skipped:
        return PullAnswer(codes.PULL_RETRY_IMMEDIATELY, result.next_offset, **bounds)
    return PullAnswer(codes.PULL_NOT_FOUND, result.next_offset, may_wait=True, **bounds)


async def _ready_answer(ctx: BrokerContext, header: headers.PullMessageHeader, tags: set[str] | None,
                        wait_ms: int, offset: int) -> PullAnswer:
    """``_answer`` once the replica is readable (waiting up to ``wait_ms``); else pull again."""
    if not ctx.reads_ready() and not await ctx.wait_readable(wait_ms):   # the usual case awaits nothing
        return PullAnswer(codes.PULL_RETRY_IMMEDIATELY, header.queue_offset)
    return _answer(ctx, header, tags, offset)


def _skipped_to_the_end(answer: PullAnswer) -> bool:
    """Every message from the pull's offset up to ``max`` was skipped by the tags (module doc)."""
    return (answer.code == codes.PULL_RETRY_IMMEDIATELY and answer.max_offset > 0
            and answer.next_offset >= answer.max_offset)


async def on_pull(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    header = headers.PullMessageHeader.from_ext(cmd.ext_fields)
    validate_topic(header.topic)
    validate_group(header.consumer_group)
    ctx.counters.pull_request_count += 1
    cfg = ctx.topic_config(header.topic)
    if cfg is None:
        raise Refused(codes.TOPIC_NOT_EXIST, f"topic {header.topic} does not exist on {ctx.broker_name}, "
                                             "create it first")
    if not cfg.perm & PERM_READ:
        raise Refused(codes.NO_PERMISSION, f"topic {header.topic} is not readable on {ctx.broker_name}")
    if not 0 <= header.queue_id < cfg.read_queue_nums:
        raise Refused(codes.SYSTEM_ERROR, f"queueId {header.queue_id} is illegal: topic {header.topic} has "
                                          f"{cfg.read_queue_nums} read queues on {ctx.broker_name}")
    if header.queue_offset < 0:
        raise Refused(codes.SYSTEM_ERROR, f"queueOffset {header.queue_offset} is negative")
    if header.sys_flag & codes.PULL_FLAG_COMMIT_OFFSET and header.commit_offset >= 0 and ctx.is_leader():
        try:        # joins the next offset snapshot; nobody waits for it (no Task per pull)
            ctx.group.note_offset(header.consumer_group, header.topic, header.queue_id, header.commit_offset)
        except ctx.not_leader_errors as exc:
            log.info("offset commit of %s on %s/%d: %s", header.consumer_group, header.topic, header.queue_id, exc)
        except Exception as exc:  # noqa: BLE001 - the commit's failure must not fail the pull
            log.warning("offset commit of %s on %s/%d failed: %s", header.consumer_group, header.topic,
                        header.queue_id, exc)
    tags = _tags(ctx, header)
    suspend = header.sys_flag & codes.PULL_FLAG_SUSPEND and header.suspend_timeout_ms > 0
    deadline_ms = ctx.monotonic_ms() + min(max(header.suspend_timeout_ms, 0), ctx.suspend_ms_max)
    offset = header.queue_offset
    answer = await _ready_answer(ctx, header, tags, deadline_ms - ctx.monotonic_ms() if suspend else READ_WAIT_MS_MAX,
                                 offset)
    while suspend and (answer.may_wait or _skipped_to_the_end(answer)):
        remaining_ms = deadline_ms - ctx.monotonic_ms()
        if remaining_ms <= 0:
            if not answer.may_wait:      # skipped to max: what a pull from max answers now
                answer = PullAnswer(codes.PULL_NOT_FOUND, answer.next_offset, min_offset=answer.min_offset,
                                    max_offset=answer.max_offset)
            break
        if not answer.may_wait:
            offset = answer.next_offset
        # wait for the queue to grow past what was asked for (or for the entry a follower lacks)
        await ctx.waiters.wait(header.topic, header.queue_id, max(offset, answer.max_offset), remaining_ms)
        answer = await _ready_answer(ctx, header, tags, deadline_ms - ctx.monotonic_ms(), offset)
    ctx.counters.pull_message_count += answer.count
    ctx.stats.record_get(header.topic, header.consumer_group, answer.count, ctx.clock_ms())
    # PullMessageResponseHeader's fields, written out: its to_ext walked the dataclass per pull
    fields = {"suggestWhichBrokerId": "0", "nextBeginOffset": str(answer.next_offset),
              "minOffset": str(answer.min_offset), "maxOffset": str(answer.max_offset)}
    remark = None if answer.code == codes.SUCCESS else _remark(answer.code)
    return cmd.response_to(answer.code, remark, fields, answer.body)


def _remark(code: int) -> str:
    return {codes.PULL_NOT_FOUND: "no new message in the queue", codes.PULL_OFFSET_MOVED: "the offset moved",
            codes.PULL_RETRY_IMMEDIATELY: "nothing to hand out here yet, pull again"}.get(code, codes.response_name(code))


HANDLERS = {
    codes.PULL_MESSAGE: (on_pull, codes.INVALID_PARAMETER),
}
