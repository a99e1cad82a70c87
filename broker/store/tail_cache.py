"""The bytes a segment queue wrote last, kept in memory: reads of them need no ``pread``.

Why: a pull answers with records the broker has just written. With 16 queues interleaved in the
commitlog a queue's records lie ~10 KB apart, so a pull read them with one ``pread`` per record,
and every ``pread`` drops the GIL (a flusher thread may take it and hold it for a switch interval:
the leader's loop-stall probe found pull answers in 290 turns of >= 10 ms). RocketMQ reads them
from its mapped files (the page cache, no syscall); our segments' contract has no mmap, so a
``SegmentQueue`` keeps a bounded copy of its newest bytes instead.

``TailCache(capacity_bytes)`` holds one contiguous range ``[start, end)`` of a byte space, at most
``capacity_bytes`` long (one ``bytearray`` of that size, allocated at the first ``put``, used as a
ring: byte ``x`` lives at ``x % capacity_bytes``). Contract (the caller mirrors every change of the
files into it, so what it holds is always what the files hold):

* ``put(offset, data)``: the bytes at ``[offset, offset + len(data))`` now are ``data``. A put that
  continues or overlaps the held range extends it (the oldest bytes drop off past the capacity);
  one that starts after a gap or below the held range replaces it. A put longer than the capacity
  keeps only its last ``capacity_bytes``.
* ``get(offset, size)``: the ``size`` bytes at ``offset`` when the whole range is held, else None
  (the caller reads the files); ``size <= 0`` is None too.
* ``cut(offset)``: everything at and after ``offset`` is forgotten (the files were truncated there).
* ``drop_before(offset)``: everything below ``offset`` is forgotten (segments were deleted).

Memory: ``capacity_bytes`` per cache, and nothing until the first ``put``. Not thread-safe for
writers (like ``SegmentQueue.write``); a ``get`` racing a ``put`` that overwrites the bytes it copies
returns None (the held range is shrunk before a put overwrites held bytes, and checked again after
the copy). Pure: no I/O.
"""
from __future__ import annotations

#: what the stores keep (the memory bound, per broker replica): a commitlog's newest 4 MiB (a
#: DLedger log's data files, or a plain commitlog: at 2,000 msgs/s of 1 KiB about 2 s of records,
#: what a consumer that keeps up reads), and each consume queue's newest 16 KiB (819 units of a
#: ConsumeQueue, 356 of a BatchConsumeQueue), allocated at a queue's first write since it opened
LOG_TAIL_BYTES = 4 << 20
QUEUE_TAIL_BYTES = 16 << 10


class TailCache:
    """The newest ``capacity_bytes`` written (module doc)."""

    __slots__ = ("capacity_bytes", "start", "end", "_ring", "_view")

    def __init__(self, capacity_bytes: int):
        if capacity_bytes <= 0:
            raise ValueError(f"tail cache capacity must be positive, got {capacity_bytes}")
        self.capacity_bytes = capacity_bytes
        self.start = self.end = 0             # the held range [start, end); empty when equal
        self._ring: bytearray | None = None
        self._view: memoryview | None = None

    def __len__(self) -> int:
        return self.end - self.start

    def put(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if n == 0:
            return
        cap = self.capacity_bytes
        if self._view is None:
            self._ring = bytearray(cap)
            self._view = memoryview(self._ring)
        if n > cap:
            data = memoryview(data)[n - cap:]
            offset += n - cap
            n = cap
        new_end = offset + n
        if self.start <= offset <= self.end and self.start < self.end:
            # continues or overwrites the held range: the bytes that the ring slots will lose go
            # first (a racing get re-checks ``start`` after its copy)
            if new_end - cap > self.start:
                self.start = new_end - cap
            self._copy_in(offset, data, n)
            if new_end > self.end:
                self.end = new_end
        else:
            self.start = self.end = offset    # empty while it is rewritten
            self._copy_in(offset, data, n)
            self.end = new_end

    def _copy_in(self, offset: int, data, n: int) -> None:
        view = self._view
        cap = self.capacity_bytes
        at = offset % cap
        first = cap - at
        if n <= first:
            view[at:at + n] = data
        else:
            data = memoryview(data)
            view[at:] = data[:first]
            view[:n - first] = data[first:]

    def held(self) -> tuple[bytearray, int, int] | None:
        """(ring, start, end): the ring buffer (byte ``x`` at ``x % capacity_bytes``) and the held
        range, for a reader that slices records out of it in place (``reader``'s C path); None
        before the first ``put``. The ring is only valid until the next ``put``."""
        return None if self._ring is None else (self._ring, self.start, self.end)

    def get(self, offset: int, size: int) -> bytes | None:
        if size <= 0 or offset < self.start or offset + size > self.end:
            return None
        view = self._view
        cap = self.capacity_bytes
        at = offset % cap
        if at + size <= cap:
            out = view[at:at + size].tobytes()
        else:
            out = view[at:].tobytes() + view[:at + size - cap].tobytes()
        if offset < self.start or offset + size > self.end:      # a put overwrote it meanwhile
            return None
        return out

    def cut(self, offset: int) -> None:
        if offset < self.end:
            self.end = max(offset, self.start)

    def drop_before(self, offset: int) -> None:
        if offset > self.start:
            self.start = min(offset, self.end)
