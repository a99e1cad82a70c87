"""The SEND_BATCH_MESSAGE requests of one read, handled together (``on_send_batches``, the
channel's ``on_batch`` for that code).

A producer keeping many batches in flight sends several in one read. Each went through
``handlers_send.on_send_batch`` on its own: its own handler coroutine, proposal, future, wake-up
and socket write of its answer, which cost the leader more per batch than building the batch's
record. Here the usual one, a plain batch to a BatchCQ topic whose body is stored as sent (one
inner-batch record, ``_stored_as_sent``), is checked by ``on_send_batch``'s rules in the same
order with the same answers, and the records of all of them are proposed as ONE proposal (one Raft
append, one settle, one wake-up), answered together in one write; each is still acknowledged
only once its own entry is committed. Every other request of the read (a SimpleCQ topic, a
compressed or non-canonical body, a topic created on this send, ACL on) takes ``on_send_batch``
beside them, as before, after the proposal.
"""
from __future__ import annotations


from mqbench.broker.formats import codes, headers
from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_layout
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.formats.properties import PROPERTY_UNIQ_KEY
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.server.handlers import REFUSALS, BrokerContext, Refused, refusal_response
from mqbench.broker.server.handlers_send import (
    _DELAY_KEYS,
    _born_host,
    _check_send_topic,
    _checked_header,
    _queue_id,
    _stored_as_sent,
    propose_then_wait,
)


def _canonical_wire(wire: str, properties: dict[str, str]) -> bytes | None:
    """``encode_properties(properties)`` when ``wire``, the string ``properties`` was decoded from,
    is exactly what it writes (``handlers_send._fields_record``'s test), else None."""
    if wire and (wire[-1] != record_layout.PROPERTY_SEPARATOR
                 or wire.count(record_layout.PROPERTY_SEPARATOR) != len(properties)):
        return None
    try:
        return wire.encode("utf-8")
    except UnicodeEncodeError:          # a lone surrogate: encode_properties raises as before
        return None


def _as_sent_record(ctx: BrokerContext, group, cmd: RemotingCommand, channel: Channel, leader: bool,
                    writable: bool) -> tuple[bytes, int, str, str | None] | None:
    """``on_send_batch``'s steps for a batch stored as sent, up to its record: (record, messages,
    topic, transaction id), or None when the request takes ``on_send_batch``. Raises what
    ``on_send_batch`` raises for it, in the same order."""
    header = headers.send_header(cmd)
    _check_send_topic(header.topic)
    existing = ctx.topic_config(header.topic)
    count = _stored_as_sent(ctx, cmd, header, existing)
    if count is None or existing is None:
        return None
    _checked_header(ctx, cmd, leader, parsed=header)
    queue_id = _queue_id(ctx, header, existing)
    wire = header.properties or ""
    properties = rec.decode_properties(wire)
    delayed = _DELAY_KEYS.intersection(properties)
    if delayed:  # RocketMQ refuses these too: a batch shares one queue and one delivery time
        raise Refused(codes.MESSAGE_ILLEGAL, f"a batch to {header.topic} cannot carry delay properties "
                                             f"({', '.join(sorted(delayed))}); send delayed messages one by one")
    [(record, messages)] = group.prepare_batch_put(
        header.topic, queue_id, count, consolidate=True, properties=properties, sysflag=header.sys_flag,
        born_timestamp_ms=header.born_timestamp_ms, born_host=_born_host(channel), inner_body=cmd.body,
        writable=writable, wire_properties=_canonical_wire(wire, properties))
    return record, messages, header.topic, properties.get(PROPERTY_UNIQ_KEY)


async def on_send_batches(ctx: BrokerContext, cmds: list[RemotingCommand], channel: Channel, one) -> list:
    """The batch sends of one read (module doc): one response per request, in order. ``one`` is
    the wrapped ``on_send_batch``, for the requests that take that path."""
    responses: list = [None] * len(cmds)
    slow: list[int] = []
    fast: list[tuple[int, RemotingCommand, str, str | None]] = []
    records: list[bytes] = []
    counts: list[int] = []
    if ctx.acl is not None:
        slow = list(range(len(cmds)))
    else:
        group = ctx.group
        leader = ctx.is_leader()                  # nothing in this loop can change either
        writable = leader and group.writable()
        for i, cmd in enumerate(cmds):
            try:
                built = _as_sent_record(ctx, group, cmd, channel, leader, writable)
            except REFUSALS as exc:
                responses[i] = refusal_response(ctx, cmd, exc, codes.MESSAGE_ILLEGAL)
                continue
            except Exception as exc:  # noqa: BLE001 - answered as the channel answers a failed handler
                responses[i] = channel.failure_response(cmd, exc)
                continue
            if built is None:
                slow.append(i)
                continue
            record, messages, topic, transaction_id = built
            records.append(record)
            counts.append(messages)
            fast.append((i, cmd, topic, transaction_id))
    if not records and len(slow) == 1 and slow[0] == len(cmds) - 1:
        # one request of its own path and nothing proposed: awaited here, without a Task, so a
        # commit wakes it at once (``prompt``), as when the channel steps ``on_send_batch`` itself
        try:
            responses[-1] = await one(cmds[-1], channel)
        except Exception as exc:  # noqa: BLE001 - answered as the channel answers a failed handler
            responses[-1] = channel.failure_response(cmds[-1], exc)
        return responses
    return await propose_then_wait(ctx, cmds, channel, one, fast, records, slow, responses, counts)


#: codes whose consecutive requests of one read are handled together (``handlers.build_batch_handlers``)
BATCH_HANDLERS = {codes.SEND_BATCH_MESSAGE: on_send_batches}
