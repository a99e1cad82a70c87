"""The log reader's windowed path: runs of records that a window scan passed, handed over in bulk.

``LogReader(files, ..., scan=S)`` (``log_reader``) reads a folder by windows where it can: at a
position where the valid data goes on, it reads ``window_bytes`` of the file (``WindowCursor``),
lets ``S.hop`` find the whole items in it and ``S.summarize`` (relaxed) check each of them, and
yields the leading items that passed as one ``LogRun`` instead of one ``LogItem`` each. Any item
that did not pass (a blank, a Raft no-op, damage, an index that does not follow, where the data
ends) is judged by the reader itself, record by record, exactly as without ``scan``; the rows
after it in the same window are used again once the reader has stepped over it.

``S`` is ``mqbench.migrate.scan`` (hop and summarize in C where built, ``MQBENCH_NATIVE=0``: the
Python reference): its relaxed rows are "ok" exactly for the records the reader yields undamaged
(a plain record, or a DLedger entry holding one), so a walk with ``scan`` yields the same records,
damage and totals as one without; only the form differs (``tests/store/test_log_runs.py``). The
scan is passed in, not imported: the store's files sit below ``migrate`` in the layering.
"""
from __future__ import annotations

from bisect import bisect_left
from operator import itemgetter
from typing import Any, Protocol

# scan.ROW's fields a run's reader uses (the rest: mqbench.migrate.scan.ROW)
ROW_POS, ROW_NEXT, ROW_OK, ROW_AT, ROW_TOTAL = 0, 1, 2, 3, 4
ROW_PROPS_LEN_AT, ROW_PROPS_LEN, ROW_TOPIC, ROW_QUEUE_ID, ROW_QUEUE_OFFSET = 6, 7, 8, 9, 10
ROW_INDEX, ROW_TERM = 12, 13
_ok, _pos, _index = itemgetter(ROW_OK), itemgetter(ROW_POS), itemgetter(ROW_INDEX)


class WindowScan(Protocol):
    """What the reader needs of a window scanner (``mqbench.migrate.scan`` is one)."""

    def hop(self, buf: Any, length: int, src_dl: bool) -> tuple[int, bool]: ...

    def summarize(self, buf: Any, length: int, base: int, src_dl: bool, v4: bool, committed: int | None,
                  packed: bool = False, relaxed: bool = False) -> Any: ...


class LogRun:
    """Consecutive items of one log file that the reader would have yielded one by one as
    undamaged record ``LogItem``s, in address order.

    ``buf``: the window they were read in (valid until the walk goes on); ``rows``: one
    ``scan.ROW`` tuple each (``ROW_*`` above: ``row[ROW_AT]`` is where the record starts in
    ``buf``, ``row[ROW_TOTAL]`` its size, ``row[ROW_POS]``/``row[ROW_NEXT]`` the item's address
    and the next one's; DLedger: the entry's, with ``row[ROW_INDEX]``/``row[ROW_TERM]``, and the
    record's address is the entry's + 48); ``topics``: the topic bytes ``row[ROW_TOPIC]``
    numbers; ``file``/``seg``: the file's name and first address (an item's offset in its file is
    its address less ``seg``); ``pos``/``next``: the run's first address and the one after it;
    ``start``: where the run's first byte is in ``buf``.
    """

    __slots__ = ("buf", "rows", "topics", "file", "seg", "pos", "next", "start")

    def __init__(self, buf, rows: list, topics: list, file: str, seg: int, start: int):
        self.buf, self.rows, self.topics, self.file, self.seg, self.start = buf, rows, topics, file, seg, start
        self.pos = rows[0][ROW_POS]
        self.next = rows[-1][ROW_NEXT]

    @property
    def data(self) -> memoryview:
        """The run's bytes (all its items, framing included)."""
        return memoryview(self.buf)[self.start:self.start + self.next - self.pos]


class WindowCursor:
    """One folder's windows and their rows, for one reader (see the module doc)."""

    def __init__(self, files, dledger: bool, scan: WindowScan, window_bytes: int):
        self.files, self.dledger, self.scan, self.window_bytes = files, dledger, scan, window_bytes
        self.buf: Any = b""
        self.base = 0
        self.rows: list = []
        self.topics: list = []
        self.oks: list = []
        self.i = 0

    def _load(self, pos: int, seg_end: int) -> bool:
        buf = self.files.read(pos, min(self.window_bytes, seg_end - pos))
        end, _ = self.scan.hop(buf, len(buf), self.dledger)
        self.buf, self.base, self.i = buf, pos, 0
        if not end:
            self.rows, self.topics, self.oks = [], [], []
            return False
        summary = self.scan.summarize(buf, end, pos, self.dledger, False, None, relaxed=True)
        self.rows, self.topics = summary.rows, summary.topics
        self.oks = list(map(_ok, self.rows))
        return True

    def run(self, pos: int, seg_end: int, file: str, seg: int, expected: int | None,
            stop: int | None) -> LogRun | None:
        """The run of passed items from ``pos`` (an item boundary where the valid data goes on), or
        None when the item at ``pos`` is for the reader to judge. ``expected``: the DLedger index
        the entry at ``pos`` must have (None: any); ``stop``: no item at or after it."""
        rows, i = self.rows, self.i
        n = len(rows)
        while i < n and rows[i][ROW_POS] < pos:      # the reader stepped over these
            i += 1
        if i >= n or rows[i][ROW_POS] != pos:
            if not self._load(pos, seg_end):
                return None
            rows, i, n = self.rows, 0, len(self.rows)
        # the leading rows that passed (C-level passes over the columns; a DLedger index must follow
        # the one before), none at or after ``stop``
        try:
            j = self.oks.index(0, i)
        except ValueError:
            j = n
        if stop is not None and j > i and rows[j - 1][ROW_POS] >= stop:
            j = bisect_left(rows, stop, i, j, key=_pos)
        if self.dledger and j > i:
            indexes = list(map(_index, rows[i:j]))
            first = indexes[0] if expected is None else expected
            if indexes != list(range(first, first + len(indexes))):
                k = 0
                while k < len(indexes) and indexes[k] == first + k:
                    k += 1
                j = i + k
        self.i = j
        if j == i:
            return None
        return LogRun(self.buf, rows[i:j], self.topics, file, seg, pos - self.base)

    def share(self) -> tuple[Any, int]:
        """(the current window, its first address): the reader judges items inside it without a read."""
        return self.buf, self.base
