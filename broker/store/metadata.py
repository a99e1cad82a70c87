"""The store's JSON metadata in ``{root}/config/``: topic configs, consumer offsets, delay offsets.

Files (written by ``configs.py`` in the store version's flavour, fastjson layout, atomically with a
``.bak`` by ``atomic.write_atomic``; read back falling back to the ``.bak``):

* ``topics.json``: ``{"dataVersion":…, "topicConfigTable":{name: TopicConfig}}``; written at once
  by ``create_topic``/``update_topic`` (rare operations). With ``topics_in_background`` (a Raft
  replica's store, whose topic changes are applied on the event loop) the write, with its fsyncs,
  runs in one writer thread, in order, and ``persist`` waits for it: the Raft log is what makes a
  topic durable there, and ``raft-applied.json`` moves past its entry only after a ``persist``;
* ``consumerOffset.json``: ``offsetTable`` ``"topic@group": {queueId: next offset}``;
* ``delayOffset.json``: ``offsetTable`` ``{delay level: next offset}``.

Offsets change often, so ``commit_offset``/``set_delay_offset`` only mark the file dirty, and only
when the value changes; ``persist`` writes the dirty files, then fsyncs the folder once (the store
calls it from ``flush``, ``close`` and its background flush: a broker nobody commits to writes
nothing).
Every name is validated (``topics.validate_topic``/``validate_group``) before it is stored.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from mqbench.errors import UserError

from mqbench.broker.formats import configs
from .atomic import read_with_backup, write_atomic
from .segments import fsync_dir
from mqbench.broker.formats.topics import validate_group, validate_topic

TOPICS_FILE = "topics.json"
CONSUMER_OFFSETS_FILE = "consumerOffset.json"
DELAY_OFFSETS_FILE = "delayOffset.json"
QUEUE_TYPES = ("SimpleCQ", "BatchCQ")
QUEUE_NUMS_MAX = 1024


class Metadata:
    """Topic configs and offsets of one store (see module doc). Thread-safe."""

    def __init__(self, root: str | os.PathLike, version: str, clock_ms: Callable[[], int], *,
                 topics_in_background: bool = False):
        self.dir = Path(root) / "config"
        self.version = version
        self.clock_ms = clock_ms
        self._lock = threading.Lock()
        self._persist_lock = threading.Lock()
        self.topics = self._load(TOPICS_FILE, configs.parse_topics_json) or configs.TopicsFile()
        for name in self.topics.topics:
            validate_topic(name)
        self.offsets = self._load(CONSUMER_OFFSETS_FILE, configs.parse_consumer_offsets_json) or configs.OffsetsFile()
        self.delay = self._load(DELAY_OFFSETS_FILE, configs.parse_delay_offsets_json) or configs.DelayOffsetsFile()
        self._dirty: set[str] = set()
        # topics.json writes off the caller's thread (module doc): one thread, so they land in order
        self._topics_writer = ThreadPoolExecutor(1, "topics-json") if topics_in_background else None
        self._topics_pending: Future[None] | None = None

    def _load(self, name: str, parse):
        path = self.dir / name
        return read_with_backup(path, lambda data: parse(data, where=str(path)))

    def _bump(self, dv: configs.DataVersion | None) -> configs.DataVersion:
        dv = dv or configs.DataVersion()
        dv.counter += 1
        dv.timestamp_ms = self.clock_ms()
        return dv

    # -- topics ------------------------------------------------------------------------------

    def topic(self, name: str) -> configs.TopicConfig | None:
        return self.topics.topics.get(name)

    def is_batch_topic(self, name: str) -> bool:
        cfg = self.topics.topics.get(name)
        return cfg is not None and cfg.is_batch_cq

    def _check_config(self, cfg: configs.TopicConfig) -> None:
        validate_topic(cfg.topic_name)
        for what, n in (("read", cfg.read_queue_nums), ("write", cfg.write_queue_nums)):
            if not 1 <= n <= QUEUE_NUMS_MAX:
                raise UserError(f"topic {cfg.topic_name}: {what} queue count {n} is outside 1..{QUEUE_NUMS_MAX}")
        if not 0 <= cfg.perm <= 15:
            raise UserError(f"topic {cfg.topic_name}: perm {cfg.perm} is outside 0..15")
        qtype = cfg.attributes.get("queue.type", "SimpleCQ")
        if qtype not in QUEUE_TYPES:
            raise UserError(f"topic {cfg.topic_name}: queue.type {qtype!r} is not one of {', '.join(QUEUE_TYPES)}")
        if qtype == "BatchCQ" and self.version.startswith("v4"):
            raise UserError(f"topic {cfg.topic_name}: BatchCQ topics need a v5 store, this one is {self.version}")

    def create_topic(self, name: str, *, read_queue_nums: int = 16, write_queue_nums: int = 16, perm: int = 6,
                     attributes: dict[str, str] | None = None, order: bool = False) -> configs.TopicConfig:
        """Create a topic config (UserError if the topic exists) and write ``topics.json``."""
        cfg = configs.TopicConfig(topic_name=validate_topic(name), read_queue_nums=read_queue_nums,
                                  write_queue_nums=write_queue_nums, perm=perm, order=order,
                                  attributes=dict(attributes or {}))
        self._check_config(cfg)
        with self._lock:
            if name in self.topics.topics:
                raise UserError(f"topic {name} already exists")
            self.topics.topics[name] = cfg
            self._write_topics()
        return cfg

    def update_topic(self, cfg: configs.TopicConfig) -> configs.TopicConfig:
        """Replace an existing topic's config (UserError if missing; the queue type cannot change)."""
        self._check_config(cfg)
        with self._lock:
            old = self.topics.topics.get(cfg.topic_name)
            if old is None:
                raise UserError(f"topic {cfg.topic_name} does not exist")
            if old.is_batch_cq != cfg.is_batch_cq:
                raise UserError(f"topic {cfg.topic_name}: queue.type cannot change once the topic exists")
            self.topics.topics[cfg.topic_name] = cfg
            self._write_topics()
        return cfg

    def _write_topics(self) -> None:
        self.topics.data_version = self._bump(self.topics.data_version)
        data = configs.dump_topics_json(self.topics, self.version).encode("utf-8")
        if self._topics_writer is None:
            write_atomic(self.dir / TOPICS_FILE, data)
        else:
            self._topics_pending = self._topics_writer.submit(write_atomic, self.dir / TOPICS_FILE, data)

    def _topics_written(self) -> None:
        """Wait for the background ``topics.json`` writes started so far; one that failed is done
        again from the current topics (in the writer thread, so writes stay in order). Raises its
        OSError if the disk still fails."""
        with self._lock:
            pending = self._topics_pending
        if pending is None or self._topics_writer is None:
            return
        try:
            pending.result()
        except OSError:
            with self._lock:
                data = configs.dump_topics_json(self.topics, self.version).encode("utf-8")
                pending = self._topics_pending = self._topics_writer.submit(write_atomic, self.dir / TOPICS_FILE, data)
            pending.result()
        with self._lock:
            if self._topics_pending is pending:
                self._topics_pending = None

    def close(self) -> None:
        """Wait for the background ``topics.json`` writes and stop their thread."""
        if self._topics_writer is not None:
            self._topics_written()
            self._topics_writer.shutdown()

    # -- consumer and delay offsets ----------------------------------------------------------

    @staticmethod
    def _check_offset_names(group: str, topic: str) -> None:
        validate_group(group)
        validate_topic(topic)
        if "@" in group:
            raise UserError(f"group {group!r} contains '@'")

    @staticmethod
    def _check_offset_numbers(queue_id: int, offset: int) -> None:
        if queue_id < 0 or offset < 0:
            raise UserError(f"queue id {queue_id} and offset {offset} must not be negative")

    def commit_offset(self, group: str, topic: str, queue_id: int, offset: int) -> None:
        self._check_offset_names(group, topic)
        self._check_offset_numbers(queue_id, offset)
        with self._lock:
            queues = self.offsets.offsets.setdefault((topic, group), {})
            if queues.get(queue_id) != offset:
                queues[queue_id] = offset
                self._dirty.add(CONSUMER_OFFSETS_FILE)

    def raise_offsets(self, offsets: dict[tuple[str, str, int], int]) -> None:
        """Commit each ``(group, topic, queue id) -> offset`` that is greater than the committed one
        (an offsets snapshot applied: offsets never rewind), as ``commit_offset`` would one by one,
        with the names checked once per (group, topic) and everything checked before anything
        changes (UserError: nothing changed)."""
        last: str | None = None
        last_topic: str | None = None
        for (group, topic, queue_id), offset in offsets.items():
            if group is not last or topic is not last_topic:     # a snapshot runs queue by queue
                self._check_offset_names(group, topic)
                last, last_topic = group, topic
            if queue_id < 0 or offset < 0:
                self._check_offset_numbers(queue_id, offset)
        table = self.offsets.offsets
        with self._lock:
            changed = False
            last = last_topic = None
            queues: dict[int, int] | None = None
            for (group, topic, queue_id), offset in offsets.items():
                if group is not last or topic is not last_topic:
                    last, last_topic = group, topic
                    queues = table.get((topic, group))
                if queues is None:
                    queues = table[(topic, group)] = {}
                elif offset <= queues.get(queue_id, -1):
                    continue
                queues[queue_id] = offset
                changed = True
            if changed:
                self._dirty.add(CONSUMER_OFFSETS_FILE)

    def query_offset(self, group: str, topic: str, queue_id: int) -> int:
        """The committed offset, or -1 when the group never committed one for that queue."""
        return self.offsets.offsets.get((topic, group), {}).get(queue_id, -1)

    def set_delay_offset(self, level: int, offset: int) -> None:
        if level < 1 or offset < 0:
            raise UserError(f"delay level {level} must be >= 1 and offset {offset} >= 0")
        with self._lock:
            if self.delay.offsets.get(level) != offset:
                self.delay.offsets[level] = offset
                self._dirty.add(DELAY_OFFSETS_FILE)

    def delay_offset(self, level: int) -> int:
        return self.delay.offsets.get(level, 0)

    def persist(self) -> None:
        """Write the dirty offset files (atomically, keeping ``.bak``), then fsync the folder once.
        The texts are made under the lock that ``commit_offset`` takes, the files written outside
        it (their fsyncs never hold up a commit); one persist runs at a time, so a file never goes
        back to older offsets. It first waits for the background ``topics.json`` writes, so what
        it returns after includes the topics (module doc)."""
        with self._persist_lock:
            self._topics_written()
            texts = []
            with self._lock:
                dirty, self._dirty = self._dirty, set()
                if CONSUMER_OFFSETS_FILE in dirty:
                    self.offsets.data_version = self._bump(self.offsets.data_version)
                    texts.append((CONSUMER_OFFSETS_FILE, configs.dump_consumer_offsets_json(self.offsets, self.version)))
                if DELAY_OFFSETS_FILE in dirty:
                    self.delay.data_version = self._bump(self.delay.data_version)
                    texts.append((DELAY_OFFSETS_FILE, configs.dump_delay_offsets_json(self.delay, self.version)))
            for name, text in texts:
                write_atomic(self.dir / name, text.encode("utf-8"), sync_dir=False)
            if texts:
                fsync_dir(self.dir)
