"""``migrate(src, dst, options, resume=False) -> dict``: the offline migration, step by step.

Steps (a table: each step's work and the step after it; the journal records the step reached)::

    step   work                                                         next
    copy   stream SRC's log into DST's log, re-framed, queues built     meta
    meta   configs, delay/timer state, checkpoints, key index, marker   done
    done   nothing (a finished migration)                               -

Copy: each source record becomes its target record(s) (``reframe``) at the same queue offsets,
written with the source's store timestamps and hosts (so the output does not depend on when it
runs), and its queue unit is written at once. Ordinary records take the fast path (``bulk``:
bytes copied and re-framed in large buffers, nothing decoded); every other item goes through the
one log reader and ``Copier._copy``, and both write the same bytes. Every
``CHECKPOINT_EVERY_BYTES`` (1 GiB, RocketMQ's commitlog file size) of source address (at fixed
source positions, so a resumed run checkpoints where an uninterrupted one does) the target log and
queues are fdatasynced, then the journal records the source position, the target log end and the
queue sizes. ``resume=True`` reads the journal, cuts the target log and queues
back to it and continues from its source position; a store byte-identical to an uninterrupted
run results. SRC is only ever read.

Rules: a DLedger source's non-record entries (no-ops, config changes) go to a DLedger target
with their index and term, and are dropped for a plain target; entries past the source's
committed index go to a DLedger target only (they were never visible to consumers). A DLedger
source keeps every entry's Raft index and term in a DLedger target (``Plan.keeps_raft_indexes``);
its ``currterm`` (vote state) and the broker's applied mark (``raft-applied.json``) are copied. Transaction commit/rollback records that point at a half
record (PREPAREDTRANSACTIONOFFSET) are pointed at its new place.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from mqbench.broker.formats import dledger as dl
from mqbench.broker.store import versions
from mqbench.broker.store.consume_queue import DEFAULT_BCQ_SEGMENT_BYTES, DEFAULT_CQ_SEGMENT_BYTES
from mqbench.broker.formats.record import Message, encode_message
from mqbench.broker.formats.record_layout import SYSFLAG_TX_COMMIT, SYSFLAG_TX_MASK, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from mqbench.broker.formats.record_peek import peek_fields, peek_properties, peek_topic
from mqbench.broker.formats.record_check import peek_store_timestamp
from mqbench.broker.store.atomic import ABORT_FILE, lock_held
from mqbench.broker.formats.index_file import DEFAULT_HASH_SLOT_NUM, DEFAULT_INDEX_NUM
from mqbench.broker.store.index_files import INDEX_DIR, IndexWriter, geometry, index_files
from mqbench.broker.store.log_reader import RAISE, FolderFiles, LogReader, list_segments
from mqbench.broker.store.recovery import CheckpointFile, CheckpointState
from mqbench.broker.formats.topics import TRANS_HALF_TOPIC
from mqbench.errors import CorruptDataError, UserError

from . import delay
from .configs_carry import read_configs, write_configs
from .journal import JOURNAL_FILE, read_journal, write_file_atomic, write_journal
from .plan import Options, Plan, make_plan, needs_prescan
from .reframe import Reframer
from .bulk import BulkCopy
from .source import (
    decode_item,
    killed_broker,
    log_files,
    peek_item,
    source_folders,
    source_item,
    torn_tail,
    walk_log,
)
from .target import TargetLog, TargetQueues
from mqbench.broker.formats.properties import PROPERTY_CRC32

CHECKPOINT_EVERY_BYTES = 1 << 30       # RocketMQ's commitlog file size: one fdatasync round per GiB of source
PARALLEL_MIN_BYTES = 32 << 20     # a smaller log folder is checked in this process (no worker to start)
SLOW_WINDOW_BYTES = 64 << 10      # the reader's window for one item off the fast path
RAFT_APPLIED_FILE = "raft-applied.json"     # the broker's applied mark (broker/store/raft_storage.py)
STEPS = {"copy": "meta", "meta": "done"}


class Blocked(UserError):
    """The source holds records without a form in the target (the message lists them all)."""


class Copier:
    """The copy step's state: target log and queues, counters, the source position."""

    def __init__(self, plan: Plan, options: Options, dst: Path, progress: dict, queue_sizes: list | None,
                 on_progress: Callable[[int], None] | None):
        self.plan, self.dst = plan, dst
        self.reframer = Reframer(plan.target_version, options.codec, options.compress_over_bytes)
        self.timers = delay.TimerScan(plan.source, plan.target_version, options.map_timers_to_levels)
        self.log = TargetLog(dst, plan.target_version, plan.segment_bytes, plan.self_id)
        self.queues = TargetQueues(dst, self._is_batch_topic, cq_segment_bytes=DEFAULT_CQ_SEGMENT_BYTES,
                                   bcq_segment_bytes=DEFAULT_BCQ_SEGMENT_BYTES)
        self.progress = progress
        self.on_progress = on_progress
        self.keep_indexes = plan.keeps_raft_indexes
        self.jobs = options.jobs if options.jobs is not None else default_jobs()
        # a 5.x source going to 4.x may hold records without a 4.x form: each record is checked as
        # it is copied; after the first blocker nothing more is written, the rest is only checked,
        # so the refusal lists every blocking kind (and the caller removes DST)
        self.check_blockers = not plan.scanned and versions.major(plan.source_version) == 5 and \
            versions.major(plan.target_version) == 4
        self.blocked = False
        self.timers.now_ms = max(self.timers.now_ms, progress["last_store_timestamp_ms"])
        if progress.get("timer_farthest"):
            self.timers.farthest = tuple(progress["timer_farthest"])
        self.src_dl = versions.is_dledger(plan.source_version)
        self.dst_dl = versions.is_dledger(plan.target_version)
        self.index = new_index_writer(plan.source, dst)
        if queue_sizes is not None:
            self.log.rewind(progress["log_end"], progress["last_index"])
            self.queues.rewind(queue_sizes)
            index_log(self.index, dst)     # the key index of what the checkpoint kept, built anew

    def _is_batch_topic(self, topic: str) -> bool:
        return versions.has_batch_cq(self.plan.target_version) and self.plan.configs.is_batch_topic(topic)

    def run(self, checkpoint: Callable[[], None]) -> None:
        p = self.progress
        bulk = BulkCopy(self)
        for number, (rel, is_dl) in enumerate(source_folders(self.plan.source)):
            if number < p["folder"]:
                continue
            segdir = list_segments(os.path.join(self.plan.source, rel), rel)
            for problem in segdir.problems:
                raise CorruptDataError(problem["detail"], where=problem["file"])
            if not segdir.segments:
                continue
            files = FolderFiles(segdir, rel)
            big = sum(os.stat(s.path).st_blocks * 512 for s in segdir.segments) >= PARALLEL_MIN_BYTES
            try:
                bulk.open_folder(files, self.jobs if big else 0)
                self._copy_folder(bulk, files, number, is_dl, checkpoint)
            finally:
                bulk.close_folder()
                files.close()
        if self.on_progress:
            self.on_progress(p["bytes_in"])
        if self.check_blockers:
            for b, place in self.timers.final_blockers():
                self.plan.add_blocker(b.kind, b.detail, place)
            if self.plan.blockers:
                raise Blocked(self.plan.blocker_text())
        if self.timers.to_v4 and self.timers.map_to_levels and not p.get("timers_done"):
            self._map_timers()
            p["timers_done"] = True     # journaled by the checkpoint that follows

    def _copy_folder(self, bulk: BulkCopy, files: FolderFiles, number: int, is_dl: bool,
                     checkpoint: Callable[[], None]) -> None:
        """Copy one log folder: runs of records on the fast path (``bulk``), every other item
        through the one log reader and ``_copy``; a checkpoint each time the source address
        crosses a multiple of ``CHECKPOINT_EVERY_BYTES``."""
        p = self.progress
        resume = number == p["folder"] and p["address"] >= 0
        pos = p["address"] if resume else files.starts[0]
        state = {"expected_index": None, "before": p["address"]}

        def boundary(at: int) -> None:
            p["folder"], p["address"] = number, at
            if not self.blocked:
                checkpoint()
            if self.on_progress:
                self.on_progress(p["bytes_in"])

        while True:
            pos = bulk.copy_run(pos, state, CHECKPOINT_EVERY_BYTES, boundary)
            bulk.flush_pending()
            if state["before"] != p["address"]:
                p["folder"], p["address"] = number, state["before"]
            reader = LogReader(files, dledger=is_dl, policy=RAISE, window_bytes=SLOW_WINDOW_BYTES,
                               accept_torn_tail=killed_broker(self.plan.source))
            walk = reader.items(pos, None, state["expected_index"])
            try:
                found = next(walk, None)
            finally:
                walk.close()
            if found is None:
                return
            item = source_item(found, number)
            self._copy(item)
            if found.index is not None:
                state["expected_index"] = found.index + 1
            before = p["address"]
            p["folder"], p["address"] = number, found.next
            state["before"] = pos = found.next
            if found.next // CHECKPOINT_EVERY_BYTES != before // CHECKPOINT_EVERY_BYTES:
                if not self.blocked:
                    checkpoint()
                if self.on_progress:
                    self.on_progress(p["bytes_in"])

    def _copy(self, item) -> None:
        p = self.progress
        index = item.entry_index if self.keep_indexes else None
        term = item.entry_term or 0
        if item.record is None:
            p["bytes_in"] += dl.ENTRY_HEADER_BYTES + len(item.entry_body)
            if self.dst_dl and self.src_dl:
                self.log.append_entry(term, item.entry_body, item.entry_magic, index)
                p["entries_out"] += 1
            else:
                p["entries_dropped"] += 1
            return
        p["bytes_in"] += len(item.record)
        committed = self.plan.committed_index
        if self.src_dl and not self.dst_dl and committed is not None and item.entry_index > committed:
            p["records_uncommitted_dropped"] += 1
            return
        # the fast path reads what routing needs and copies the record's bytes; a record to
        # rewrite (or check for blockers) is decoded whole below
        msg = peek_item(item)
        tx = msg.sysflag & SYSFLAG_TX_MASK
        remap = tx in (SYSFLAG_TX_COMMIT, SYSFLAG_TX_ROLLBACK) and str(msg.prepared_tx_offset) in p["prepared"]
        if self.check_blockers or remap or self.reframer.needs_rewrite(msg):
            msg = decode_item(item)
        if self.check_blockers:
            place = f"{item.where} at offset {item.offset}"
            for b in self.reframer.blockers(msg) + self.timers.blockers(msg, place):
                self.plan.add_blocker(b.kind, b.detail, place)
                self.blocked = True
            if self.timers.farthest is not None:
                p["timer_farthest"] = list(self.timers.farthest)
            if self.blocked:
                return
        p["records_in"] += 1
        self.timers.observe(msg)
        old_tx = msg.prepared_tx_offset
        try:
            if not remap and not self.reframer.needs_rewrite(msg):
                self._write(msg, item.record, term, index, item)
            else:
                outs = self.reframer.records(msg)
                if len(outs) > 1 and self.keep_indexes:
                    raise CorruptDataError(f"an inner-batch record of topic {msg.topic}, which topics.json does not "
                                           "configure as BatchCQ (queue.type): its messages cannot keep the Raft "
                                           "indexes; fix the topic config", where=item.where, offset=item.offset)
                for i, out in enumerate(outs):
                    if remap:
                        out.prepared_tx_offset = p["prepared"][str(old_tx)]
                    crc = PROPERTY_CRC32 in out.properties
                    out.properties.pop(PROPERTY_CRC32, None)
                    self._write(out, encode_message(out, append_prop_crc=crc), term, index if i == 0 else None, item)
        except UserError as exc:
            if isinstance(exc, CorruptDataError) and exc.where:
                raise
            raise CorruptDataError(str(exc), where=item.where, offset=item.offset) from None
        if msg.topic == TRANS_HALF_TOPIC or tx == SYSFLAG_TX_PREPARED:
            p["prepared"][str(item.address)] = msg.physical_offset

    def _write(self, msg: Message, record: bytes, term: int, index: int | None, item) -> None:
        p = self.progress
        phys, size = self.log.append_record(record, term, index)
        msg.physical_offset = phys
        self.queues.dispatch(msg, size, item.where, item.offset)
        self.index.put_record(msg.topic, msg.properties, msg.sysflag, phys, msg.store_timestamp_ms)
        p["records_out"] += 1
        p["bytes_out"] += size
        p["last_store_timestamp_ms"] = max(p["last_store_timestamp_ms"], msg.store_timestamp_ms)

    def _map_timers(self) -> None:
        """v5 -> v4 with --map-timers-to-levels: a SCHEDULE_TOPIC_XXXX record for each pending
        timer message, after the copied log (a second read-only pass over SRC)."""
        p = self.progress
        scan = delay.TimerScan(self.plan.source, self.plan.target_version, True)
        scan.now_ms = self.timers.now_ms
        next_offsets: dict[int, int] = {}
        for (topic, qid), q in self.queues.queues.cqs.items():
            if topic == delay.SCHEDULE_TOPIC:
                next_offsets[qid] = q.max_offset
        for item in walk_log(self.plan.source):
            if item.record is None:
                continue
            msg = decode_item(item)
            if not scan.is_pending(msg):
                continue
            sched = scan.schedule_record(msg)
            if sched is None:
                raise CorruptDataError("a pending timer message is due beyond the longest delay level",
                                       where=item.where, offset=item.offset)
            sched.queue_offset = next_offsets.get(sched.queue_id, 0)
            next_offsets[sched.queue_id] = sched.queue_offset + 1
            self._write(sched, encode_message(sched), self.log.last_term, None, item)
            p["timers_mapped"] += 1

    def close(self) -> None:
        self.queues.close()
        self.log.close()


def default_jobs() -> int:
    """Worker processes that check the source ahead of the copy (``prescan``): one per CPU this
    process may run on (the copy itself takes about a third of the work), at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _new_progress() -> dict:
    return {"folder": 0, "address": -1, "log_end": 0, "last_index": -1, "records_in": 0, "records_out": 0,
            "entries_out": 0, "entries_dropped": 0, "records_uncommitted_dropped": 0, "bytes_in": 0,
            "bytes_out": 0, "last_store_timestamp_ms": 0, "timers_mapped": 0, "committed_index": -1,
            "prepared": {}}


def _check_dst(src: str, dst: str, resume: bool) -> dict | None:
    src_real, dst_real = os.path.realpath(src), os.path.realpath(dst)
    if dst_real == src_real or dst_real.startswith(src_real + os.sep) or src_real.startswith(dst_real + os.sep):
        raise UserError(f"--out {dst} must be outside the source store {src} (SRC is never written)")
    journal = read_journal(dst) if os.path.isdir(dst) else None
    # killed while writing the very first journal: only its temp file is there, nothing to resume
    untouched = journal is None and os.path.isdir(dst) and set(os.listdir(dst)) <= {JOURNAL_FILE + ".tmp"}
    if untouched:
        for name in os.listdir(dst):
            os.remove(os.path.join(dst, name))
        return None
    if resume:
        if journal is None:
            raise UserError(f"--resume: {dst} holds no migration journal (start without --resume)")
        return journal
    if os.path.exists(dst) and (not os.path.isdir(dst) or os.listdir(dst)):
        hint = ""
        if journal is not None:
            hint = (" (it holds a finished migration; --verify alone checks it)" if journal["step"] == "done"
                    else " (an interrupted migration: pass --resume)")
        raise UserError(f"--out {dst} exists and is not empty{hint}")
    return None


def _journal_base(plan: Plan, options: Options) -> dict:
    return {"source": plan.source, "source_version": plan.source_version,
            "source_files": [list(f) for f in plan.source_files], "target_version": plan.target_version,
            "options": options.journal_doc(plan.self_id, plan.segment_bytes)}


def source_notes(src: str, options: Options, *, force: bool = False) -> list[str]:
    """Refuse what must not be migrated; notes on what is migrated with a caveat.

    * a store whose broker is running (``lock`` held, by an mqbench ``flock`` or a Java broker's
      record lock) is refused unless ``force`` (its log is being written: the copy would be torn);
    * ``abort`` present with the lock free: the broker was killed; accepted, with a note (the log
      is taken up to its last valid record; a torn tail is refused as any damage is);
    * the same version as the source, from an mqbench store, without ``--codec`` or another
      ``--segment-bytes``: refused (the output would be a copy of SRC). A store a real broker
      wrote is accepted at its own version (mqbench rebuilds its queues and key index).
    """
    notes = []
    if lock_held(src):
        if not force:
            raise UserError(f"{src} is the store of a running broker (its lock file is held): stop the broker "
                            "first, or pass --force to copy a log that is still being written")
        notes.append("--force: the store's lock is held (a broker is running); the copy is of the log as read")
    elif os.path.exists(os.path.join(src, ABORT_FILE)):
        cut = torn_tail(src)
        where = (f"; its torn tail from {cut['file']} offset {cut['offset']} is left out ({cut['detail']})"
                 if cut else "; the log is whole")
        notes.append("abort file present and the lock free: the broker was killed (not shut down); the log is "
                     f"copied up to its last valid record, as RocketMQ's recovery keeps it{where}")
    source_version = versions.detect_version(src)
    if source_version == options.target:
        same_geometry = options.segment_bytes is None or options.segment_bytes == _source_segment_bytes(src)
        if versions.read_marker(src) is not None and options.codec is None and same_geometry:
            raise UserError(f"{src} is already a {options.target} store: migrating to the same version would only "
                            f"copy it (use cp -a); --codec or --segment-bytes re-encode it")
        notes.append(f"same version as the source ({source_version}): records are copied as they are; queues, "
                     "key index and checkpoint are rebuilt")
    return notes


def _source_segment_bytes(src: str) -> int:
    return max((size for _, size in log_files(src)), default=0)


def migrate(src: str, dst: str, options: Options, *, resume: bool = False, force: bool = False,
            on_progress: Callable[[int], None] | None = None) -> dict:
    """Migrate ``src`` into ``dst`` (see module doc); returns the summary (the final journal's
    counters and the plan's notes). Raises UserError for a refused migration (blockers listed),
    CorruptDataError naming the file and offset of a corrupt source record.

    A refused fresh migration (a blocker, a corrupt source) removes DST: it was empty before.
    A resumed one that is refused leaves DST as it was (the error says what to do)."""
    src = os.path.abspath(src)
    dst = os.path.abspath(dst)
    if options.target not in versions.STORE_VERSIONS:
        raise UserError(f"unknown target version {options.target!r} (one of {', '.join(versions.STORE_VERSIONS)})")
    journal = _check_dst(src, dst, resume)
    notes = source_notes(src, options, force=force)
    if journal is not None:
        return _migrate(src, dst, options, journal, notes, on_progress)
    created = not os.path.exists(dst)
    try:
        return _migrate(src, dst, options, None, notes, on_progress)
    except UserError:
        # refused (corrupt source, blockers, bad record): what was written is worthless and a
        # --resume would fail the same way, so DST goes back to how it was: absent or empty
        _remove_output(dst, created)
        raise


def _remove_output(dst: str, created: bool) -> None:
    if not os.path.isdir(dst):
        return
    if created:
        shutil.rmtree(dst)
        return
    for name in os.listdir(dst):
        path = os.path.join(dst, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


def _migrate(src: str, dst: str, options: Options, journal: dict | None, notes: list[str],
             on_progress: Callable[[int], None] | None) -> dict:
    # only a 5.x source going to 4.x can hold records without a 4.x form; they are found while
    # copying (Copier.check_blockers). A scan first is needed only to learn whether a DLedger log
    # can keep its Raft indexes: not when an inner batch (a BatchCQ topic) is expanded
    need_scan = needs_prescan(versions.detect_version(src), options.target, read_configs(src))
    plan = make_plan(src, options, scan=need_scan)
    plan.notes[:0] = notes
    base = _journal_base(plan, options)
    if journal is not None:
        for key in ("source", "source_files", "target_version", "options"):
            if journal.get(key) != base[key]:
                raise UserError(f"--resume: the journal in {dst} was written for another {key.replace('_', ' ')} "
                                f"({journal.get(key)!r}); rerun without --resume into an empty folder")
    elif plan.blockers:
        raise UserError(plan.blocker_text())
    os.makedirs(dst, exist_ok=True)
    step = journal["step"] if journal else "copy"
    progress = journal["progress"] if journal else _new_progress()
    queue_sizes = journal["queues"] if journal else None
    if journal is None:
        write_journal(dst, {**base, "step": "copy", "progress": progress, "queues": []})
        queue_sizes = None
    while step != "done":
        if step == "copy":
            _copy_step(plan, options, Path(dst), base, progress, queue_sizes, on_progress)
        elif step == "meta":
            _meta_step(plan, Path(dst), progress)
        step = STEPS[step]
        write_journal(dst, {**base, "step": step, "progress": progress,
                            "queues": read_journal(dst)["queues"]})
    return {"source": src, "out": dst, "source_version": plan.source_version, "target_version": plan.target_version,
            "notes": plan.notes, **{k: v for k, v in progress.items() if k != "prepared"}}


def _copy_step(plan: Plan, options: Options, dst: Path, base: dict, progress: dict, queue_sizes,
               on_progress) -> None:
    copier = Copier(plan, options, dst, progress, queue_sizes, on_progress)
    try:
        def checkpoint() -> None:
            copier.log.flush()
            copier.queues.flush()
            progress["log_end"] = copier.log.end_offset
            progress["last_index"] = copier.log.last_index
            write_journal(dst, {**base, "step": "copy", "progress": progress, "queues": copier.queues.sizes()})

        copier.run(checkpoint)
        progress["index_keys"] = copier.index.items_written
        copier.index.close()
        checkpoint()
        committed = plan.committed_index if (plan.keeps_raft_indexes and plan.committed_index is not None) \
            else copier.log.last_index
        progress["committed_index"] = min(committed, copier.log.last_index)
    finally:
        copier.close()


def new_index_writer(src: str, dst: Path) -> IndexWriter:
    """A writer of RocketMQ's ``index/`` for DST (the source's items hold the old physical offsets,
    so the index is built anew as records are written): the source's file geometry when its index
    files have one ``index_files.geometry`` reads, else RocketMQ's defaults. DST's ``index/`` is
    removed first: a resumed copy builds it again from the records the checkpoint kept
    (``index_log``), so its bytes never depend on where a run was interrupted."""
    folder = dst / INDEX_DIR
    if folder.exists():
        shutil.rmtree(folder)
    geo = None
    existing = index_files(os.path.join(src, INDEX_DIR))
    if existing:
        geo = geometry(existing[0].stat().st_size)
    slots, items = geo or (DEFAULT_HASH_SLOT_NUM, DEFAULT_INDEX_NUM)
    return IndexWriter(folder, hash_slot_num=slots, index_num=items)


def index_log(writer: IndexWriter, root: Path) -> None:
    """Index every record of the log at ``root`` (UNIQ_KEY and KEYS of each)."""
    for item in walk_log(str(root)):
        if item.record is None:
            continue
        rec = item.record
        _, _, _, _, sysflag = peek_fields(rec, 0)
        writer.put_record(peek_topic(rec, 0), peek_properties(rec, 0), sysflag, item.address,
                          peek_store_timestamp(rec, 0))


def _meta_step(plan: Plan, dst: Path, progress: dict) -> None:
    write_configs(plan.source, plan.configs, dst, plan.target_version)
    if versions.major(plan.source_version) == 5 and versions.major(plan.target_version) == 5 \
            and delay.has_timer_store(plan.source):
        delay.carry_timer_store(plan.source, str(dst), _timer_address_map(plan.source, dst))
    if versions.is_dledger(plan.target_version):
        ddir = dst / f"dledger-{plan.self_id}"
        write_file_atomic(ddir / "checkpoint", dl.encode_properties_file(
            {"endIndex": progress["last_index"], "committedIndex": progress.get("committed_index", -1)}))
        if plan.currterm is not None and versions.is_dledger(plan.source_version):
            write_file_atomic(ddir / "currterm", plan.currterm)
    applied = Path(plan.source) / RAFT_APPLIED_FILE
    if plan.keeps_raft_indexes and applied.is_file():
        # the replica's metadata files reflect the meta entries up to this Raft index; the indexes
        # are kept, so the mark stays true (without it every committed entry is applied again)
        write_file_atomic(dst / RAFT_APPLIED_FILE, applied.read_bytes())
    ck = CheckpointFile(dst, plan.target_version)
    ts = progress["last_store_timestamp_ms"]
    ck.write(CheckpointState(ts, ts, progress["log_end"], progress["log_end"]), fsync=True)
    ck.close()
    versions.write_marker(str(dst), plan.target_version)


def _timer_address_map(src: str, dst: Path):
    """old record offset -> (new offset, size) of the timer-topic records, matched by their
    timer-queue offset (kept by the migration)."""
    new_by_qoffset: dict[tuple[int, int], tuple[int, int]] = {}
    for item in walk_log(str(dst)):
        if item.record is not None:
            msg, size = decode_item(item), len(item.record)
            if msg.topic == delay.TIMER_TOPIC:
                new_by_qoffset[(msg.queue_id, msg.queue_offset)] = (item.address, size)
    old_to_new: dict[int, tuple[int, int]] = {}
    for item in walk_log(src):
        if item.record is not None:
            msg = decode_item(item)
            if msg.topic == delay.TIMER_TOPIC and (msg.queue_id, msg.queue_offset) in new_by_qoffset:
                old_to_new[item.address] = new_by_qoffset[(msg.queue_id, msg.queue_offset)]
    return old_to_new.get
