"""The copy step's fast path: runs of ordinary records copied as bytes, re-framed without decoding.

``BulkCopy(copier).copy_run(pos, state, ...)`` walks the source log folder opened by
``open_folder`` from ``pos`` and copies every record it can take on the fast path straight into
large output buffers; it returns the position of the first item it does not take. The caller
(``run.Copier``) hands that one item to the one log reader (``broker.store.log_reader``, policy
RAISE) and to the per-record path (``Copier._copy``), then calls ``copy_run`` again after it. So
the fast path decides nothing about validity or routing on its own: it takes a record only when

* its framing passes the same checks ``record_check.record_verdict`` (and, in a DLedger log,
  ``dledger.entry_verdict``, the entry's bodyCrc and the index that must follow) makes, each
  on the same bytes: sizes that add up, magic, a topic of TopicValidator's characters,
  properties not ending with NUL, BODYCRC, PHYSICALOFFSET equal to the record's address. The
  checks on a record's own bytes are ``scan.summarize``'s, run on each source window ahead of the
  copy, in worker processes or in this one (``prescan``); those that depend on what was copied
  before (the queue's next offset, the next Raft index, the target's term and room) are made
  here, in log order. A record that fails any of them is left to the reader, which raises (or
  ends the folder) with its own message;
* it needs no rewriting beyond what a byte copy does: PHYSICALOFFSET patched, and for a v4
  target the 4.x property form (TOTALSIZE and PROPERTIESLENGTH one less, the final ``\\x02``
  dropped). Left to the per-record path: transaction records and half messages, inner batches
  and BatchCQ topics, the delay and timer topics, V2 records going to v4, bodies a v4 target
  cannot hold, a ``__CRC32#`` property (recomputed there), non-ASCII topics or properties,
  a queue's first record or one that does not continue its queue, entries past the committed
  index, non-record entries, a term below the target's, ``--codec`` (every record is rewritten).

Per record the copy takes its row of the window's summary (sizes, queue, tags hash code, key
hashes: ``scan.ROW``), slices the record into the output buffer, appends its 20-byte
consume-queue unit to its queue's buffer (and, for a DLedger target, its 32-byte index unit) and
gathers its keys for the key index (``IndexWriter.put_flat``, at each flush). Buffers go out as one
write per run of a segment (``BUFFER_BYTES``); ``flush_pending`` hands everything to the target
objects (log end, last index and term, queue sizes, counters) before the per-record path or a
checkpoint runs, so both paths write exactly the bytes the other would have written.

Where ``mqbench.migrate._build`` is loaded (``mqbench.native``; not with ``MQBENCH_NATIVE=0``),
the loop over a window's rows runs in C (``_build.run``, one call per run of records): the same
checks in the same order, the same bytes appended, and it returns to ``_copy_run_native`` at each
point where the loop below does more than append (a queue it has not seen, a segment's end, a
checkpoint, a full buffer, a queue's units to write, a record it does not take). The rows then come
packed (``scan.pack``, or straight from the C scan) and the keys are gathered packed for ``IndexWriter.put_packed``. The loop
below stays the reference (``tests/migrate/test_build_native.py`` compares whole migrations).
"""
from __future__ import annotations

import struct
import zlib

from mqbench import native
from mqbench.broker.formats import dledger as dl
from mqbench.broker.formats.queues import CQ_UNIT_BYTES
from mqbench.broker.formats.record import encode_blank
from mqbench.broker.formats.record_layout import BLANK_MIN_BYTES
from mqbench.broker.store import versions

from .prescan import Window, Windows
from .scan import ROW_FIELDS

BUFFER_BYTES = 4 << 20
QUEUE_UNITS_PENDING = 4096        # units a queue gathers before they are written (80 KiB)
ENABLED = True              # False: every item takes the per-record path (tests compare the two)

_I32 = struct.Struct(">i")
_I16 = struct.Struct(">h")
_I64 = struct.Struct(">q")
_ENTRY = struct.Struct(">iiqqqiiii")
_INDEX_UNIT = struct.Struct(">iqiqq")
_CQ_UNIT = struct.Struct(">qiq")
_build = native.load("mqbench.migrate._build")
# _build.run's state list (its ST_* fields, in order)
_ST_END, _ST_LAST_INDEX, _ST_LAST_TERM, _ST_EXPECTED, _ST_BEFORE, _ST_BOUNDARY, _ST_RECORDS, _ST_BYTES_IN, \
    _ST_BYTES_OUT, _ST_MAX_STORE_MS = range(10)


class _Queue:
    __slots__ = ("cq", "units", "count")

    def __init__(self, cq):
        self.cq, self.units, self.count = cq, bytearray(), 0


class BulkCopy:
    """The fast path of one ``Copier`` (module doc)."""

    def __init__(self, copier):
        c = copier
        self.copier = c
        self.v4 = versions.major(c.plan.target_version) == 4
        self.dst_dl = c.dst_dl
        self.src_dl = c.src_dl
        self.keep_indexes = c.keep_indexes
        self.committed = c.plan.committed_index if (self.src_dl and not self.dst_dl) else None
        self.enabled = ENABLED and c.reframer.codec is None
        self.native = _build if self.enabled else None       # the compiled loop (module doc)
        self.qmaps: dict[bytes, dict[int, object]] = {}      # topic -> queue id -> _build.Queue (native only)
        self.log = c.log
        self.segment_bytes = c.log.segment_bytes
        self.queues: dict[tuple[bytes, int], _Queue] = {}
        self.topics: dict[bytes, bool] = {}     # topic -> the fast path takes it (not BatchCQ)
        self.windows: Windows | None = None
        self.window: Window | None = None      # the window and row the last run stopped at
        self.row = 0
        self.dirty: list[_Queue] = []
        # pending output: the log bytes from out_at, the DLedger index units from index_at
        self.out = bytearray()
        self.out_at = 0
        self.index_units = bytearray()
        self.index_at = 0
        self.counts = [0, 0, 0]          # records, bytes in, bytes out (since the last flush)
        # pending key index inserts: (hash, physical offset, store ms) flat; packed int64 for the compiled loop
        self.keys: list[int] | bytearray = [] if self.native is None else bytearray()
        self.put_keys = c.index.put_flat if self.native is None else c.index.put_packed
        self.max_store_ms = 0

    # -- bookkeeping shared with the per-record path -----------------------------------------

    def _topics_of(self, w) -> list[tuple[bytes, bool]]:
        """A window's topics with whether the fast path takes them here (``scan`` checked their
        characters; a BatchCQ topic of the target goes through the per-record path)."""
        out = []
        for topic in w.summary.topics:
            fast = self.topics.get(topic)
            if fast is None:
                fast = self.topics[topic] = not self.copier._is_batch_topic(topic.decode("ascii"))
            out.append((topic, fast))
        return out

    def open_folder(self, files, jobs: int) -> None:
        """Start on a source folder: its windows are checked ahead by ``jobs`` worker processes
        (0: in this process; ``prescan``)."""
        self.windows = Windows(files, self.src_dl, self.v4, self.committed, jobs if self.enabled else 0,
                               packed=self.native is not None)
        self.window, self.row = None, 0

    def close_folder(self) -> None:
        """Done with the folder (or failed): the workers end, the windows are freed."""
        if self.windows is not None:
            self.windows.release(self.window)
            self.window = None
            self.windows.close()
            self.windows = None

    def _queue(self, topic: bytes, queue_id: int) -> _Queue | None:
        """The state of a queue the per-record path has created (None: not yet)."""
        cq = self.copier.queues.queues.cqs.get((topic.decode("ascii"), queue_id))
        if cq is None:
            return None
        if self.native is None:
            q = self.queues[(topic, queue_id)] = _Queue(cq)
        else:
            q = self.queues[(topic, queue_id)] = self.qmaps.setdefault(topic, {})[queue_id] = self.native.Queue(cq)
        return q

    def flush_pending(self) -> None:
        """Hand every pending byte and counter to the target objects (before the per-record path,
        a checkpoint, or the end)."""
        log = self.log
        if self.out:
            if self.dst_dl:
                log.dledger.data.write(self.out_at, self.out)
            else:
                log.segments.write(self.out_at, self.out)
            self.out = bytearray()
        self.flush_index()
        if self.keys:
            self.put_keys(self.keys)
            self.keys.clear()
        for q in self.dirty:
            if q.count:
                self.flush_queue(q)
        self.dirty = []
        records, bytes_in, bytes_out = self.counts
        if records:
            p = self.copier.progress
            p["records_in"] += records
            p["records_out"] += records
            p["bytes_in"] += bytes_in
            p["bytes_out"] += bytes_out
            if self.max_store_ms > p["last_store_timestamp_ms"]:
                p["last_store_timestamp_ms"] = self.max_store_ms
            timers = self.copier.timers
            if self.max_store_ms > timers.now_ms:
                timers.now_ms = self.max_store_ms
            self.counts[:] = [0, 0, 0]

    # -- the loop ------------------------------------------------------------------------------

    def copy_run(self, pos: int, state: dict, every_bytes: int, at_boundary) -> int:
        """Copy records from ``pos`` (an item boundary) while the fast path takes them; returns the
        position of the first item it does not take (module doc). ``state["expected_index"]`` is
        the DLedger index the next source entry must have (None: any) and ``state["before"]`` the
        source address the last item started from (the journal's); both are kept up to date. When
        a record's end crosses a multiple of ``every_bytes`` of source address, everything is
        flushed and ``at_boundary(next_position)`` runs (the caller's checkpoint)."""
        c = self.copier
        if not self.enabled or c.blocked:
            return pos
        if self.native is not None:
            return self._copy_run_native(pos, state, every_bytes, at_boundary)
        src_dl = self.src_dl
        dst_dl = self.dst_dl
        keep_indexes = self.keep_indexes
        log = self.log
        dled = log.dledger
        target_seg = self.segment_bytes
        if dst_dl:
            t_end = dled.end_pos
            t_last_index = dled.last_index
            t_last_term = dled.last_term
        else:
            t_end = log.end
            t_last_index = t_last_term = 0
        out = self.out
        if not out:
            self.out_at = t_end
        index_units = self.index_units
        if dst_dl and not index_units:
            self.index_at = (t_last_index + 1) * dl.INDEX_UNIT_BYTES
        queues = self.queues
        dirty = self.dirty
        keyq = self.keys
        records = bytes_in = bytes_out = 0
        max_store_ms = self.max_store_ms
        expected = state.get("expected_index")
        before = state["before"]
        boundary = (before // every_bytes + 1) * every_bytes      # a checkpoint when a record's end reaches it
        i64_pack = _I64.pack_into
        i32_pack = _I32.pack_into
        i16_pack = _I16.pack_into
        crc32 = zlib.crc32

        windows = self.windows
        w, i = windows.at(pos, self.window, self.row)
        if w is None:
            self.window = None
            return pos
        rows, buf, wkeys, wtopics = w.summary.rows, w.view, w.summary.keys, self._topics_of(w)
        n = len(rows)
        while True:
            if i >= n:
                w = windows.following(w)
                if w is None:
                    break
                rows, buf, wkeys, wtopics = w.summary.rows, w.view, w.summary.keys, self._topics_of(w)
                n, i = len(rows), 0
                if not n:
                    break
            # -- the source item, checked ahead (scan.summarize), and what depends on the copy so far
            (_, nxt, ok, rat, total, wsize, plen_at, props_len, tid, queue_id, queue_offset, store_ms, eindex, eterm,
             tags_code, key_at, nkeys) = rows[i]
            if not ok:
                break
            if src_dl and expected is not None and eindex != expected:
                break
            topic, fast = wtopics[tid]
            if not fast:
                break
            q = queues.get((topic, queue_id))
            if q is None:
                q = self._queue(topic, queue_id)
                if q is None:
                    break
            if queue_offset != q.cq.max_offset + q.count:
                break
            # -- the target record -----------------------------------------------------------------
            strip = wsize != total
            if dst_dl:
                term = eterm if src_dl else 0
                if term < t_last_term:
                    break
                if keep_indexes:
                    if eindex != t_last_index + 1:
                        break
                esize_out = 48 + wsize
                if esize_out + dl.DLEDGER_BLANK_BYTES > target_seg:
                    break
                wpos = t_end
                room = target_seg - wpos % target_seg
                if esize_out + dl.DLEDGER_BLANK_BYTES > room:
                    out += dl.encode_entry_blank(room)
                    self.flush_log()
                    out = self.out
                    wpos += room
                    self.out_at = wpos
                new_index = t_last_index + 1
                rec = bytearray(buf[rat:rat + wsize])
                i64_pack(rec, 28, wpos + 48)
                if strip:
                    i32_pack(rec, 0, wsize)
                    i16_pack(rec, plen_at, props_len - 1)
                out += _ENTRY.pack(dl.DLEDGER_MAGIC, esize_out, new_index, term, wpos, 0, 0,
                                   crc32(rec) & 0x7FFFFFFF, wsize)
                out += rec
                index_units += _INDEX_UNIT.pack(dl.DLEDGER_MAGIC, wpos, esize_out, new_index, term)
                new_phys = wpos + 48
                t_end = wpos + esize_out
                t_last_index, t_last_term = new_index, term
                if src_dl:
                    expected = eindex + 1
            else:
                if wsize + BLANK_MIN_BYTES > target_seg:
                    break
                wpos = t_end
                room = target_seg - wpos % target_seg
                if wsize + BLANK_MIN_BYTES > room:
                    out += encode_blank(room)
                    self.flush_log()
                    out = self.out
                    wpos += room
                    self.out_at = wpos
                o = len(out)
                out += buf[rat:rat + wsize]
                i64_pack(out, o + 28, wpos)
                if strip:
                    i32_pack(out, o, wsize)
                    i16_pack(out, o + plen_at, props_len - 1)
                new_phys = wpos
                t_end = wpos + wsize
                if src_dl:
                    expected = eindex + 1
            # -- its queue unit and keys ---------------------------------------------------------
            if not q.count:
                dirty.append(q)
            q.units += _CQ_UNIT.pack(new_phys, wsize, tags_code)
            q.count += 1
            if q.count >= QUEUE_UNITS_PENDING:      # memory stays flat: a queue's units go out in runs
                self.flush_queue(q)
            if nkeys == 1:
                keyq += (wkeys[key_at], new_phys, store_ms)
            elif nkeys:
                for k in range(key_at, key_at + nkeys):
                    keyq += (wkeys[k], new_phys, store_ms)
            i += 1
            records += 1
            bytes_in += total
            bytes_out += wsize
            if store_ms > max_store_ms:
                max_store_ms = store_ms
            pos = before = nxt
            if nxt >= boundary:
                self._sync(t_end, t_last_index, t_last_term, expected, before, state, records, bytes_in, bytes_out,
                           max_store_ms)
                records = bytes_in = bytes_out = 0
                self.flush_pending()
                at_boundary(pos)
                out = self.out
                self.out_at = t_end
                index_units = self.index_units
                self.index_at = (t_last_index + 1) * dl.INDEX_UNIT_BYTES
                dirty = self.dirty
                boundary = (before // every_bytes + 1) * every_bytes
                if c.blocked:
                    break
            elif len(out) >= BUFFER_BYTES:
                self.flush_log()
                out = self.out
                self.out_at = t_end
                c.index.put_flat(keyq)      # memory stays flat: the keys go with the bytes they index
                keyq.clear()
                if dst_dl:
                    self.flush_index()
                    index_units = self.index_units
        self.window, self.row = w, i
        self._sync(t_end, t_last_index, t_last_term, expected, before, state, records, bytes_in, bytes_out,
                   max_store_ms)
        return pos

    def _queue_maps(self, w) -> list:
        """Per topic number of window ``w``: its queues' map (``_build.Queue`` by queue id), or None
        when the fast path does not take the topic."""
        return [self.qmaps.setdefault(topic, {}) if fast else None for topic, fast in self._topics_of(w)]

    def _copy_run_native(self, pos: int, state: dict, every_bytes: int, at_boundary) -> int:
        """``copy_run`` with the loop over each window's rows in C (module doc)."""
        c = self.copier
        b = self.native
        run = b.run
        log = self.log
        dst_dl = self.dst_dl
        if dst_dl:
            dled = log.dledger
            t_end, t_last_index, t_last_term = dled.end_pos, dled.last_index, dled.last_term
        else:
            t_end, t_last_index, t_last_term = log.end, 0, 0
        if not self.out:
            self.out_at = t_end
        if dst_dl and not self.index_units:
            self.index_at = (t_last_index + 1) * dl.INDEX_UNIT_BYTES
        before = state["before"]
        st = [t_end, t_last_index, t_last_term, state.get("expected_index"), before,
              (before // every_bytes + 1) * every_bytes, 0, 0, 0, self.max_store_ms]
        cfg = (self.src_dl, dst_dl, self.keep_indexes, self.segment_bytes, BUFFER_BYTES, QUEUE_UNITS_PENDING)
        windows = self.windows
        w, i = windows.at(pos, self.window, self.row)
        if w is None:
            self.window = None
            return pos
        wq = self._queue_maps(w)
        taken = False
        while True:
            summary = w.summary
            i, reason, full = run(summary.rows, i, w.view, summary.keys, wq, self.out, self.index_units, self.keys,
                                  self.dirty, st, cfg)
            if st[_ST_RECORDS]:
                taken = True
            if full is not None:
                self.flush_queue(full)
            if reason == b.R_END:
                w = windows.following(w)
                i = 0
                if w is None or not len(w.summary.rows):
                    break
                wq = self._queue_maps(w)
            elif reason == b.R_MORE:
                continue
            elif reason == b.R_NEWQ:
                at = i * ROW_FIELDS
                topic = summary.topics[summary.rows[at + 8]]
                if self._queue(topic, summary.rows[at + 9]) is None:
                    break
            elif reason == b.R_ROLL:
                self.flush_log()
                self.out_at = st[_ST_END]
            elif reason == b.R_FULL:
                self.flush_log()
                self.out_at = st[_ST_END]
                self.put_keys(self.keys)      # memory stays flat: the keys go with the bytes they index
                self.keys.clear()
                if dst_dl:
                    self.flush_index()
            elif reason == b.R_BOUNDARY:
                self._sync_native(st, state)
                self.flush_pending()
                before = st[_ST_BEFORE]
                at_boundary(before)
                self.out_at = st[_ST_END]
                self.index_at = (st[_ST_LAST_INDEX] + 1) * dl.INDEX_UNIT_BYTES
                st[_ST_BOUNDARY] = (before // every_bytes + 1) * every_bytes
                if c.blocked:
                    break
            else:       # R_BREAK: the reader and the per-record path take this item
                break
        self.window, self.row = w, i
        self._sync_native(st, state)
        return st[_ST_BEFORE] if taken else pos

    def _sync_native(self, st: list, state: dict) -> None:
        """``_sync`` from ``_build.run``'s state list (its counters start again from 0)."""
        self._sync(st[_ST_END], st[_ST_LAST_INDEX], st[_ST_LAST_TERM], st[_ST_EXPECTED], st[_ST_BEFORE], state,
                   st[_ST_RECORDS], st[_ST_BYTES_IN], st[_ST_BYTES_OUT], st[_ST_MAX_STORE_MS])
        st[_ST_RECORDS] = st[_ST_BYTES_IN] = st[_ST_BYTES_OUT] = 0

    def _sync(self, t_end, t_last_index, t_last_term, expected, before, state, records, bytes_in, bytes_out,
              max_store_ms) -> None:
        """The loop's locals back into the target objects, ``state`` and the counters."""
        self.max_store_ms = max_store_ms
        counts = self.counts
        counts[0] += records
        counts[1] += bytes_in
        counts[2] += bytes_out
        if self.dst_dl:
            dled = self.log.dledger
            dled.end_pos, dled.last_index, dled.last_term = t_end, t_last_index, t_last_term
        else:
            self.log.end = t_end
        state["expected_index"] = expected
        state["before"] = before

    def flush_log(self) -> None:
        """Write the pending log bytes (a run ends at a segment end or at ``BUFFER_BYTES``)."""
        if self.out:
            if self.dst_dl:
                self.log.dledger.data.write(self.out_at, self.out)
            else:
                self.log.segments.write(self.out_at, self.out)
            self.out = bytearray()

    def flush_queue(self, q: _Queue) -> None:
        """Write a queue's pending units (one write per queue file they fall in)."""
        cq = q.cq
        at = cq.max_offset
        units = q.units
        per = cq.per_segment
        done = 0
        while done < q.count:
            n = min(q.count - done, per - (at + done) % per)
            cq.segments.write((at + done) * CQ_UNIT_BYTES, units[done * CQ_UNIT_BYTES:(done + n) * CQ_UNIT_BYTES])
            done += n
        cq.max_offset = at + q.count
        q.units = bytearray()
        q.count = 0

    def flush_index(self) -> None:
        """Write the pending DLedger index units (one write per index file they fall in)."""
        units = self.index_units
        if not units:
            return
        index = self.log.dledger.index
        seg = index.segment_size_bytes
        at, done = self.index_at, 0
        while done < len(units):
            n = min(len(units) - done, seg - (at + done) % seg)
            index.write(at + done, units[done:done + n])
            done += n
        self.index_units = bytearray()
        self.index_at = at + len(units)
