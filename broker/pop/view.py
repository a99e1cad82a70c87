"""``StoreView``: the engine's ``QueueView`` over a replica's ``Store`` (committed state only)."""
from __future__ import annotations

from mqbench.broker.formats.record import Message

READ_BYTES_MAX = 4 << 20


class StoreView:
    """Reads of ``store`` as ``engine.QueueView`` names them."""

    def __init__(self, store) -> None:
        self.store = store

    def read_queue_nums(self, topic: str) -> int:
        cfg = self.store.topic_config(topic)
        return cfg.read_queue_nums if cfg is not None else 0

    def min_offset(self, topic: str, queue_id: int) -> int:
        return self.store.min_offset(topic, queue_id)

    def max_offset(self, topic: str, queue_id: int) -> int:
        return self.store.max_offset(topic, queue_id)

    def consumer_offset(self, group: str, topic: str, queue_id: int) -> int:
        return self.store.query_offset(group, topic, queue_id)

    def read(self, topic: str, queue_id: int, offset: int, max_msgs: int) -> list[Message]:
        if max_msgs <= 0 or offset >= self.store.max_offset(topic, queue_id):
            return []
        return list(self.store.read_queue(topic, queue_id, offset, max_msgs, READ_BYTES_MAX).messages)
