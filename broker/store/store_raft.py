"""The Raft side of ``Store`` (DLedger versions), kept apart from the plain write path: building
the records a leader proposes (``prepare_record``, ``prepare_batch_records``) and placing
replicated entries (``append_entry``/``append_replicated`` with restamping, ``commit``,
``truncate_after``). ``Store`` inherits these methods; they use its lock, log, queue-offset table
and checkpoint, and the contract is the one in ``store``'s module docstring (Raft mode and
restamping)."""
from __future__ import annotations

from mqbench.errors import CorruptDataError, UserError

from mqbench.broker.formats.batch import BatchItem
from .dispatch import DispatchInfo, dispatch_info, message_dispatch_info
from mqbench.broker.formats.dledger import ENTRY_HEADER_BYTES
from .dledger_log import DLedgerLog, is_record_body
from mqbench.broker.formats.record import (
    SYSFLAG_INNER_BATCH,
    SYSFLAG_TX_MASK,
    SYSFLAG_TX_PREPARED,
    SYSFLAG_TX_ROLLBACK,
    Message,
    decode_message,
    encode_message,
    set_physical_offset,
)
from mqbench.broker.formats.record_check import peek_record, peek_tags_code
from .recovery import CheckpointState
from mqbench.broker.formats.restamp import restamp_record


class RaftHooks:
    """Mixin of ``Store``: the replicated writes and Raft hooks (module doc)."""

    # -- replicated writes (the leader builds, every replica's append_entry places) -----------

    def _encode_replicated(self, msg: Message) -> bytes:
        self._prepare(msg)
        msg.queue_offset = 0        # placeholders: append_entry restamps both
        msg.physical_offset = 0
        if msg.sysflag & SYSFLAG_INNER_BATCH:
            msg.properties["INNER_BASE"] = "0"
        record = encode_message(msg)
        self._need_dledger().next_entry_pos(len(record))   # too large for a data segment: UserError
        return record

    def prepare_record(self, msg: Message) -> bytes:
        """The record a Raft leader proposes for ``msg``: checked (topic, queue id, sizes, hosts;
        UserError), stamped with this store's time and host, queue and physical offsets left for
        ``append_entry`` to fill in. Nothing is written."""
        if msg.sysflag & SYSFLAG_INNER_BATCH:
            raise UserError("use prepare_batch_records(consolidate=True) for inner-batch records")
        with self._lock:
            self._check_open()
            return self._encode_replicated(msg)

    def prepare_batch_records(self, topic: str, queue_id: int, items: list[BatchItem], *, consolidate: bool,
                              properties: dict[str, str] | None = None, flag: int = 0, sysflag: int = 0,
                              born_timestamp_ms: int = 0, born_host: tuple[str, int] = ("127.0.0.1", 0),
                              inner_body: bytes | None = None) -> list[tuple[bytes, int]]:
        """``prepare_record`` for a client batch (the rules of ``append_batch``, ``inner_body``
        included): a list of (record, messages it holds); one record when consolidated. Nothing is written."""
        msgs, counts = self._batch_messages(topic, queue_id, items, consolidate=consolidate, properties=properties,
                                            flag=flag, sysflag=sysflag, born_timestamp_ms=born_timestamp_ms,
                                            born_host=born_host, inner_body=inner_body)
        with self._lock:
            self._check_open()
            return [(self._encode_replicated(m), n) for m, n in zip(msgs, counts)]

    def _restamp(self, body: bytes) -> tuple[bytes, Message]:
        """``body`` with the queue offset this store assigns next (see ``restamp_record``), and the
        decoded record (with that queue offset). CorruptDataError for a damaged or partial record."""
        msg, size = decode_message(body, 0, where="replicated entry")
        if size != len(body):
            raise CorruptDataError(f"a replicated entry of {len(body)} bytes holds a record of {size}",
                                   where="replicated entry")
        queue_offset = self._queue_offset_for(msg.topic, msg.queue_id, msg.queue_offset, msg.sysflag)
        msg.queue_offset = queue_offset
        if msg.sysflag & SYSFLAG_INNER_BATCH:
            msg.properties["INNER_BASE"] = str(queue_offset)
        return restamp_record(body, queue_offset), msg

    def _queue_offset_for(self, topic: str, queue_id: int, carried: int, sysflag: int) -> int:
        if sysflag & SYSFLAG_TX_MASK in (SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK):
            return 0        # half/rollback records take no queue slot (spec 3.10)
        # never below what the record carries: a log written elsewhere (a migrated store whose
        # queues start above 0) keeps its offsets on every replica; a leader's proposal carries 0
        return max(carried, self._next_offset.get((topic, queue_id), 0))

    def _place(self, term: int, body: bytes, log: DLedgerLog) -> tuple[int, bytes, DispatchInfo]:
        """Restamp, append and describe one record entry. A plain record (not an inner batch, whose
        INNER_BASE property changes length) is checked and indexed from its fixed fields
        (``peek_record``) and restamped in place, without decoding it into a Message."""
        peek = peek_record(body, where="replicated entry")
        if peek.size != len(body):
            raise CorruptDataError(f"a replicated entry of {len(body)} bytes holds a record of {peek.size}",
                                   where="replicated entry")
        if peek.sysflag & SYSFLAG_INNER_BATCH:
            body, msg = self._restamp(body)
            index, pos = log.append(term, body, magic=1)
            msg.physical_offset = pos + ENTRY_HEADER_BYTES
            body = set_physical_offset(body, msg.physical_offset)
            return index, body, message_dispatch_info(msg, len(body))
        queue_offset = self._queue_offset_for(peek.topic, peek.queue_id, peek.queue_offset, peek.sysflag)
        body = restamp_record(body, queue_offset)
        index, pos = log.append(term, body, magic=1)
        physical_offset = pos + ENTRY_HEADER_BYTES
        body = set_physical_offset(body, physical_offset)
        return index, body, DispatchInfo(peek.topic, peek.queue_id, queue_offset, physical_offset, peek.size,
                                         peek.sysflag, peek_tags_code(peek), peek.store_timestamp_ms, 1)

    # -- Raft hooks (DLedger versions) -------------------------------------------------------

    def _need_dledger(self) -> DLedgerLog:
        if self.dledger is None:
            raise UserError(f"the store at {self.root} is {self.version}, not a DLedger store")
        return self.dledger

    def append_entry(self, term: int, body: bytes, *, magic: int = 1, restamp: bool = True) -> int:
        """A replicated entry (a follower's append, the leader's own, or a no-op with ``magic=2``);
        returns its DLedger index. A normal entry holding a record is restamped (module doc; with
        ``restamp=False`` its queue offset is kept as it is), counted in the queue-offset table and
        dispatched when committed. A record that fails its checks raises CorruptDataError and
        nothing is written."""
        if restamp:
            return self.append_replicated(term, body, magic=magic)[0]
        log = self._need_dledger()
        with self._lock:
            self._check_open()
            index, pos = log.append(term, body, magic=magic)
            if magic == 1 and is_record_body(body):
                info = dispatch_info(log.entry(index)[1], where="replicated entry")
                self._note_offsets(info)
                self._pending.append((pos + ENTRY_HEADER_BYTES + info.size, info))
            self._after_append(self.log.end_offset)
            return index

    def append_replicated(self, term: int, body: bytes, *, magic: int = 1) -> tuple[int, bytes]:
        """``append_entry`` with restamping, returning (DLedger index, the entry body as stored)."""
        log = self._need_dledger()
        with self._lock:
            self._check_open()
            if magic == 1 and is_record_body(body):
                index, body, info = self._place(term, body, log)
                self._note_offsets(info)
                self._pending.append((info.physical_offset + info.size, info))
            else:
                index, _ = log.append(term, body, magic=magic)
            self._after_append(self.log.end_offset)
            return index, bytes(body)

    def append_replicated_batch(self, items: list[tuple[int, bytes, int]]) -> list[tuple[int, bytes]]:
        """``append_replicated`` for several (term, body, magic) entries in log order, their bytes
        combined into one write per file run (``SegmentQueue.combined_writes``) and announced to
        the group commit once, after they are written. Entries before one that fails its checks
        stay appended (as one by one); the error is raised after they are written."""
        log = self._need_dledger()
        out: list[tuple[int, bytes]] = []
        with self._lock:
            self._check_open()
            try:
                with log.data.combined_writes(), log.index.combined_writes():
                    for term, body, magic in items:
                        if magic == 1 and is_record_body(body):
                            index, body, info = self._place(term, body, log)
                            self._note_offsets(info)
                            self._pending.append((info.physical_offset + info.size, info))
                        else:
                            index, _ = log.append(term, body, magic=magic)
                        out.append((index, bytes(body)))
            except CorruptDataError:
                self._after_append(self.log.end_offset)     # what precedes the bad entry is written
                raise
            self._after_append(self.log.end_offset)
        return out

    def commit(self, index: int) -> None:
        """Raft mode: entries up to ``index`` are committed; dispatch them."""
        log = self._need_dledger()
        with self._lock, self.queues.combined_writes():
            log.set_committed(index)
            self._dispatch_to(self.log.committed_end())

    def truncate_after(self, index: int) -> None:
        """Raft mode: drop the uncommitted entries after ``index``; the queue-offset table is rebuilt."""
        log = self._need_dledger()
        with self._lock:
            log.truncate_after(index)
            end = self.log.end_offset
            self.group_commit.reset(min(self.group_commit.flushed_offset, end))
            self._dispatched = min(self._dispatched, end)
            self._reset_pending()
            st = self.checkpoint.state   # never let the checkpoint claim bytes that are gone
            self.checkpoint.write(CheckpointState(st.physic_msg_timestamp_ms, st.logics_msg_timestamp_ms,
                                                  min(st.durable_offset or 0, end),
                                                  min(st.dispatched_offset or 0, end)), fsync=True)
            self._rebuild_queue_table()
