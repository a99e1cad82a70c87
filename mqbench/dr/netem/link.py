"""A sans-I/O model of one direction of a TCP stream over an inter-room link.

No sockets, no clocks, no global randomness: ``Pipe`` takes chunks of bytes with the time they
were read (integer ms, from the caller's clock) and says when each chunk may be written on the far
side. The asyncio proxy (``proxy.py``) is the thin adapter that does the reading, the waiting and
the writing.

What the settings mean, honestly, for a byte *stream* (TCP cannot drop or reorder bytes; it can
only deliver them late):

* ``latency_ms``: one-way delay added to every chunk (a round trip through a proxied connection
  costs twice this). ``jitter_ms``: each chunk's delay is drawn uniformly from
  ``latency_ms - jitter_ms .. latency_ms + jitter_ms`` (never below 0).
* ``loss``: the probability that one TCP segment (``segment_bytes``, 1448 by default: a 1500-byte
  MTU less IP and TCP headers with timestamps) is lost on the wire. A lost segment is not dropped
  from the stream: TCP retransmits it after a retransmission timeout (``retransmit_ms``, Linux's
  200 ms minimum RTO), doubling the timeout each time it is lost again. So a chunk whose worst
  segment was lost ``k`` times arrives ``retransmit_ms * (2**k - 1)`` ms late, and because a stream
  is delivered in order, every later chunk waits behind it (head-of-line blocking).
* ``cut``: a partition. Nothing is delivered while the link is cut; bytes read before or during the
  cut stay queued, in order, and arrive one link delay after the heal, as TCP retransmission would
  deliver them when the partition is shorter than the TCP user timeout. (The proxy can instead
  reset connections at the cut, the other thing a real partition can end in.)

Ordering: a chunk is never delivered before the chunk read before it (``due`` times are
non-decreasing), whatever the jitter or loss drew. The rng is a ``random.Random`` owned by the
caller (seeded), so a link's behaviour replays from its seed.

Bounded: ``Pipe.has_room()`` is false once ``capacity_bytes`` are queued; the adapter stops reading
until the far side has taken bytes, so a slow or cut link pushes back on the sender instead of
growing memory.
"""
from __future__ import annotations

import random
from collections import deque
from dataclasses import replace

from mqbench.broker.layout_links import NO_DELAY, LinkSettings  # noqa: F401 (NO_DELAY: re-exported)
from mqbench.errors import InvariantViolation, UserError

RETRANSMISSIONS_MAX = 15  # Linux tcp_retries2: after 15 retransmissions the connection is given up




class LinkModel:
    """Draws the delay of each chunk for one direction of one link, from a caller-seeded rng."""

    def __init__(self, settings: LinkSettings, rng: random.Random):
        self.settings = settings
        self.rng = rng
        self.retransmissions = 0  # segments "lost" and resent so far (a figure for reports)

    def delay_ms(self, size_bytes: int) -> int:
        """The one-way delay of a chunk of ``size_bytes`` read now (ignores ``cut``: see ``Pipe``)."""
        s = self.settings
        delay = s.latency_ms
        if s.jitter_ms:
            delay = max(0, delay + self.rng.randint(-s.jitter_ms, s.jitter_ms))
        if s.loss > 0.0:
            worst = 0
            for _ in range(max(1, -(-size_bytes // s.segment_bytes))):
                lost = 0
                while lost < RETRANSMISSIONS_MAX and self.rng.random() < s.loss:
                    lost += 1
                self.retransmissions += lost
                worst = max(worst, lost)
            delay += s.retransmit_ms * ((1 << worst) - 1)
        return delay


class Pipe:
    """One direction of one proxied connection: queued chunks and when each is due.

    ``push(now_ms, data)`` queues a chunk read at ``now_ms`` (``b""`` is the end of the stream and is
    delivered in order like any chunk). ``pop_due(now_ms)`` returns the chunks whose time has come,
    in order. ``next_due_ms()`` is when the next one is due, or None when nothing is queued or the
    link is cut. ``cut``/``heal``/``set_settings`` change the link at runtime.
    """

    def __init__(self, settings: LinkSettings, rng: random.Random, capacity_bytes: int = 1 << 20):
        if capacity_bytes < 1:
            raise UserError(f"pipe capacity_bytes must be positive, not {capacity_bytes}")
        self.model = LinkModel(settings, rng)
        self.capacity_bytes = capacity_bytes
        self.buffered_bytes = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self._queue: deque[list] = deque()  # [due_ms | None, delay_ms, data]
        self._last_due_ms = 0
        self._cut = settings.cut

    @property
    def settings(self) -> LinkSettings:
        return self.model.settings

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def empty(self) -> bool:
        return not self._queue

    def passthrough(self) -> bool:
        """True when a chunk may skip the queue: nothing queued and the link adds nothing."""
        return not self._queue and not self._cut and self.model.settings.transparent

    def has_room(self) -> bool:
        return self.buffered_bytes < self.capacity_bytes

    def push(self, now_ms: int, data: bytes) -> int | None:
        """Queue a chunk read at ``now_ms``; returns its due time (None while cut)."""
        delay = self.model.delay_ms(len(data))
        due = None if self._cut else max(self._last_due_ms, now_ms + delay)
        if due is not None:
            self._last_due_ms = due
        self._queue.append([due, delay, data])
        self.buffered_bytes += len(data)
        self.bytes_in += len(data)
        return due

    def count_passthrough(self, size_bytes: int) -> None:
        """Account for a chunk the adapter forwarded directly (``passthrough()`` was true)."""
        self.bytes_in += size_bytes
        self.bytes_out += size_bytes

    def next_due_ms(self) -> int | None:
        if self._cut or not self._queue:
            return None
        return self._queue[0][0]

    def pop_due(self, now_ms: int) -> list[bytes]:
        out = []
        while self._queue and not self._cut and self._queue[0][0] <= now_ms:
            _due, _delay, data = self._queue.popleft()
            self.buffered_bytes -= len(data)
            self.bytes_out += len(data)
            out.append(data)
        if self.buffered_bytes < 0:
            raise InvariantViolation("pipe buffered_bytes went negative")
        return out

    def cut(self, now_ms: int) -> None:
        """Stop delivering; everything queued (in flight included) waits for ``heal``."""
        self._cut = True
        for entry in self._queue:
            entry[0] = None

    def heal(self, now_ms: int) -> None:
        """Deliver again: queued chunks are due one drawn delay after ``now_ms``, still in order."""
        if not self._cut:
            return
        self._cut = False
        last = now_ms
        for entry in self._queue:
            last = max(last, now_ms + entry[1])
            entry[0] = last
        self._last_due_ms = max(self._last_due_ms, last)

    def set_settings(self, now_ms: int, settings: LinkSettings) -> None:
        """New settings apply to chunks read from now on; ``settings.cut`` cuts or heals at once."""
        self.model.settings = replace(settings)
        if settings.cut and not self._cut:
            self.cut(now_ms)
        elif not settings.cut and self._cut:
            self.heal(now_ms)
