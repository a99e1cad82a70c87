"""Flush policies and group commit: when appended bytes become durable.

Policies (the ``flush_policy`` string a user passes):

=================  ================================================================================
``none``           the OS writes pages back when it likes; only ``flush()``/``close()`` fdatasync.
``interval:<N>ms`` a background flush every N ms (RocketMQ's async flush); ``interval:<N>s`` too.
``sync``           an append is acknowledged only after an fdatasync that covers it. Appends waiting
                   at the same time share ONE fdatasync (group commit, as RocketMQ's
                   GroupCommitService does).
=================  ================================================================================

``GroupCommit`` is the thread-safe core: the appender reports ``written(offset)`` after each write;
``wait_durable(offset)`` returns once ``flushed_offset >= offset``. Whoever finds the data not yet
durable takes the flush lock, re-checks, snapshots the written offset, runs ONE ``sync_fn()`` and
publishes the snapshot as flushed; the waiters that queued on the lock meanwhile find their offset
covered and return without syncing. ``wait_durable`` blocks, so an asyncio broker calls it through
``asyncio.to_thread`` (or ``loop.run_in_executor``): the loop keeps serving while the fdatasync runs.

``IntervalSchedule`` is the pure decision for the interval policy (time is passed in, in ms);
``IntervalFlusher`` is the thread that applies it with the real clock.

Running out of a resource (``is_resource_error``: disk full, quota, out of file descriptors) is a
state, not a death: the flusher keeps its ``error`` while a flush fails and clears it when one
succeeds; writers are refused meanwhile with ``WritesUnavailable``, which a broker answers with a
retriable code (SERVICE_NOT_AVAILABLE) while it goes on serving reads.
"""
from __future__ import annotations

import errno
import re
import threading
from dataclasses import dataclass
from typing import Callable

from mqbench.errors import MqbenchError, UserError

#: errnos that say "not now" rather than "broken": retried until the resource is back.
RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.ENOMEM})


class WritesUnavailable(MqbenchError):
    """This node cannot make writes durable right now (disk full, out of descriptors...): the write
    is refused and may be retried; nothing acknowledged is affected."""


def is_resource_error(exc: BaseException) -> bool:
    """True for an OSError that a retry can get past once the resource is back (RESOURCE_ERRNOS)."""
    return isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS


POLICY_NONE = "none"
POLICY_INTERVAL = "interval"
POLICY_SYNC = "sync"

_INTERVAL_RE = re.compile(r"^interval:(\d+)(ms|s)$")


@dataclass(frozen=True)
class FlushPolicy:
    """A parsed flush policy: ``kind`` is none/interval/sync; ``interval_ms`` for interval."""

    kind: str
    interval_ms: int = 0

    def __str__(self) -> str:
        return f"interval:{self.interval_ms}ms" if self.kind == POLICY_INTERVAL else self.kind


def parse_flush_policy(text: str | FlushPolicy) -> FlushPolicy:
    """``"none"``, ``"sync"``, ``"interval:200ms"`` or ``"interval:1s"`` to a FlushPolicy.

    Raises UserError naming the bad value and the accepted forms."""
    if isinstance(text, FlushPolicy):
        return text
    value = str(text).strip().lower()
    if value in (POLICY_NONE, POLICY_SYNC):
        return FlushPolicy(value)
    m = _INTERVAL_RE.match(value)
    if m:
        n = int(m.group(1)) * (1000 if m.group(2) == "s" else 1)
        if n <= 0:
            raise UserError(f"flush policy {text!r}: the interval must be positive")
        return FlushPolicy(POLICY_INTERVAL, n)
    raise UserError(f"bad flush policy {text!r}: expected none, sync or interval:<N>ms")


class GroupCommit:
    """Durable-offset bookkeeping with group commit (see module doc). Thread-safe."""

    def __init__(self, sync_fn: Callable[[], None], *, written_offset: int = 0):
        self._sync_fn = sync_fn
        self._state = threading.Lock()   # guards the two offsets
        self._flush = threading.Lock()   # one fdatasync at a time; waiters queue here
        self._written = written_offset
        self._flushed = written_offset
        self.sync_count = 0

    @property
    def written_offset(self) -> int:
        return self._written

    @property
    def flushed_offset(self) -> int:
        return self._flushed

    def written(self, offset: int) -> None:
        """The appender has written every byte below ``offset``."""
        with self._state:
            if offset > self._written:
                self._written = offset

    def reset(self, offset: int) -> None:
        """After a truncate: everything below ``offset`` is written and durable, nothing more."""
        with self._flush, self._state:
            self._written = offset
            self._flushed = offset

    def wait_durable(self, offset: int) -> int:
        """Block until every byte below ``offset`` is durable; returns the flushed offset."""
        if self._flushed >= offset:
            return self._flushed
        with self._flush:
            if self._flushed >= offset:
                return self._flushed   # a flush that ran while we queued covered us
            with self._state:
                target = self._written
            self._sync_fn()
            self.sync_count += 1
            with self._state:
                if target > self._flushed:
                    self._flushed = target
            return self._flushed

    def flush(self) -> int:
        """Make everything written so far durable (one fdatasync unless already durable)."""
        return self.wait_durable(self._written)


class IntervalSchedule:
    """Pure decision for ``interval:<N>ms``: flush when N ms have passed since the last flush."""

    def __init__(self, interval_ms: int, now_ms: int):
        self.interval_ms = interval_ms
        self.last_flush_ms = now_ms

    def due(self, now_ms: int) -> bool:
        return now_ms - self.last_flush_ms >= self.interval_ms

    def flushed(self, now_ms: int) -> None:
        self.last_flush_ms = now_ms

    def wait_ms(self, now_ms: int) -> int:
        """How long until the next flush is due (0 when due now)."""
        return max(0, self.interval_ms - (now_ms - self.last_flush_ms))


class IntervalFlusher:
    """A daemon thread running ``flush_fn`` every ``interval_ms`` until ``stop()``. ``error`` is the
    last flush's failure (None once one succeeds); only a failure that is not a resource error
    (``is_resource_error``) ends the thread."""

    def __init__(self, flush_fn: Callable[[], object], interval_ms: int, clock_ms: Callable[[], int]):
        self._flush_fn = flush_fn
        self._clock_ms = clock_ms
        self._schedule = IntervalSchedule(interval_ms, clock_ms())
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="store-flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            wait_ms = self._schedule.wait_ms(self._clock_ms())
            if wait_ms and self._stop.wait(wait_ms / 1000):
                return
            if self._schedule.due(self._clock_ms()):
                try:
                    self._flush_fn()
                except BaseException as exc:  # noqa: BLE001 - reported to the owner
                    self.error = exc
                    if not is_resource_error(exc):
                        return                 # broken, not short of something: the thread ends
                    self._schedule.flushed(self._clock_ms())   # retried at the next interval
                    continue
                self.error = None
                self._schedule.flushed(self._clock_ms())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
