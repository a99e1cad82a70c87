"""RocketMQ 5's POP codes over remoting, on the broker's ``PopService`` (``ctx.pop``, ``broker/pop``).

===============================  ============================================================
request                          answer
===============================  ============================================================
POP_MESSAGE 200050               SUCCESS 0 with the records (each with ``POP_CK`` = its receipt
                                 handle) and ``popTime``, ``invisibleTime``, ``reviveQid``,
                                 ``restNum``, ``startOffsetInfo``, ``msgOffsetInfo``,
                                 ``orderCountInfo``; nothing: PULL_NOT_FOUND 19 (``pollTime`` 0)
                                 or POLLING_TIMEOUT 210 after waiting; POLLING_FULL 209 when too
                                 many pops wait
ACK_MESSAGE 200051               SUCCESS (an ack after the revive too, as RocketMQ: the message
                                 came back, nothing changes; the remark says so)
BATCH_ACK_MESSAGE 200151         SUCCESS; body ``BatchAckMessageRequestBody``
CHANGE_MESSAGE_INVISIBLETIME     SUCCESS with ``popTime``, ``invisibleTime``, ``reviveQid`` (the client
200053                           builds the new handle with ckQueueOffset = the message's offset);
                                 NO_MESSAGE 208 when the handle is no longer in flight
PEEK_MESSAGE 200052              SUCCESS with the records a pop would hand out next, or
                                 PULL_NOT_FOUND; nothing is reserved
NOTIFICATION 200054              SUCCESS with ``hasMsg`` (long polled for ``pollTime``)
QUERY_ASSIGNMENT 400             body ``{messageQueueAssignments: [{messageQueue, mode}]}``: every
                                 queue of the topic here, in the group's mode (POP by default
                                 once a mode was set to POP, else PULL: an even share per consumer)
SET_MESSAGE_REQUEST_MODE 401     SUCCESS once the mode is committed (a record on the revive log,
                                 ``records.RequestMode``: every replica keeps it, so it survives
                                 a failover and a restart)
===============================  ============================================================

Unknown topic: TOPIC_NOT_EXIST 17; a topic without read permission: NO_PERMISSION 16; a malformed
header, handle or body: INVALID_PARAMETER 29; a follower: the not-leader answer (``handlers``).
A broker started without POP (no ``ctx.pop``) answers REQUEST_CODE_NOT_SUPPORTED 3.
"""
from __future__ import annotations

from mqbench.broker.pop import handles
from mqbench.broker.pop.engine import PopRequest
from mqbench.broker.formats import codes, headers
from mqbench.broker.formats import headers_pop as hp
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.server.handlers import BrokerContext, Refused
from mqbench.broker.formats import record as rec
from mqbench.broker.formats.configs import PERM_READ
from mqbench.broker.formats.topics import validate_group, validate_topic
from mqbench.errors import UserError


def _service(ctx: BrokerContext, cmd: RemotingCommand):
    service = getattr(ctx, "pop", None)
    if service is None:
        raise Refused(codes.REQUEST_CODE_NOT_SUPPORTED, f"{codes.request_name(cmd.code)}: POP is not served by "
                                                        f"{ctx.instance.name}")
    return service


def _check_topic(ctx: BrokerContext, group: str, topic: str) -> None:
    validate_group(group)
    validate_topic(topic)
    cfg = ctx.topic_config(topic)
    if cfg is None:
        raise Refused(codes.TOPIC_NOT_EXIST, f"topic {topic} does not exist on {ctx.broker_name}, create it first")
    if not cfg.perm & PERM_READ:
        raise Refused(codes.NO_PERMISSION, f"topic {topic} is not readable on {ctx.broker_name}")


async def on_pop(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    h = hp.PopMessageHeader.from_ext(cmd.ext_fields)
    service = _service(ctx, cmd)
    _check_topic(ctx, h.consumer_group, h.topic)
    tags = None
    if h.exp_type in (None, "", "TAG"):
        parsed = headers.parse_tag_expression(h.exp)
        tags = frozenset(parsed) if parsed is not None else None
    req = PopRequest(h.consumer_group, h.topic, h.queue_id, min(h.max_msg_nums, 32 * 1024), h.invisible_time_ms,
                     h.init_mode, h.order, tags)
    result = await service.pop(req, h.poll_time_ms)
    plan = result.plan
    ctx.counters.pull_message_count += len(plan.messages)
    ctx.stats.record_get(h.topic, h.consumer_group, len(plan.messages), ctx.clock_ms())
    fields = hp.PopMessageResponseHeader(
        pop_time_ms=plan.pop_time_ms, invisible_time_ms=h.invisible_time_ms, revive_qid=plan.revive_qid,
        rest_num=plan.rest_num, start_offset_info=handles.start_offset_info(plan.start_offsets) or None,
        msg_offset_info=handles.msg_offset_info(plan.msg_offsets) or None,
        order_count_info=handles.order_count_info(plan.order_counts) or None)
    if not plan.messages:
        code = result.code
        return cmd.response_to(code, codes.response_name(code), fields.to_ext())
    body = b"".join(rec.encode_message(p.message) for p in plan.messages)
    return cmd.response_to(codes.SUCCESS, None, fields.to_ext(), body)


async def on_ack(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    h = hp.AckMessageHeader.from_ext(cmd.ext_fields)
    service = _service(ctx, cmd)
    validate_group(h.consumer_group)
    validate_topic(h.topic)
    plan = await service.ack(h.consumer_group, h.topic, [h.extra_info])
    remark = "late: the message was already revived" if plan.statuses == ["late"] else None
    return cmd.response_to(codes.SUCCESS, remark)


async def on_batch_ack(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    service = _service(ctx, cmd)
    by_target: dict[tuple[str, str], list[str]] = {}
    for one in hp.parse_batch_ack(cmd.body):
        validate_group(one["group"])
        validate_topic(one["topic"])
        if one["retry"] not in (handles.NORMAL_TOPIC, handles.RETRY_TOPIC, handles.RETRY_TOPIC_V2):
            raise UserError(f"batch ack retry flag {one['retry']!r} is not 0, 1 or 2")
        for offset in one["offsets"]:
            handle = handles.Handle(one["start_offset"], one["pop_time_ms"], one["invisible_time_ms"],
                                    one["revive_qid"], one["retry"], ctx.broker_name, one["queue_id"], offset)
            by_target.setdefault((one["group"], one["topic"]), []).append(handle.text())
    late = 0
    for (group, topic), infos in by_target.items():
        plan = await service.ack(group, topic, infos)
        late += plan.statuses.count("late")
    return cmd.response_to(codes.SUCCESS, f"{late} late: already revived" if late else None)


async def on_change_invisible(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    h = hp.ChangeInvisibleTimeHeader.from_ext(cmd.ext_fields)
    service = _service(ctx, cmd)
    validate_group(h.consumer_group)
    validate_topic(h.topic)
    try:
        plan = await service.change_invisible_time(h.consumer_group, h.topic, h.extra_info, h.invisible_time_ms)
    except UserError as exc:
        if isinstance(exc, handles.HandleError) or h.invisible_time_ms <= 0:
            raise
        raise Refused(codes.NO_MESSAGE, str(exc)) from None
    fields = hp.ChangeInvisibleTimeResponseHeader(pop_time_ms=plan.pop_time_ms,
                                                  invisible_time_ms=plan.invisible_time_ms,
                                                  revive_qid=plan.revive_qid)
    return cmd.response_to(codes.SUCCESS, None, fields.to_ext())


async def on_peek(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    h = hp.PeekMessageHeader.from_ext(cmd.ext_fields)
    service = _service(ctx, cmd)
    _check_topic(ctx, h.consumer_group, h.topic)
    msgs = await service.peek(h.consumer_group, h.topic, h.queue_id, max(1, min(h.max_msg_nums, 1024)))
    if not msgs:
        return cmd.response_to(codes.PULL_NOT_FOUND, "no message to peek")
    return cmd.response_to(codes.SUCCESS, None, {}, b"".join(rec.encode_message(m) for m in msgs))


async def on_notification(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    h = hp.NotificationHeader.from_ext(cmd.ext_fields)
    service = _service(ctx, cmd)
    _check_topic(ctx, h.consumer_group, h.topic)
    has = await service.notification(h.consumer_group, h.topic, h.queue_id, h.poll_time_ms)
    return cmd.response_to(codes.SUCCESS, None, hp.NotificationResponseHeader(has_msg=has).to_ext())


def _body(cmd: RemotingCommand, what: str) -> dict:
    doc = headers.parse_json_body(cmd.body, what)
    if not isinstance(doc, dict) or not doc.get("topic") or not doc.get("consumerGroup"):
        raise UserError(f"{what} body needs topic and consumerGroup")
    return doc


async def on_set_mode(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    service = _service(ctx, cmd)
    doc = _body(cmd, "SET_MESSAGE_REQUEST_MODE")
    mode = str(doc.get("mode") or "PULL").upper()
    if mode not in ("PULL", "POP"):
        raise UserError(f"SET_MESSAGE_REQUEST_MODE mode {mode!r} is not PULL or POP")
    await service.set_request_mode(str(doc["topic"]), str(doc["consumerGroup"]), mode,
                                   int(doc.get("popShareQueueNum") or 0))
    return cmd.response_to(codes.SUCCESS)


async def on_query_assignment(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    service = _service(ctx, cmd)
    doc = _body(cmd, "QUERY_ASSIGNMENT")
    topic, group = str(doc["topic"]), str(doc["consumerGroup"])
    _check_topic(ctx, group, topic)
    mode = service.engine.request_modes.get((topic, group), ("PULL", 0))[0]
    queues = list(range(ctx.topic_config(topic).read_queue_nums))
    if mode == "PULL":      # an even share of the queues for this client, as AllocateMessageQueueAveragely
        ids = sorted(ctx.clients.consumer_ids(group, ctx.clock_ms()))
        client = str(doc.get("clientId") or "")
        if client in ids and len(ids) > 1:
            i, n = ids.index(client), len(ids)
            queues = [q for k, q in enumerate(queues) if k % n == i]
    body = {"messageQueueAssignments": [
        {"messageQueue": {"topic": topic, "brokerName": ctx.broker_name, "queueId": q}, "mode": mode,
         "attachments": {}} for q in queues]}
    return cmd.response_to(codes.SUCCESS, None, {}, headers.dump_json_body(body))


HANDLERS = {
    codes.POP_MESSAGE: (on_pop, codes.INVALID_PARAMETER),
    codes.ACK_MESSAGE: (on_ack, codes.INVALID_PARAMETER),
    codes.BATCH_ACK_MESSAGE: (on_batch_ack, codes.INVALID_PARAMETER),
    codes.CHANGE_MESSAGE_INVISIBLETIME: (on_change_invisible, codes.INVALID_PARAMETER),
    codes.PEEK_MESSAGE: (on_peek, codes.INVALID_PARAMETER),
    codes.NOTIFICATION: (on_notification, codes.INVALID_PARAMETER),
    codes.QUERY_ASSIGNMENT: (on_query_assignment, codes.INVALID_PARAMETER),
    codes.SET_MESSAGE_REQUEST_MODE: (on_set_mode, codes.INVALID_PARAMETER),
}
