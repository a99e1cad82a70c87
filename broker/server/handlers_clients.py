"""Producer and consumer clients: HEART_BEAT (34), UNREGISTER_CLIENT (35),
GET_CONSUMER_LIST_BY_GROUP (38), and what happens when a client's connection closes.

* HEART_BEAT records the client's producer and consumer groups with their subscriptions
  (``ClientRegistry``); a consumer group seen for the first time gets its ``%RETRY%<group>`` topic
  created (on the leader, in the background), as RocketMQ does, so official clients find a route
  for it. Answer: SUCCESS at once.
* When a consumer joins or leaves a group (heartbeat of a new member, UNREGISTER_CLIENT, its
  connection closing) every other member of the group gets a one-way NOTIFY_CONSUMER_IDS_CHANGED
  (40) so it rebalances now rather than at its next periodic rebalance.
* GET_CONSUMER_LIST_BY_GROUP answers ``{"consumerIdList": [...]}`` (sorted live client ids), or
  SYSTEM_ERROR when the group has no live consumer here (RocketMQ's answer; a client then keeps
  its current queues instead of dropping them, e.g. right after a failover when the new leader
  has not had the group's heartbeats yet).
Bad bodies or names: INVALID_PARAMETER 29 naming the problem.
"""
from __future__ import annotations

from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.server.handlers import BrokerContext, Refused, log
from mqbench.broker.formats.topics import retry_topic, validate_group


def notify_group(ctx: BrokerContext, group: str, skip: str | None = None) -> int:
    """Push NOTIFY_CONSUMER_IDS_CHANGED to every member of ``group`` but ``skip``; returns how many."""
    sent = 0
    for client_id, channel in sorted(ctx.clients.consumer_channels(group).items()):
        if client_id == skip or not isinstance(channel, Channel) or channel.closed:
            continue
        ctx.spawn(channel.oneway(RemotingCommand.request(codes.NOTIFY_CONSUMER_IDS_CHANGED, {"consumerGroup": group})),
                  f"notify {client_id} of group {group}")
        sent += 1
    return sent


async def on_heartbeat(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    """HEART_BEAT (34). Creates each consumer group's retry topic, as RocketMQ does, but at most
    ``RETRY_TOPICS_PER_HEARTBEAT_MAX`` per heartbeat (a client heartbeats every 30 s, so a real one
    gets the rest soon), and a heartbeat naming more than ``HEARTBEAT_GROUPS_MAX`` groups is
    INVALID_PARAMETER: one request must not create hundreds of topics."""
    doc = headers.parse_heartbeat(cmd.body)
    for key in ("producerDataSet", "consumerDataSet"):
        items = doc.get(key) or ()
        if len(items) > HEARTBEAT_GROUPS_MAX:
            raise Refused(codes.INVALID_PARAMETER, f"HEART_BEAT names {len(items)} "
                                                   f"{'consumer' if key == 'consumerDataSet' else 'producer'} groups; "
                                                   f"at most {HEARTBEAT_GROUPS_MAX} per client")
        for item in items:
            validate_group(item["groupName"])
    joined = ctx.clients.heartbeat(doc, ctx.monotonic_ms(), channel)
    # what GET_CONSUMER_CONNECTION_LIST reports per connection (mqadmin's consumerProgress/Connection)
    channel.attributes["language"], channel.attributes["version"] = cmd.language, cmd.version
    creating = 0
    for item in doc.get("consumerDataSet") or ():
        topic = retry_topic(item["groupName"])
        if ctx.is_leader() and ctx.topic_config(topic) is None and creating < RETRY_TOPICS_PER_HEARTBEAT_MAX:
            creating += 1
            ctx.spawn(ctx.ensure_topic(topic), f"creating {topic}")
    for group in joined:
        log.info("consumer %s joined group %s", doc["clientID"], group)
        notify_group(ctx, group, skip=doc["clientID"])
    return cmd.response_to(codes.SUCCESS)


async def on_unregister_client(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    header = headers.UnregisterClientHeader.from_ext(cmd.ext_fields)
    for group in ctx.clients.unregister(header.client_id, header.producer_group, header.consumer_group):
        log.info("consumer %s left group %s", header.client_id, group)
        notify_group(ctx, group, skip=header.client_id)
    return cmd.response_to(codes.SUCCESS)


async def on_consumer_list(ctx: BrokerContext, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
    header = headers.ConsumerGroupHeader.from_ext(cmd.ext_fields)
    validate_group(header.consumer_group)
    ids = ctx.clients.consumer_ids(header.consumer_group, ctx.monotonic_ms())
    if not ids:
        raise Refused(codes.SYSTEM_ERROR, f"no consumer of group {header.consumer_group} is connected to "
                                          f"{ctx.instance.name}")
    return cmd.response_to(codes.SUCCESS, body=headers.consumer_list_body(ids))


def connection_closed(ctx: BrokerContext, channel: Channel) -> None:
    """The server's on_disconnect: the clients of that connection leave their groups."""
    for group in ctx.clients.connection_closed(channel):
        log.info("a consumer of group %s disconnected (%s)", group, channel.peer)
        notify_group(ctx, group)


HEARTBEAT_GROUPS_MAX = 64
RETRY_TOPICS_PER_HEARTBEAT_MAX = 8

HANDLERS = {
    codes.HEART_BEAT: (on_heartbeat, codes.INVALID_PARAMETER),
    codes.UNREGISTER_CLIENT: (on_unregister_client, codes.INVALID_PARAMETER),
    codes.GET_CONSUMER_LIST_BY_GROUP: (on_consumer_list, codes.INVALID_PARAMETER),
}
