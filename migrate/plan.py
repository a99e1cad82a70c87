"""The migration plan: what SRC holds, what the target needs, what blocks it, and estimates.

``make_plan(src, options, scan=True) -> Plan``: detects the source version, lists its log files,
and (with ``scan``) walks the log read-only once to count records, entries and messages and to
find the records that have no form in the target (``reframe.Reframer.blockers``) and the pending
timer messages a ``v4`` target cannot hold (``delay.TimerScan``). ``--dry-run`` prints that.
``run.migrate`` finds the same blockers while it copies and refuses with every blocking kind listed
(count and first places).

Estimates (``--dry-run``): target log bytes = the valid source log bytes, + 48 per record going
into DLedger entries, - 48 per record leaving them, + the inner messages of expanded batches times
the record overhead; queue bytes = 20 per message; time = source log bytes over ``ESTIMATE_MB_PER_S``, the copy rate
``mqbench bench migrate`` measured (see README), twice when ``needs_prescan`` (the
source is read once before the copy).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from mqbench.broker.store import versions
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH
from mqbench.codecs.registry import Codec

from . import delay
from .configs_carry import SourceConfigs, attribute_notes, read_configs
from .reframe import Reframer
from mqbench.broker.formats.compression import COMPRESS_OVER_BYTES_DEFAULT
from .source import decode_item, log_files, read_dledger_state, source_folders, walk_log
from mqbench.broker.formats.properties import PROPERTY_INNER_NUM

ESTIMATE_MB_PER_S = 8.0        # CPU-bound copy rate (256 MiB v5-dledger -> v5: 81 us of CPU per 649-byte message)
RECORD_OVERHEAD_BYTES = 140    # fixed record fields + an average topic and properties
BLOCKER_PLACES_MAX = 5


@dataclass
class Options:
    """What the user asked for (the CLI flags)."""

    target: str
    codec: Codec | None = None
    compress_over_bytes: int = COMPRESS_OVER_BYTES_DEFAULT
    segment_bytes: int | None = None          # None: the source's log file size
    map_timers_to_levels: bool = False
    jobs: int | None = None        # worker processes checking the source ahead (None: default_jobs; 0: none)

    def journal_doc(self, self_id: str, segment_bytes: int) -> dict:
        return {"codec": self.codec.spec if self.codec else None, "compress_over_bytes": self.compress_over_bytes,
                "segment_bytes": segment_bytes, "map_timers_to_levels": self.map_timers_to_levels,
                "self_id": self_id}


@dataclass
class BlockerCount:
    kind: str
    detail: str
    count: int = 0
    places: list[str] = field(default_factory=list)


@dataclass
class Plan:
    source: str
    source_version: str
    target_version: str
    source_files: list[tuple[str, int]]
    segment_bytes: int
    self_id: str
    source_dledger_dirs: list[str]
    committed_index: int | None
    currterm: bytes | None
    configs: SourceConfigs
    mixed_log: bool = False                   # an upgraded store: old commitlog/ below the DLedger data
    scanned: bool = False
    records: int = 0
    entries_other: int = 0
    messages: int = 0
    inner_batch_records: int = 0
    valid_log_bytes: int = 0
    blockers: dict[str, BlockerCount] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def keeps_raft_indexes(self) -> bool:
        """A DLedger source going to a DLedger target keeps every entry's index and term, unless
        inner batches are expanded (one entry becomes several)."""
        return (versions.is_dledger(self.source_version) and versions.is_dledger(self.target_version)
                and not self.mixed_log
                and not (self.target_version.startswith("v4") and self.inner_batch_records))

    def estimate(self) -> dict:
        src_dl = versions.is_dledger(self.source_version)
        dst_dl = versions.is_dledger(self.target_version)
        log = self.valid_log_bytes + 48 * self.records * (int(dst_dl) - int(src_dl))
        if self.target_version.startswith("v4"):
            log += RECORD_OVERHEAD_BYTES * max(0, self.messages - self.records)
        queues = 20 * self.messages
        total = log + queues
        passes = 2 if needs_prescan(self.source_version, self.target_version, self.configs) else 1
        return {"target_log_bytes": log, "target_queue_bytes": queues, "target_bytes": total,
                "source_bytes": self.valid_log_bytes, "source_passes": passes,
                "time_s": round(passes * self.valid_log_bytes / (ESTIMATE_MB_PER_S * 1e6), 1),
                "rate_mb_per_s": ESTIMATE_MB_PER_S}

    def add_blocker(self, kind: str, detail: str, place: str) -> None:
        b = self.blockers.setdefault(kind, BlockerCount(kind, detail))
        b.count += 1
        if len(b.places) < BLOCKER_PLACES_MAX:
            b.places.append(place)

    def blocker_text(self) -> str:
        lines = [f"{self.source_version} -> {self.target_version} is blocked:"]
        for b in self.blockers.values():
            lines.append(f"  {b.kind}: {b.count} x {b.detail}; first at {', '.join(b.places)}")
        return "\n".join(lines)


def needs_prescan(source_version: str, target_version: str, source_configs: SourceConfigs) -> bool:
    """Whether ``run.migrate`` reads SRC once before copying: only a 5.x DLedger source with BatchCQ
    topics going to 4.x DLedger, to learn whether inner batches are expanded (then the Raft indexes
    cannot be kept). Blockers are found while copying (``run.Copier``)."""
    topics = source_configs.topics
    return (versions.major(source_version) == 5 and versions.major(target_version) == 4
            and versions.is_dledger(source_version) and versions.is_dledger(target_version)
            and topics is not None and any(cfg.is_batch_cq for cfg in topics.topics.values()))


def make_plan(src: str, options: Options, *, scan: bool = True) -> Plan:
    """The plan for migrating ``src`` (see module doc). Reads SRC only."""
    src = os.path.abspath(src)
    detection = versions.detect(src)
    files = log_files(src)
    ddirs = detection.dledger_dirs
    state = read_dledger_state(src, ddirs[0]) if ddirs else None
    self_id = ddirs[0][len("dledger-"):] if ddirs else "n0"
    segment_bytes = options.segment_bytes or (max((size for _, size in files), default=0) or 1 << 30)
    plan = Plan(src, detection.version, options.target, files, segment_bytes, self_id, ddirs,
                state.committed_index if state else None, state.currterm if state else None, read_configs(src))
    plan.mixed_log = len(source_folders(src)) > 1
    plan.notes += attribute_notes(plan.configs, options.target)
    if scan:
        _scan(plan, options)
    return plan


def _scan(plan: Plan, options: Options) -> None:
    reframer = Reframer(plan.target_version, options.codec, options.compress_over_bytes)
    timers = delay.TimerScan(plan.source, plan.target_version, options.map_timers_to_levels)
    for item in walk_log(plan.source):
        framing = 48 if item.entry_index is not None else 0
        if item.record is None:
            plan.entries_other += 1
            plan.valid_log_bytes += framing + len(item.entry_body)
            continue
        plan.records += 1
        plan.valid_log_bytes += framing + len(item.record)
        msg = decode_item(item)
        if msg.sysflag & SYSFLAG_INNER_BATCH:
            plan.inner_batch_records += 1
            try:
                plan.messages += max(1, int(msg.properties.get(PROPERTY_INNER_NUM, "1")))
            except ValueError:
                plan.messages += 1
        else:
            plan.messages += 1
        place = f"{item.where} at offset {item.offset}"
        for b in reframer.blockers(msg):
            plan.add_blocker(b.kind, b.detail, place)
        for b in timers.blockers(msg, place):
            plan.add_blocker(b.kind, b.detail, place)
    for b, place in timers.final_blockers():
        plan.add_blocker(b.kind, b.detail, place)
    plan.scanned = True
    plan.notes += timers.notes()
