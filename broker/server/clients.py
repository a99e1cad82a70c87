"""Producer and consumer groups as the broker knows them from heartbeats.

Consumers rebalance on the client side: each asks GET_CONSUMER_LIST_BY_GROUP and takes its share of
the queues. The broker only has to remember which client ids of a group are alive. A client is
alive while its heartbeats keep coming; RocketMQ drops a channel idle for 120 s, and so do we
(``expiry_ms``), and a connection that closes drops its clients at once.

Time is passed in (``now_ms``); nothing here reads a clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ConsumerGroupInfo:
    clients: dict[str, int] = field(default_factory=dict)  # client id -> last heartbeat ms
    subscriptions: dict[str, str] = field(default_factory=dict)  # topic -> expression
    consume_from_where: str = "CONSUME_FROM_LAST_OFFSET"
    message_model: str = "CLUSTERING"


class ClientRegistry:
    def __init__(self, expiry_ms: int = 120_000) -> None:
        self.expiry_ms = expiry_ms
        self.consumers: dict[str, ConsumerGroupInfo] = {}
        self.producers: dict[str, dict[str, int]] = {}
        self._by_connection: dict[object, set[tuple[str, str, str]]] = {}

    def heartbeat(self, data: dict, now_ms: int, connection: object = None) -> None:
        """Record a HEART_BEAT body (HeartbeatData JSON, already parsed)."""
        client_id = str(data.get("clientID", ""))
        seen = self._by_connection.setdefault(connection, set()) if connection is not None else set()
        for producer in data.get("producerDataSet") or ():
            group = str(producer.get("groupName", ""))
            self.producers.setdefault(group, {})[client_id] = now_ms
            seen.add(("producer", group, client_id))
        for consumer in data.get("consumerDataSet") or ():
            group = str(consumer.get("groupName", ""))
            info = self.consumers.setdefault(group, ConsumerGroupInfo())
            info.clients[client_id] = now_ms
            info.consume_from_where = str(consumer.get("consumeFromWhere", info.consume_from_where))
            info.message_model = str(consumer.get("messageModel", info.message_model))
            for sub in consumer.get("subscriptionDataSet") or ():
                info.subscriptions[str(sub.get("topic", ""))] = str(sub.get("subString", "*"))
            seen.add(("consumer", group, client_id))

    def unregister(self, client_id: str, producer_group: str | None, consumer_group: str | None) -> None:
        if producer_group:
            self.producers.get(producer_group, {}).pop(client_id, None)
        if consumer_group and consumer_group in self.consumers:
            self.consumers[consumer_group].clients.pop(client_id, None)

    def connection_closed(self, connection: object) -> None:
        for kind, group, client_id in self._by_connection.pop(connection, ()):
            if kind == "producer":
                self.producers.get(group, {}).pop(client_id, None)
            elif group in self.consumers:
                self.consumers[group].clients.pop(client_id, None)

    def consumer_ids(self, group: str, now_ms: int) -> list[str]:
        """Live client ids of ``group``, sorted (every client must see the same order to rebalance)."""
        info = self.consumers.get(group)
        if info is None:
            return []
        for client_id, last_ms in list(info.clients.items()):
            if now_ms - last_ms > self.expiry_ms:
                del info.clients[client_id]
        return sorted(info.clients)
