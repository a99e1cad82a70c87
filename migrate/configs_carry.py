"""Carrying a store's JSON configs to the target version (read from SRC, written into DST).

* ``topics.json``: every topic config; the target flavour decides the fields (a ``v4`` target has
  no ``attributes``, so ``queue.type=BatchCQ`` and other attributes are dropped: the plan lists
  them as notes; a ``v5`` target writes ``attributes`` as read, empty for a ``v4`` source);
* ``consumerOffset.json``: the offset table unchanged: offsets are queue offsets and the
  migration keeps every message at its queue offset, so a consumer resumes at the same message;
* ``delayOffset.json``: the level -> offset table unchanged (SCHEDULE_TOPIC_XXXX queues keep
  their offsets too);
* ``subscriptionGroup.json``: every group (5.x-only fields are kept in ``extra`` by the parser
  and written for a ``v5`` target; a ``v4`` target gets the 4.x fields);
* any other file in ``config/`` is copied as it is, except ``timercheck`` (the timer store's,
  see ``delay``) and ``.bak``/``.tmp`` leftovers.

``dataVersion`` is taken from the source file (4.x has no ``stateVersion``; 0 is written for a
``v5`` target), never from the clock, so two runs give the same bytes. Files are read falling back
to their ``.bak`` (as RocketMQ does) and written with ``journal.write_file_atomic``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mqbench.broker.formats import configs
from mqbench.broker.store.atomic import read_with_backup

from .journal import write_file_atomic

TOPICS, OFFSETS, DELAY, GROUPS = "topics.json", "consumerOffset.json", "delayOffset.json", "subscriptionGroup.json"
TIMER_CHECK = "timercheck"
_PARSERS = {TOPICS: configs.parse_topics_json, OFFSETS: configs.parse_consumer_offsets_json,
            DELAY: configs.parse_delay_offsets_json, GROUPS: configs.parse_subscription_groups_json}
_DUMPERS = {TOPICS: configs.dump_topics_json, OFFSETS: configs.dump_consumer_offsets_json,
            DELAY: configs.dump_delay_offsets_json, GROUPS: configs.dump_subscription_groups_json}


@dataclass
class SourceConfigs:
    """The parsed config files of a store (None where a file is absent) and the other files."""

    files: dict[str, object] = field(default_factory=dict)
    other: list[str] = field(default_factory=list)

    @property
    def topics(self) -> configs.TopicsFile | None:
        return self.files.get(TOPICS)

    @property
    def offsets(self) -> configs.OffsetsFile | None:
        return self.files.get(OFFSETS)

    @property
    def delay(self) -> configs.DelayOffsetsFile | None:
        return self.files.get(DELAY)

    @property
    def groups(self) -> configs.SubscriptionGroupsFile | None:
        return self.files.get(GROUPS)

    def is_batch_topic(self, topic: str) -> bool:
        cfg = self.topics.topics.get(topic) if self.topics else None
        return cfg is not None and cfg.is_batch_cq


def read_configs(root: str | os.PathLike) -> SourceConfigs:
    """The configs of the store at ``root`` (read-only); CorruptDataError names a file that does
    not parse (and whose ``.bak`` does not either)."""
    config_dir = Path(root) / "config"
    out = SourceConfigs()
    for name, parse in _PARSERS.items():
        path = config_dir / name
        out.files[name] = read_with_backup(path, lambda data, p=path, f=parse: f(data, where=str(p)))
    if config_dir.is_dir():
        for entry in sorted(os.listdir(config_dir)):
            if (entry in _PARSERS or entry == TIMER_CHECK or entry.endswith((".bak", ".tmp"))
                    or not (config_dir / entry).is_file()):
                continue
            out.other.append(entry)
    return out


def attribute_notes(src: SourceConfigs, target_version: str) -> list[str]:
    """What a ``v4`` target cannot keep of the topic configs (one note per topic)."""
    if not target_version.startswith("v4") or src.topics is None:
        return []
    return [f"topic {name}: attributes {cfg.attributes} are dropped (4.x topic configs have none)"
            for name, cfg in sorted(src.topics.topics.items()) if cfg.attributes]


def write_configs(src_root: str | os.PathLike, src: SourceConfigs, dst_root: str | os.PathLike,
                  target_version: str) -> list[str]:
    """Write the target's ``config/`` (see module doc); returns the files written."""
    config_dir = Path(dst_root) / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    flavour = "v4" if target_version.startswith("v4") else "v5"
    written = []
    for name, doc in src.files.items():
        if doc is None:
            continue
        text = _DUMPERS[name](doc, flavour)
        write_file_atomic(config_dir / name, text.encode("utf-8"))
        written.append(name)
    for name in src.other:
        data = (Path(src_root) / "config" / name).read_bytes()
        write_file_atomic(config_dir / name, data)
        written.append(name)
    return written
