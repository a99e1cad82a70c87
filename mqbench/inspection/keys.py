"""``inspect --key K``: the messages of a store that carry key ``K`` (a word of ``KEYS``, or the
``UNIQ_KEY``), read-only.

With ``index/`` files (a real broker's, or those ``migrate`` rebuilds) the lookup follows their
slot chains (``index_files.lookup``) for each topic and reads only the records they point at;
every hit is checked against the record itself (hashes collide, and an index can be stale).
Without an index the log is walked once (``iter_messages``). ``topic`` narrows the search; without
it every topic of the store is asked (the topics of ``consumequeue/``/``batchconsumequeue/`` and
``config/topics.json``).
"""
from __future__ import annotations

import os
from typing import Iterator

from mqbench.errors import CorruptDataError

from mqbench.broker.formats import configs
from mqbench.broker.store.index_files import INDEX_DIR, index_files, lookup
from mqbench.broker.store.segment_files import MultiReader, iter_messages, list_segments, log_dirs
from mqbench.migrate import scan as window_scan
from mqbench.broker.formats.record import body_crc, decode_message
from mqbench.broker.store.versions import detect
from mqbench.broker.formats.properties import PROPERTY_KEYS, PROPERTY_UNIQ_KEY


def _has_key(properties: dict[str, str], key: str) -> bool:
    return properties.get(PROPERTY_UNIQ_KEY) == key or key in properties.get(PROPERTY_KEYS, "").split(" ")


def _topics(root: str) -> list[str]:
    names: set[str] = set()
    for folder in ("consumequeue", "batchconsumequeue"):
        base = os.path.join(root, folder)
        if os.path.isdir(base):
            names.update(n for n in os.listdir(base) if os.path.isdir(os.path.join(base, n)))
    path = os.path.join(root, "config", "topics.json")
    try:
        with open(path, "rb") as f:
            names.update(configs.parse_topics_json(f.read(), where=path).topics)
    except (OSError, CorruptDataError):
        pass
    return sorted(names)


def find_by_key(root: str, key: str, topic: str | None = None) -> Iterator[dict]:
    """Each message holding ``key`` (see module doc), as ``iter_messages`` lists messages, plus
    ``found_by`` ("index" or "log scan")."""
    root = os.path.abspath(root)
    detection = detect(root)
    if not index_files(os.path.join(root, INDEX_DIR)):
        for msg in iter_messages(root, scan=window_scan):
            if msg.get("topic") and (topic is None or msg["topic"] == topic) and _has_key(msg["properties"], key):
                yield {**msg, "found_by": "log scan"}
        return
    dirs = log_dirs(root, detection.dledger_dirs)
    reader = MultiReader([list_segments(os.path.join(root, rel), rel) for rel, _ in dirs])
    seen: set[int] = set()
    try:
        for name in [topic] if topic else _topics(root):
            for offset in sorted(set(lookup(os.path.join(root, INDEX_DIR), name, key))):
                if offset in seen:
                    continue
                located = reader.locate(offset)
                if located is None:
                    continue
                data, pos, start = located
                try:
                    msg, size = decode_message(data, pos, check_crc=False)
                except CorruptDataError:
                    continue
                if msg.topic != name or not _has_key(msg.properties, key):
                    continue
                seen.add(offset)
                yield {"topic": msg.topic, "queue_id": msg.queue_id, "queue_offset": msg.queue_offset,
                       "physical_offset": offset, "size_bytes": size, "body_size_bytes": len(msg.body),
                       "sysflag": msg.sysflag, "store_timestamp_ms": msg.store_timestamp_ms,
                       "properties": msg.properties, "crc_ok": body_crc(msg.body) == msg.body_crc,
                       "found_by": "index"}
    finally:
        reader.close()
