"""The fast path's windows of one source log folder, checked ahead (``scan.summarize``), in log order.

``Windows(files, src_dl, v4, committed, jobs)`` reads the folder window by window (``WINDOW_BYTES``,
never across a file's end), finds each window's last whole item (``scan.hop``: size fields only, so
it runs in order and cheaply) and has the window's items checked and summarized:

* ``jobs == 0``: in this process, when the window is read;
* ``jobs >= 1``: by that many worker processes (``fork``), while this process copies the windows
  before it. The windows are anonymous shared memory (``mmap``) that this process reads the log
  into; a worker summarizes exactly the bytes this process then copies. At most ``2 * jobs + 1``
  windows exist at once (memory stays flat); results are taken in log order. A worker ends when it
  is told to, or as soon as its parent is gone (``multiprocessing.parent_process().sentinel``), so a
  killed migration leaves no process behind; it ignores SIGINT (Ctrl-C is the parent's to handle).

The caller asks ``at(pos)`` for the row of the item at ``pos`` (a window and its row index), and
``following(window)`` for the window after one it has used up. A position that is not the next
row (the reader took an item the hop cannot follow, or ended the folder) drops every window ahead
and starts reading again at that position. The summaries do not depend on where the windows
begin: the same rows result for an item whichever window holds it, so the copy is the same with
any ``jobs``.

``packed`` (the compiled copy loop, ``bulk``, is in use): each summary's rows and key hashes are
handed over as native int64 arrays (``scan.ROW_FIELDS`` a row) instead of lists of tuples, packed
where they were made (in the worker), so this process unpickles two buffers instead of a tuple of
17 ints per record.
"""
from __future__ import annotations

import mmap
import multiprocessing
import os
import signal
import traceback
from collections import deque
from multiprocessing.connection import wait

from mqbench.errors import MqbenchError

from .scan import NATIVE, ROW_FIELDS, Summary, hop, summarize

WINDOW_BYTES = 4 << 20
RESULT_POLL_S = 1.0


class Window:
    __slots__ = ("start", "end", "view", "slot", "worker", "summary")

    def __init__(self, start: int, end: int, view, slot: int, worker: int):
        self.start, self.end, self.view, self.slot, self.worker = start, end, view, slot, worker
        self.summary: Summary | None = None


def row_count(summary: Summary, packed: bool) -> int:
    return len(summary.rows) // ROW_FIELDS if packed else len(summary.rows)


def row_pos(summary: Summary, index: int, packed: bool) -> int:
    return summary.rows[index * ROW_FIELDS] if packed else summary.rows[index][0]


def _worker(conn, buffers, src_dl: bool, v4: bool, committed, packed: bool) -> None:
    """A worker process: summarize the windows it is sent until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    watch = [conn] if parent is None else [conn, parent.sentinel]
    while True:
        ready = wait(watch)
        if conn not in ready:          # only the parent's sentinel: the parent is gone
            os._exit(0)
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        slot, length, base = job
        try:
            # the C scan reads the shared window in place; the Python one wants bytes (a copy)
            buf = buffers[slot] if NATIVE else buffers[slot][:length]
            reply = ("ok", summarize(buf, length, base, src_dl, v4, committed, packed))
        except Exception:       # a bug: the parent raises it with the worker's traceback
            reply = ("error", traceback.format_exc())
        try:
            conn.send(reply)
        except OSError:      # the parent closed its end: nothing is waiting for this
            return


class Windows:
    """See module doc."""

    def __init__(self, files, src_dl: bool, v4: bool, committed: int | None, jobs: int, packed: bool = False):
        self.files = files
        self.packed = packed
        self.src_dl, self.v4, self.committed = src_dl, v4, committed
        self.jobs = jobs
        self.seg_size = files.segment_size_bytes
        self.pending: deque[Window] = deque()
        self.next_start: int | None = None     # where the next window is read from (None: not past here)
        self.seq = 0
        self.procs: list = []
        self.conns: list = []
        self.buffers: list[mmap.mmap] = []
        self.free: list[int] = []
        if jobs:
            self.buffers = [mmap.mmap(-1, WINDOW_BYTES) for _ in range(2 * jobs + 1)]
            self.free = list(range(len(self.buffers)))
            ctx = multiprocessing.get_context("fork")
            for _ in range(jobs):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(theirs, self.buffers, src_dl, v4, committed, packed),
                                   daemon=True)
                proc.start()
                theirs.close()
                self.procs.append(proc)
                self.conns.append(mine)

    # -- reading and handing out windows ----------------------------------------------------------

    def _read_ahead(self) -> None:
        while self.next_start is not None and (not self.jobs or self.free) and \
                (self.jobs or not self.pending):
            start = self.next_start
            length = min(WINDOW_BYTES, start - start % self.seg_size + self.seg_size - start)
            if self.jobs:
                slot = self.free.pop()
                view = memoryview(self.buffers[slot])
                n = self.files.read_into(start, view[:length])
            else:
                slot = -1
                view = self.files.read(start, length)
                n = len(view)
            if n == length and start + n < start - start % self.seg_size + self.seg_size:
                self.files.prefetch(start + n, WINDOW_BYTES)     # the disk reads the next window meanwhile
            end, stopped = hop(view, n, self.src_dl)
            if end == 0:
                if slot >= 0:
                    self.free.append(slot)
                self.next_start = None
                return
            w = Window(start, start + end, view, slot, self.seq % self.jobs if self.jobs else -1)
            self.seq += 1
            if self.jobs:
                self.conns[w.worker].send((slot, end, start))
            else:
                w.summary = summarize(view, end, start, self.src_dl, self.v4, self.committed, self.packed)
            self.pending.append(w)
            self.next_start = None if stopped else start + end

    def _take(self) -> Window | None:
        """The next window, with its summary (waits for its worker)."""
        self._read_ahead()
        if not self.pending:
            return None
        w = self.pending.popleft()
        if w.summary is None:
            w.summary = self._result(w)
        self._read_ahead()
        return w

    def _result(self, w: Window) -> Summary:
        conn, proc = self.conns[w.worker], self.procs[w.worker]
        while not conn.poll(RESULT_POLL_S):
            if not proc.is_alive():
                raise MqbenchError(f"a migrate worker process ended unexpectedly (exit code {proc.exitcode})")
        kind, value = conn.recv()
        if kind != "ok":
            raise MqbenchError(f"a migrate worker process failed:\n{value}")
        return value

    def release(self, w: Window | None) -> None:
        """The caller is done with ``w``'s bytes."""
        if w is not None and w.slot >= 0:
            w.view = None
            self.free.append(w.slot)
            w.slot = -1

    def _restart(self, pos: int) -> None:
        for w in self.pending:
            if w.summary is None:
                self._result(w)     # its worker still uses the window: wait, then drop it
            self.release(w)
        self.pending.clear()
        self.next_start = pos

    def at(self, pos: int, current: Window | None, index: int) -> tuple[Window | None, int]:
        """The window and row index of the item at ``pos``, given where the caller stopped
        (``current``, ``index``: the row it stopped at); ``(None, 0)`` when no row can be had
        there (the reader must take the item)."""
        if current is not None:
            n = row_count(current.summary, self.packed)
            if index < n and row_pos(current.summary, index, self.packed) == pos:
                return current, index
            if index + 1 < n and row_pos(current.summary, index + 1, self.packed) == pos:
                return current, index + 1
            if pos == current.end:
                nxt = self.following(current)
                if nxt is not None:
                    return nxt, 0
                current = None
            else:
                self.release(current)
        self._restart(pos)
        w = self._take()
        if w is None or not row_count(w.summary, self.packed):
            self.release(w)
            return None, 0
        return w, 0

    def following(self, w: Window) -> Window | None:
        """The window after ``w`` (which the caller is done with), or None."""
        self.release(w)
        if self.pending and self.pending[0].start != w.end:
            self._restart(w.end)
        elif not self.pending and self.next_start != w.end:
            return None
        return self._take()

    def close(self) -> None:
        """Stop the workers (they exit; CPU they used is the parent's children's) and free the windows."""
        for w in self.pending:       # a refused copy can leave windows in flight: take their results first,
            if w.summary is None:    # so no worker is left blocked sending one
                try:
                    self._result(w)
                except (OSError, EOFError, MqbenchError):
                    pass
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns:
            conn.close()
        self.procs, self.conns, self.pending = [], [], deque()
        for b in self.buffers:
            try:
                b.close()
            except BufferError:      # a view is still held (an error on the way out): the GC frees it
                pass
        self.buffers = []
