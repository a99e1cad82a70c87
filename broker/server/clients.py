"""Producer and consumer groups as the broker knows them from heartbeats.

Consumers rebalance on the client side: each asks GET_CONSUMER_LIST_BY_GROUP and takes its share of
the queues. The broker only has to remember which client ids of a group are alive. A client is
alive while its heartbeats keep coming; RocketMQ drops a channel idle for 120 s, and so do we
(``expiry_ms``), and a connection that closes drops its clients at once.

Each consumer client's connection is remembered (``ConsumerGroupInfo.channels``) so the broker
can push NOTIFY_CONSUMER_IDS_CHANGED to a group's members when its membership changes:
``heartbeat`` returns the groups a client joined, ``unregister`` and ``connection_closed`` the
groups a client left, and ``consumer_ids`` drops expired clients.

Time is passed in (``now_ms``); nothing here reads a clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ConsumerGroupInfo:
    clients: dict[str, int] = field(default_factory=dict)  # client id -> last heartbeat ms
    channels: dict[str, object] = field(default_factory=dict)  # client id -> its connection (if known)
    subscriptions: dict[str, str] = field(default_factory=dict)  # topic -> expression
    consume_from_where: str = "CONSUME_FROM_LAST_OFFSET"
    message_model: str = "CLUSTERING"
    consume_type: str = "CONSUME_PASSIVELY"   # PUSH; CONSUME_ACTIVELY is a pull consumer


class ClientRegistry:
    def __init__(self, expiry_ms: int = 120_000) -> None:
        self.expiry_ms = expiry_ms
        self.consumers: dict[str, ConsumerGroupInfo] = {}
        self.producers: dict[str, dict[str, int]] = {}
        self._by_connection: dict[object, set[tuple[str, str, str]]] = {}

    def heartbeat(self, data: dict, now_ms: int, connection: object = None) -> list[str]:
        """Record a HEART_BEAT body (HeartbeatData JSON, already parsed); returns the consumer
        groups this client was not a member of before (their other members should rebalance)."""
        joined: list[str] = []
        client_id = str(data.get("clientID", ""))
        seen = self._by_connection.setdefault(connection, set()) if connection is not None else set()
        for producer in data.get("producerDataSet") or ():
            group = str(producer.get("groupName", ""))
            self.producers.setdefault(group, {})[client_id] = now_ms
            seen.add(("producer", group, client_id))
        for consumer in data.get("consumerDataSet") or ():
            group = str(consumer.get("groupName", ""))
            info = self.consumers.setdefault(group, ConsumerGroupInfo())
            if client_id not in info.clients:
                joined.append(group)
            info.clients[client_id] = now_ms
            if connection is not None:
                info.channels[client_id] = connection
            info.consume_from_where = str(consumer.get("consumeFromWhere", info.consume_from_where))
            info.message_model = str(consumer.get("messageModel", info.message_model))
            info.consume_type = str(consumer.get("consumeType", info.consume_type))
            for sub in consumer.get("subscriptionDataSet") or ():
                info.subscriptions[str(sub.get("topic", ""))] = str(sub.get("subString", "*"))
            seen.add(("consumer", group, client_id))
        return joined

    def unregister(self, client_id: str, producer_group: str | None, consumer_group: str | None) -> list[str]:
        """Forget a client (UNREGISTER_CLIENT); returns the consumer groups it left."""
        if producer_group:
            self.producers.get(producer_group, {}).pop(client_id, None)
        if consumer_group and self._drop_consumer(consumer_group, client_id):
            return [consumer_group]
        return []

    def connection_closed(self, connection: object) -> list[str]:
        """Forget every client that spoke over ``connection``; returns the consumer groups they left."""
        left = []
        for kind, group, client_id in self._by_connection.pop(connection, ()):
            if kind == "producer":
                self.producers.get(group, {}).pop(client_id, None)
            elif self.consumers.get(group) is not None and self.consumers[group].channels.get(client_id,
                                                                                              connection) is connection:
                if self._drop_consumer(group, client_id):
                    left.append(group)
        return sorted(set(left))

    def _drop_consumer(self, group: str, client_id: str) -> bool:
        info = self.consumers.get(group)
        if info is None or client_id not in info.clients:
            return False
        del info.clients[client_id]
        info.channels.pop(client_id, None)
        return True

    def consumer_channels(self, group: str) -> dict[str, object]:
        """Client id -> connection of the group's members whose connection is known."""
        info = self.consumers.get(group)
        return dict(info.channels) if info is not None else {}

    def consumer_ids(self, group: str, now_ms: int) -> list[str]:
        """Live client ids of ``group``, sorted (every client must see the same order to rebalance)."""
        info = self.consumers.get(group)
        if info is None:
            return []
        for client_id, last_ms in list(info.clients.items()):
            if now_ms - last_ms > self.expiry_ms:
                del info.clients[client_id]
                info.channels.pop(client_id, None)
        return sorted(info.clients)
