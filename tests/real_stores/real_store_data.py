"""The stores a real RocketMQ 4.9.8 broker wrote (``../shared/data/real-stores/``, next to the
repository; ``MQBENCH_REAL_STORES`` overrides), and checks of what a store holds against their
manifest and messages ledger (keys, tags, properties, SHA-256 of the ORIGINAL body)."""
from __future__ import annotations

import collections
import gzip
import hashlib
import json
import os
import tarfile
import zlib

import pytest

from mqbench.broker.formats.record_layout import SYSFLAG_COMPRESSED
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.migrate.source import decode_item, walk_log

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.environ.get("MQBENCH_REAL_STORES", os.path.join(os.path.dirname(REPO), "shared", "data", "real-stores"))
PLAIN = "rmq498-plain"


def data_dir() -> str:
    if not os.path.isfile(os.path.join(DATA, "manifest.json")):
        pytest.skip(f"no real RocketMQ stores at {DATA}")
    return DATA


def manifest() -> dict:
    with open(os.path.join(data_dir(), "manifest.json")) as f:
        return json.load(f)


def ledger(name: str = PLAIN) -> list[dict]:
    with gzip.open(os.path.join(data_dir(), f"{name}.messages.jsonl.gz"), "rt") as f:
        return [json.loads(line) for line in f]


def extract(name: str, into: str) -> str:
    """Extract ``name``.tar.gz into ``into`` (tarfile keeps the holes); returns the store root."""
    with tarfile.open(os.path.join(data_dir(), f"{name}.tar.gz")) as tar:
        tar.extractall(into, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(into)
    return os.path.join(into, name)


def stored(root: str) -> list[dict]:
    """Every message of the store at ``root`` as a consumer sees it (body inflated)."""
    out = []
    for item in walk_log(root):
        if item.record is None:
            continue
        msg = decode_item(item)
        body = zlib.decompress(msg.body) if msg.sysflag & SYSFLAG_COMPRESSED else msg.body
        out.append({"topic": msg.topic, "queue_id": msg.queue_id, "queue_offset": msg.queue_offset,
                    "properties": msg.properties, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)})
    return out


def expected_queue_counts(store: dict) -> dict[tuple[str, int], int]:
    counts = {}
    for topic, t in store["topics"].items():
        for qid, q in t["perQueue"].items():
            counts[(topic, int(qid))] = q["messages"]
    for qid, q in store["systemTopics"][SCHEDULE_TOPIC]["nonEmptyQueues"].items():
        counts[(SCHEDULE_TOPIC, int(qid))] = q["messages"]
    return counts


def check_messages(root: str, name: str = PLAIN) -> list[dict]:
    """Assert the store at ``root`` holds exactly what the real broker stored; returns the messages."""
    store = manifest()["stores"][name]
    msgs = stored(root)
    assert len(msgs) == store["storedRecordsTotal"]
    counts = collections.Counter((m["topic"], m["queue_id"]) for m in msgs)
    assert dict(counts) == expected_queue_counts(store)
    at = {(m["topic"], m["queue_id"], m["queue_offset"]): m for m in msgs}
    assert len(at) == len(msgs)                    # queue offsets are unique per queue
    for line in ledger(name):
        if line["delayLevel"]:
            m = at[(SCHEDULE_TOPIC, line["delayLevel"] - 1, line["queueOffset"])]
            assert m["properties"]["REAL_TOPIC"] == line["topic"]
            assert m["properties"]["REAL_QID"] == str(line["queueId"])
        else:
            m = at[(line["topic"], line["queueId"], line["queueOffset"])]
        props = m["properties"]
        assert props["UNIQ_KEY"] == line["uniqMsgId"], line
        assert props["KEYS"] == line["keys"] and props.get("TAGS") == line["tags"], line
        for key, value in line["userProperties"].items():
            assert props[key] == value, line
        assert (m["size"], m["sha256"]) == (line["bodyLength"], line["bodySha256"]), line
    return msgs


def check_inspect(doc: dict, name: str = PLAIN) -> None:
    """An ``inspect`` document of a healthy copy of the store: every queue, the consumer offsets,
    no damage."""
    store = manifest()["stores"][name]
    assert doc["damage"] == [], doc["damage"][:3]
    queues = {(q["topic"], q["queue_id"]): q for q in doc["queues"]}
    for key, count in expected_queue_counts(store).items():
        assert queues[key]["messages"] == count and queues[key]["max_offset"] == count, key
    offsets = {(c["group"], c["topic"], c["queue_id"]): c["offset"] for c in doc["consumer_offsets"]}
    for group, g in store["consumerGroups"].items():
        for qid, offset in g["committedOffsets"].items():
            assert offsets[(group, g["topic"], int(qid))] == offset
