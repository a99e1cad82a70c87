"""A delayed send rewritten on its fields (``rewrite.delay_level_fields``, the leader's send path)
stores the record the ``Message`` path stores (``rewrite_for_delay`` then ``prepare_record``):
the same bytes and placement facts; every message it does not take (None) is left to that path."""
from __future__ import annotations

import random

import pytest

from mqbench.broker.formats.properties import (
    PROPERTY_DELAY,
    PROPERTY_MQBENCH_DELAY_SOURCE,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_TIMER_DELAY_MS,
)
from mqbench.broker.formats.record import Message, encode_properties
from mqbench.broker.formats.record_layout import SYSFLAG_TX_COMMIT, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from mqbench.broker.store.store import Store
from mqbench.broker.timer.config import DelayConfig
from mqbench.broker.timer.rewrite import DELAY_TOPICS, delay_level_fields, rewrite_for_delay

CLOCK_MS = 1_700_000_000_000
LEVELS = ["16", "1", "18", "19", "99", " 3 ", "+2", "1_6", "\uff11\uff16", "0", "-1", "abc", "", "9" * 30]
OTHERS = [("KEYS", "ord-1 ord-2"), ("TAGS", "PAY_TIMEOUT"), ("UNIQ_KEY", "7F000001ABCD"), ("bizLine", "mall"),
          ("名前", "日本語"), (PROPERTY_REAL_TOPIC, "X"), (PROPERTY_REAL_QID, "2"),
          (PROPERTY_MQBENCH_DELAY_SOURCE, "L3:17"), (PROPERTY_TIMER_DELAY_MS, "5000")]


def _case(rng):
    props = {}
    items = rng.sample(OTHERS, rng.randrange(3)) + ([(PROPERTY_DELAY, rng.choice(["16", "3", *LEVELS]))] if rng.random() < 0.85 else [])
    rng.shuffle(items)
    for name, value in items:
        if value:
            props[name] = value
    return dict(topic=rng.choice(["order_payment_timeout", "T", "%RETRY%cg", "order_payment_timeout", *DELAY_TOPICS]),
                queue_id=rng.choice([0, 7, 1 << 30]), properties=props,
                sysflag=rng.choice([0, 0, 0, SYSFLAG_TX_COMMIT, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK]))


@pytest.mark.parametrize("version", ["v5-dledger", "v4-dledger"])
def test_a_delayed_send_rewritten_on_its_fields_is_the_message_paths_record(tmp_path, version):
    config = DelayConfig(timer_enabled=version.startswith("v5"))
    store = Store.open(tmp_path / "s", version, create=True, raft_mode=True, background_flush=False,
                       store_host=("127.0.0.1", 10911), clock_ms=lambda: CLOCK_MS)
    rng = random.Random(version)
    taken = left = 0
    try:
        for _ in range(400):
            c = _case(rng)
            wire = encode_properties(c["properties"]).decode("utf-8")
            moved = delay_level_fields(c["topic"], c["queue_id"], c["sysflag"], dict(c["properties"]), wire, config)
            msg = Message(topic=c["topic"], body=b"order", properties=dict(c["properties"]), queue_id=c["queue_id"],
                          sysflag=c["sysflag"], born_timestamp_ms=CLOCK_MS - 5, born_host=("10.0.0.1", 5))
            if moved is None:
                left += 1              # the Message path decides it (and refuses what is refused)
                continue
            taken += 1
            topic, queue_id, properties, moved_wire = moved
            assert moved_wire == encode_properties(properties).decode("utf-8")
            stored = rewrite_for_delay(msg, now_ms=CLOCK_MS, config=config)
            assert (topic, queue_id, properties) == (stored.topic, stored.queue_id, stored.properties)
            by_message = store.replicated.prepare_record(stored)
            by_fields = store.replicated.prepare_fields_record(
                topic, queue_id, b"order", properties, moved_wire.encode("utf-8"), flag=0, sysflag=c["sysflag"],
                born_timestamp_ms=CLOCK_MS - 5, born_host=("10.0.0.1", 5), reconsume_times=0)
            assert by_fields == by_message
            assert store.replicated._built[id(by_fields)][1] == store.replicated._built[id(by_message)][1]
        assert taken > 50 and left > 50, (taken, left)
    finally:
        store.close()
