"""``ReplicatedCommitLog``: the DLedger commitlog as a Raft log, owned by its ``Store``
(``store.replicated``; None for a plain-commitlog version).

The leader builds the records it proposes here, and every replica places the entries it is given
here (the leader's own, a follower's, a no-op), so all replicas write the same bytes:

* ``prepare_record(msg) -> bytes`` / ``prepare_batch_records(topic, queue_id, items, *,
  consolidate, ...) -> [(record, messages it holds)]``: checked and stamped by the store's rules
  (``RecordBuilder``: topic, queue id, sizes, store time and host; UserError), queue and
  physical offsets left as placeholders (0, INNER_BASE ""). Nothing is written.
  ``prepare_fields_record(topic, queue_id, body, properties, wire_properties, ...)`` is
  ``prepare_record`` for a message given by its fields (a single send, no ``Message`` built).
* ``append_replicated_batch([(term, body, magic)]) -> [(DLedger index, body as stored)]``: the
  entries in log order, their bytes combined into one write per file run and announced to the
  group commit once. A record entry (magic 1) is restamped (``formats.restamp``): QUEUEOFFSET
  (and INNER_BASE of an inner batch) from the queue-offset table (or the record's own value when
  that is higher, as in a log migrated from elsewhere; half/rollback records take no slot),
  PHYSICALOFFSET from its position. A plain record is checked and indexed from its fixed fields
  in one pass (``place_fields``; the checks of ``peek_record``, BODYCRC included) without decoding
  it; a record that fails its checks raises peek_record's CorruptDataError,
  the entries before it stay written. A record that already carries the right values is written
  as it is: a follower given the leader's stored bytes (which is what the leader sends) writes
  them unchanged, without a copy.
  ``append_replicated(term, body, *, magic=1)`` is the one-entry form; ``append_entry(...,
  restamp=False)`` keeps a record's queue offset as it is (``migrate``'s copy).
* ``commit(index)``: entries up to DLedger ``index`` are committed; they are dispatched to the
  consume queues (only committed entries are readable in Raft mode).
* ``truncate_after(index)``: drop the uncommitted entries after ``index`` (a divergent suffix):
  group commit, dispatch point and checkpoint never claim bytes that are gone; the queue-offset
  table is rebuilt.

Indexes here are DLedger's (from 0); the Raft face (``raft_storage``) adds one. All methods are
thread-safe (the store's lock); a closed store raises UserError.
"""
from __future__ import annotations

import threading
from typing import Callable

from mqbench.errors import CorruptDataError, UserError

from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.dledger import DLEDGER_BLANK_BYTES, ENTRY_HEADER_BYTES, RECORD_MAGICS
from mqbench.broker.formats.properties import PROPERTY_INNER_BASE, PROPERTY_TAGS
from mqbench.broker.formats.record import Message, decode_message, encode_fields, encode_message, encode_properties
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_TX_MASK, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from mqbench.broker.formats.record_check import peek_record, peek_tags_code, place_fields, place_fields_run
from mqbench.broker.formats.restamp import restamp_inner_batch, restamp_record
from mqbench.broker.formats.tags import message_tags_code, tags_code

from .dispatch import Dispatcher, DispatchInfo, PlainRun, QueueSet, dispatch_info, message_dispatch_info
from .dledger_log import DLedgerCommitLog, DLedgerLog, is_record_body
from .flush import GroupCommit
from .record_builder import RecordBuilder
from .recovery import CheckpointFile, CheckpointState


BUILT_MAX = 1 << 16
_NOT_PLAIN = SYSFLAG_INNER_BATCH | SYSFLAG_TX_PREPARED   # the PREPARED bit: set in PREPARED and ROLLBACK

# what placing a plain record needs: topic, queue id, the queue offset it carries, sysflag, tags
# code, store time, size
_Fields = tuple[str, int, int, int, int, int, int]


class ReplicatedCommitLog:
    """See module doc. Built by ``Store`` with the parts of it this log shares: its lock, its
    write-side index (``dispatcher``), record rules (``builder``), queues, group commit and
    checkpoint; ``check_open()`` raises when the store cannot take writes, ``written(end)`` is
    called with the log end after every append (the store's group commit, and outside Raft mode
    its commit and dispatch)."""

    def __init__(self, dledger: DLedgerLog, log: DLedgerCommitLog, *, lock: threading.RLock,
                 dispatcher: Dispatcher, builder: RecordBuilder, queues: QueueSet, group_commit: GroupCommit,
                 checkpoint: CheckpointFile, check_open: Callable[[], None], written: Callable[[int], None]):
        self.dledger = dledger
        self.log = log
        self._lock = lock
        self._dispatcher = dispatcher
        self._builder = builder
        self._queues = queues
        self._group_commit = group_commit
        self._checkpoint = checkpoint
        self._check_open = check_open
        self._written = written
        # records this replica built (prepare_*) and has not placed yet, by id: the leader places
        # its own records from what it knew when it built them, without peeking at them again
        self._built: dict[int, tuple[bytes, _Fields]] = {}

    @property
    def store_host(self) -> tuple[str, int]:
        return self._builder.store_host

    # -- the leader builds ---------------------------------------------------------------------

    def _encode(self, msg: Message) -> bytes:
        self._builder.stamp(msg)
        msg.queue_offset = 0        # placeholders: append_replicated restamps both
        msg.physical_offset = 0
        if msg.sysflag & SYSFLAG_INNER_BATCH:
            msg.properties[PROPERTY_INNER_BASE] = "0"
        record = encode_message(msg)
        self.dledger.next_entry_pos(len(record))   # too large for a data segment: UserError
        if len(self._built) >= BUILT_MAX:
            self._built.clear()                    # proposals that never reached the log
        # an inner batch too: placing it needs these fields, not another pass over its body
        self._built[id(record)] = (record, (msg.topic, msg.queue_id, 0, msg.sysflag, message_tags_code(msg),
                                            msg.store_timestamp_ms, len(record)))
        return record

    def prepare_record(self, msg: Message) -> bytes:
        """The record a Raft leader proposes for ``msg`` (module doc). Nothing is written."""
        if msg.sysflag & SYSFLAG_INNER_BATCH:
            raise UserError("use prepare_batch_records(consolidate=True) for inner-batch records")
        with self._lock:
            self._check_open()
            return self._encode(msg)

    def prepare_fields_record(self, topic: str, queue_id: int, body: bytes, properties: dict[str, str],
                              wire_properties: bytes, *, flag: int, sysflag: int, born_timestamp_ms: int,
                              born_host: tuple[str, int], reconsume_times: int) -> bytes:
        """``prepare_record`` of the ``Message`` with these fields, built from them: the same record
        and the same placement facts, without the ``Message``. ``wire_properties`` must be exactly
        ``encode_properties(properties)`` (a send's property string as sent, when canonical)."""
        if sysflag & SYSFLAG_INNER_BATCH:
            raise UserError("use prepare_batch_records(consolidate=True) for inner-batch records")
        with self._lock:
            self._check_open()
            store_timestamp_ms, born_timestamp_ms, version = self._builder.stamp_fields(
                topic, queue_id, sysflag, born_timestamp_ms)
            record = encode_fields(topic, queue_id, flag, sysflag, born_timestamp_ms, born_host, store_timestamp_ms,
                                   self._builder.store_host, reconsume_times, body, wire_properties, version)
            dledger = self.dledger
            if ENTRY_HEADER_BYTES + len(record) + DLEDGER_BLANK_BYTES > dledger.data_segment_bytes:
                dledger.next_entry_pos(len(record))    # too large for a data segment: its UserError
            if len(self._built) >= BUILT_MAX:
                self._built.clear()                    # proposals that never reached the log
            code = tags_code(properties.get(PROPERTY_TAGS), topic, properties=properties,
                             store_timestamp_ms=store_timestamp_ms)
            self._built[id(record)] = (record, (topic, queue_id, 0, sysflag, code, store_timestamp_ms, len(record)))
            return record

    def prepare_batch_records(self, topic: str, queue_id: int, items: list[BatchItem] | int, *, consolidate: bool,
                              properties: dict[str, str] | None = None, flag: int = 0, sysflag: int = 0,
                              born_timestamp_ms: int = 0, born_host: tuple[str, int] = ("127.0.0.1", 0),
                              inner_body: bytes | None = None,
                              wire_properties: bytes | None = None) -> list[tuple[bytes, int]]:
        """``prepare_record`` for a client batch (``Store.append_batch``'s rules, ``inner_body``
        included): a list of (record, messages it holds); one record when consolidated.
        ``wire_properties``: exactly ``encode_properties(properties)`` when the caller has it (a
        send's property string as sent, when canonical), so that a consolidated record's string is
        that plus INNER_NUM and INNER_BASE, not encoded again."""
        if not consolidate:
            if isinstance(items, int):
                raise UserError("a message count stands for the items of a plain consolidated inner_body only")
            template, built = self._builder.batch_records(topic, queue_id, items, properties=properties,
                                                          sysflag=sysflag, born_timestamp_ms=born_timestamp_ms,
                                                          born_host=born_host)
            with self._lock:
                self._check_open()
                self.dledger.next_entry_pos(max(len(record) for record, _ in built))   # too large: UserError
                if len(self._built) + len(built) > BUILT_MAX:
                    self._built.clear()                # proposals that never reached the log
                store_timestamp_ms, sysflag = template.store_timestamp_ms, template.sysflag
                for record, tags in built:
                    self._built[id(record)] = (record, (topic, queue_id, 0, sysflag, tags, store_timestamp_ms,
                                                        len(record)))
            return [(record, 1) for record, _ in built]
        # one inner-batch record, built from its fields (``encode_fields``): the bytes ``_encode``
        # gives the Message ``RecordBuilder.batch`` + ``stamp`` would build, without building it
        body, props, inner_sysflag, count, store_timestamp_ms, born_timestamp_ms, version = \
            self._builder.consolidated_fields(topic, queue_id, items, properties=properties, sysflag=sysflag,
                                              born_timestamp_ms=born_timestamp_ms, inner_body=inner_body)
        props[PROPERTY_INNER_BASE] = "0"        # a placeholder: placing the entry restamps it
        if wire_properties is not None and len(props) == len(properties or ()) + 2:
            # INNER_NUM and INNER_BASE were not in the batch's properties: they follow its string
            wire = b"%sINNER_NUM\x01%d\x02INNER_BASE\x010\x02" % (wire_properties, count)
        else:
            wire = encode_properties(props)
        with self._lock:
            self._check_open()
            record = encode_fields(topic, queue_id, flag, inner_sysflag, born_timestamp_ms, born_host,
                                   store_timestamp_ms, self._builder.store_host, 0, body, wire, version)
            self.dledger.next_entry_pos(len(record))   # too large for a data segment: UserError
            if len(self._built) >= BUILT_MAX:
                self._built.clear()                    # proposals that never reached the log
            code = tags_code(props.get(PROPERTY_TAGS), topic, properties=props, store_timestamp_ms=store_timestamp_ms)
            # placing an inner batch needs these fields, not another pass over its body
            self._built[id(record)] = (record, (topic, queue_id, 0, inner_sysflag, code, store_timestamp_ms,
                                                len(record)))
            return [(record, count)]

    # -- every replica places ------------------------------------------------------------------

    def _queue_offset_for(self, topic: str, queue_id: int, carried: int, sysflag: int) -> int:
        if sysflag & SYSFLAG_TX_MASK in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK):
            return 0        # half/rollback records take no queue slot (spec 3.10)
        # never below what the record carries: a log written elsewhere (a migrated store whose
        # queues start above 0) keeps its offsets on every replica; a leader's proposal carries 0
        return max(carried, self._dispatcher.next_offset(topic, queue_id))

    def _place_inner_batch(self, term: int, body: bytes, fields: _Fields | None) -> tuple[int, bytes, DispatchInfo]:
        """An inner batch: its INNER_BASE property changes length, so its property string is rebuilt
        (``restamp_inner_batch``, when ``place_fields`` took the record: ``fields``); else the
        record is decoded, checked and rebuilt whole, which names what is wrong with it."""
        if fields is not None:
            topic, queue_id, carried, sysflag, tags_code, store_timestamp_ms, _ = fields
            queue_offset = self._queue_offset_for(topic, queue_id, carried, sysflag)
            restamped = restamp_inner_batch(body, queue_offset)
            if restamped is not None:
                body, inner_num = restamped
                index, pos, body = self.dledger.append_stored(term, body, magic=1)
                return index, body, DispatchInfo(topic, queue_id, queue_offset, pos + ENTRY_HEADER_BYTES, len(body),
                                                 sysflag, tags_code, store_timestamp_ms, inner_num)
        msg, size = decode_message(body, 0, where="replicated entry")
        if size != len(body):
            raise CorruptDataError(f"a replicated entry of {len(body)} bytes holds a record of {size}",
                                   where="replicated entry")
        msg.queue_offset = self._queue_offset_for(msg.topic, msg.queue_id, msg.queue_offset, msg.sysflag)
        msg.properties[PROPERTY_INNER_BASE] = str(msg.queue_offset)
        body = restamp_record(body, msg.queue_offset)
        index, pos, body = self.dledger.append_stored(term, body, magic=1)
        msg.physical_offset = pos + ENTRY_HEADER_BYTES
        return index, body, message_dispatch_info(msg, len(body))

    def _record_fields(self, body: bytes) -> _Fields | None:
        """What placing a record entry needs (topic, queue id, queue offset it carries, sysflag,
        tags code, store time, size): from what this replica knew when it built the record, else
        from its fixed fields (``place_fields``, one pass; a record it does not take goes through
        ``peek_record``, which raises the CorruptDataError naming the damage). An inner batch is
        placed on its own (its INNER_BASE changes length): its fields when this replica built it
        or ``place_fields`` took it, else None."""
        built = self._built.pop(id(body), None)
        if built is not None and built[0] is body:
            return built[1]
        fields = place_fields(body)     # one pass; None: the checks below name what is wrong
        if fields is not None:
            return fields
        peek = peek_record(body, where="replicated entry")
        if peek.size != len(body):
            raise CorruptDataError(f"a replicated entry of {len(body)} bytes holds a record of {peek.size}",
                                   where="replicated entry")
        if peek.sysflag & SYSFLAG_INNER_BATCH:
            return None
        return (peek.topic, peek.queue_id, peek.queue_offset, peek.sysflag, peek_tags_code(peek),
                peek.store_timestamp_ms, peek.size)

    def _place_run(self, term: int, run: list[tuple[bytes, _Fields]], out: list[tuple[int, bytes]]) -> None:
        """``_place_records`` for a run; a run of plain records (no inner batch, no half/rollback
        record, no BatchCQ topic, each queue's offsets consecutive: what a leader's round of single
        sends is) takes ``_place_plain``, which hands dispatch the run's units gathered per queue."""
        dispatcher = self._dispatcher
        next_offset = dispatcher.next_offset
        ahead: dict[tuple[str, int], int] = {}
        offsets: list[int] = []
        keys: list[tuple[str, int]] = []
        for _, (topic, queue_id, carried, sysflag, _, _, _) in run:
            if sysflag & _NOT_PLAIN:
                break
            key = (topic, queue_id)
            offset = ahead.get(key)
            if offset is None:
                offset = next_offset(topic, queue_id)
                if carried > offset:      # never below what the record carries (a migrated log)
                    offset = carried
            elif carried > offset:        # a jump inside the run: not consecutive
                break
            ahead[key] = offset + 1
            offsets.append(offset)
            keys.append(key)
        else:
            is_batch_topic = dispatcher.is_batch_topic
            if not any([is_batch_topic(topic) for topic, _ in ahead]):
                self._place_plain(term, run, offsets, keys, ahead, out)
                return
        self._place_records(term, run, out)

    def _place_plain(self, term: int, run: list[tuple[bytes, _Fields]], offsets: list[int],
                     keys: list[tuple[str, int]], ahead: dict[tuple[str, int], int],
                     out: list[tuple[int, bytes]]) -> None:
        """A run of plain records with their queue offsets and keys: one ``append_records``, the
        offsets table once per queue, and one ``PlainRun`` for dispatch (each queue's CQ units
        gathered here: no per-record dispatch step unless a commit point falls inside the run)."""
        dispatcher = self._dispatcher
        placed = self.dledger.append_records(term, [body for body, _ in run], offsets)
        groups: dict[tuple[str, int], list] = {}
        for key, next_offset in ahead.items():         # the offsets table, once per queue of the run
            dispatcher.note_next(key, next_offset)
            groups[key] = [0, []]
        header_bytes = ENTRY_HEADER_BYTES
        append = out.append
        for (index, pos, stored), (_, fields), key in zip(placed, run, keys):
            groups[key][1] += (pos + header_bytes, fields[6], fields[4])
            append((index, stored))
        for key, group in groups.items():
            group[0] = ahead[key] - len(group[1]) // 3

        def expand() -> list[tuple[int, DispatchInfo]]:
            infos = []
            for (_, pos, _), (_, fields), offset in zip(placed, run, offsets):
                topic, queue_id, _, sysflag, tags_code, store_timestamp_ms, size = fields
                infos.append((pos + header_bytes + size, DispatchInfo(
                    topic, queue_id, offset, pos + header_bytes, size, sysflag, tags_code, store_timestamp_ms, 1)))
            return infos

        _, first_pos, _ = placed[0]
        _, last_pos, last = placed[-1]
        dispatcher.appended_run(last_pos + header_bytes + len(last),
                                PlainRun(groups, first_pos + header_bytes + run[0][1][6], expand))

    def _place_records(self, term: int, run: list[tuple[bytes, _Fields]], out: list[tuple[int, bytes]]) -> None:
        """Append a run of record entries of one term (``DLedgerLog.append_records``: one buffer,
        one write) with their queue offsets, then count and queue them for dispatch. An inner batch
        in the run is restamped first (``restamp_inner_batch``: INNER_BASE, the only field that
        changes length); one it cannot promise that for ends the run there and is placed on its
        own (``_append_other``, the decoding path), the rest of the run after it."""
        dispatcher = self._dispatcher
        ahead: dict[tuple[str, int], int] = {}        # next offsets this run takes, noted once written
        bodies: list[bytes] = []
        offsets: list[int] = []
        infos: list[tuple[int, int]] = []             # (size as stored, messages held) per record
        rest: list[tuple[bytes, _Fields]] = []
        for i, (body, (topic, queue_id, carried, sysflag, _, _, _)) in enumerate(run):
            if sysflag & SYSFLAG_TX_MASK in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK):
                offset, key = 0, None     # half/rollback records take no queue slot (spec 3.10)
            else:
                key = (topic, queue_id)
                # never below what the record carries (a migrated log); a leader's proposal carries 0
                offset = max(carried, ahead[key] if key in ahead else dispatcher.next_offset(topic, queue_id))
            held = 1
            if sysflag & SYSFLAG_INNER_BATCH:
                restamped = restamp_inner_batch(body, offset)
                if restamped is None:      # the decoding path names what is wrong, in log order
                    rest = run[i:]
                    break
                body, held = restamped
            if key is not None:
                ahead[key] = offset + held
            bodies.append(body)
            offsets.append(offset)
            infos.append((len(body), held))
        placed = self.dledger.append_records(term, bodies, offsets) if bodies else []
        for key, next_offset in ahead.items():         # the offsets table, once per queue of the run
            dispatcher.note_next(key, next_offset)
        header_bytes = ENTRY_HEADER_BYTES
        appended = dispatcher.appended
        for (index, pos, stored), (_, fields), offset, (size, held) in zip(placed, run, offsets, infos):
            topic, queue_id, _, sysflag, tags_code, store_timestamp_ms, _ = fields
            appended(pos + header_bytes + size, DispatchInfo(topic, queue_id, offset, pos + header_bytes, size,
                                                             sysflag, tags_code, store_timestamp_ms, held))
            out.append((index, stored))
        if rest:
            body, fields = rest[0]
            out.append(self._append_other(term, body, 1, fields))
            if len(rest) > 1:
                self._place_records(term, rest[1:], out)

    def _append_other(self, term: int, body: bytes, magic: int, fields: _Fields | None = None) -> tuple[int, bytes]:
        """An entry that is not a plain record: an inner batch (restamped; ``fields`` from
        ``_record_fields``), a no-op or metadata."""
        if magic == 1 and is_record_body(body):
            index, body, info = self._place_inner_batch(term, body, fields)
            self._dispatcher.note(info)
            self._dispatcher.appended(info.physical_offset + info.size, info)
        else:
            index, _ = self.dledger.append(term, body, magic=magic)
        return index, bytes(body)

    def append_entry(self, term: int, body: bytes, *, magic: int = 1, restamp: bool = True) -> int:
        """One entry (module doc); returns its DLedger index."""
        if restamp:
            return self.append_replicated(term, body, magic=magic)[0]
        with self._lock:
            self._check_open()
            index, pos = self.dledger.append(term, body, magic=magic)
            if magic == 1 and is_record_body(body):
                info = dispatch_info(self.dledger.entry(index)[1], where="replicated entry")
                self._dispatcher.note(info)
                self._dispatcher.appended(pos + ENTRY_HEADER_BYTES + info.size, info)
            self._written(self.log.end_offset)
            return index

    def append_replicated(self, term: int, body: bytes, *, magic: int = 1) -> tuple[int, bytes]:
        """One restamped entry: (DLedger index, the entry body as stored)."""
        return self.append_replicated_batch([(term, body, magic)])[0]

    def append_replicated_batch(self, items: list[tuple[int, bytes, int]]) -> list[tuple[int, bytes]]:
        """(term, body, magic) entries in log order (module doc): consecutive records of one term
        (inner batches included) are placed as one run (one buffer, one write, see ``_place_run``)."""
        out: list[tuple[int, bytes]] = []
        dledger = self.dledger
        with self._lock:
            self._check_open()
            try:
                with dledger.data.combined_writes(), dledger.index.combined_writes():
                    run: list[tuple[bytes, _Fields]] = []
                    run_term = 0
                    # a follower has built nothing: no lookup per entry then
                    built = self._built
                    built_pop, magics = (built.pop if built else None), RECORD_MAGICS
                    try:
                        i, count = 0, len(items)
                        while i < count:
                            # the records of one term from here on in one call (C where built),
                            # each as the inlined case below takes it (this replica's own built
                            # records by their fields, the others by place_fields)
                            taken, term, after = place_fields_run(items, i, built)
                            if taken:
                                if run and term != run_term:
                                    placing, run = run, []
                                    self._place_run(run_term, placing, out)
                                run += taken
                                run_term = term
                                i = after
                                continue
                            term, body, magic = items[i]
                            i += 1
                            # _record_fields inlined for its common cases (a record this replica
                            # built, one place_fields takes): a few Python calls less per entry
                            fields = None
                            if magic == 1 and (body[4:8] in magics if type(body) is bytes else is_record_body(body)):
                                built = built_pop(id(body), None) if built_pop is not None else None
                                if built is not None and built[0] is body:
                                    fields = built[1]
                                else:
                                    fields = place_fields(body)
                                    if fields is None:
                                        fields = self._record_fields(body)
                            if fields is not None and (not run or term == run_term):
                                run.append((body, fields))
                                run_term = term
                                continue
                            if run:     # emptied first: a run can raise (an inner batch's decoding path)
                                placing, run = run, []
                                self._place_run(run_term, placing, out)
                            if fields is None:
                                out.append(self._append_other(term, body, magic, fields))
                            else:
                                run.append((body, fields))
                                run_term = term
                    except CorruptDataError:
                        if run:                    # what precedes the bad entry is written
                            self._place_run(run_term, run, out)
                        raise
                    if run:
                        self._place_run(run_term, run, out)
            except CorruptDataError:
                self._written(self.log.end_offset)     # what precedes the bad entry is written
                raise
            self._written(self.log.end_offset)
        return out

    def commit(self, index: int) -> None:
        """Entries up to DLedger ``index`` are committed; dispatch them."""
        with self._lock, self._queues.combined_writes():
            self.dledger.set_committed(index)
            self._dispatcher.dispatch_to(self.log.committed_end())

    def truncate_after(self, index: int) -> None:
        """Drop the uncommitted entries after DLedger ``index`` (module doc)."""
        with self._lock:
            self.dledger.truncate_after(index)
            self._built.clear()
            end = self.log.end_offset
            self._group_commit.reset(min(self._group_commit.flushed_offset, end))
            self._dispatcher.truncated(end)
            st = self._checkpoint.state   # never let the checkpoint claim bytes that are gone
            self._checkpoint.write(CheckpointState(st.physic_msg_timestamp_ms, st.logics_msg_timestamp_ms,
                                                   min(st.durable_offset or 0, end),
                                                   min(st.dispatched_offset or 0, end)), fsync=True)
