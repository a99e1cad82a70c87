"""Small golden stores of every version for the migrate tests, built with the Store API (and a
RocketMQ-shaped one by hand with the inspect tests' builder), with a fixed clock so that every
build gives the same bytes."""
from __future__ import annotations

import os
import sys
import zlib

from mqbench.broker.formats import configs
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.record import Message
from mqbench.broker.formats.record_layout import SYSFLAG_COMPRESSED, SYSFLAG_TX_COMMIT
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.store.store import Store
from mqbench.broker.formats.topics import TRANS_HALF_TOPIC
from mqbench.codecs.registry import parse_codec

SEGMENT_BYTES = 32 * 1024
T0_MS = 1_700_000_000_000
GROUPS = ("g-orders", "g-batch")


class Clock:
    def __init__(self, start_ms: int = T0_MS):
        self.now = start_ms

    def __call__(self) -> int:
        self.now += 7
        return self.now


def body(i: int, size: int = 300) -> bytes:
    text = (f"order-{i:05d};customer={i * 7919 % 1000};items=" + "sku-%d," % (i % 13) * 40).encode()
    return (text * (size // len(text) + 1))[:size]


def build_store(root: str, version: str, *, messages: int = 120, segment_bytes: int = SEGMENT_BYTES) -> dict:
    """A store of ``version`` at ``root`` with plain, compressed, batch, delayed and transactional
    messages, consumer and delay offsets and a subscription group. Returns what was written."""
    v5 = version.startswith("v5")
    store = Store.open(root, version, create=True, commitlog_segment_bytes=segment_bytes, clock_ms=Clock(),
                       background_flush=False)
    try:
        store.create_topic("orders", read_queue_nums=4, write_queue_nums=4)
        if v5:
            store.create_topic("batchy", read_queue_nums=2, write_queue_nums=2, attributes={"queue.type": "BatchCQ"})
        zstd = parse_codec("zstd:3")
        for i in range(messages):
            props = {"TAGS": f"tag{i % 3}", "KEYS": f"k{i}", "UNIQ_KEY": f"ID{i:08d}"}
            data, sysflag = body(i), 0
            if i % 10 == 3:
                data, sysflag = zlib.compress(body(i, 5000)), SYSFLAG_COMPRESSED
            elif v5 and i % 10 == 7:
                data, sysflag = zstd.compress(body(i, 6000)), SYSFLAG_COMPRESSED | (2 << 8)
            store.append(Message(topic="orders", body=data, properties=props, queue_id=i % 4, sysflag=sysflag,
                                 flag=i % 2, born_host=("10.1.2.3", 40000 + i % 7)))
            if i % 25 == 0:
                items = [BatchItem(body(1000 + i * 10 + j, 80), {"KEYS": f"b{i}-{j}", "UNIQ_KEY": f"B{i}{j}"}, j)
                         for j in range(5)]
                if v5:
                    store.append_batch("batchy", i % 2, items, consolidate=True, properties={"WAIT": "true"})
                store.append_batch("orders", 0, items, consolidate=False, properties={"WAIT": "true"})
            if i % 30 == 5:
                store.append(Message(topic=SCHEDULE_TOPIC, body=body(i, 120), queue_id=2,
                                     properties={"DELAY": "3", "REAL_TOPIC": "orders", "REAL_QID": "1"}))
        half = store.append(Message(topic=TRANS_HALF_TOPIC, body=b"half", properties={"TRAN_MSG": "true"}))
        store.append(Message(topic="orders", body=b"committed", queue_id=3, sysflag=SYSFLAG_TX_COMMIT,
                             prepared_tx_offset=half.physical_offset, properties={"TRAN_MSG": "true"}))
        for q in range(4):
            store.commit_offset("g-orders", "orders", q, max(0, store.max_offset("orders", q) - 3 - q))
        if v5:
            store.commit_offset("g-batch", "batchy", 0, 3)      # inside the first consolidated batch
        store.set_delay_offset(3, 1)
    finally:
        store.close()
    groups = {g: configs.SubscriptionGroupConfig(g) for g in GROUPS}
    flavour = "v5" if v5 else "v4"
    with open(os.path.join(root, "config", "subscriptionGroup.json"), "w") as f:
        f.write(configs.dump_subscription_groups_json(groups, flavour,
                                                      data_version=configs.DataVersion(2, T0_MS, 0)))
    return {"version": version, "root": root}


def storebuilder():
    """The inspect tests' RocketMQ-shaped store builder (tests/formats)."""
    here = os.path.join(os.path.dirname(__file__), "..", "formats")
    if here not in sys.path:
        sys.path.insert(0, here)
    import formats_storebuild
    return formats_storebuild.StoreBuilder


def tree_bytes(root: str) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (for byte-identical comparisons)."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out
