"""``ReadGate``: when a replica of a replicated group may answer reads (pulls, offsets).

Reads are served from the replica's store, which holds the entries it has applied. Two moments
would let it answer from a state older than one it, or the group, already showed (a rewind: a
consumer told "offset moved to 0", a committed offset read lower than before):

* a new leader before its term's no-op is applied: the entries of earlier terms it holds are not
  known committed, so not applied, and its queues end at its old commit index;
* a restarted replica before it has applied again what it had before the restart: its checkpointed
  commit index lags by up to a housekeeping period, so its queues and offsets start behind.

So a replica is readable only when it has applied its whole log as it was at open (the ``floor``;
lowered to just before a truncated suffix, which was never committed, so never shown) and, on a
leader, an entry of its own term. Everything it applied before the restart is at most its log's
end then (a kill keeps the log: page cache in ``memory`` mode, fsynced in ``fsync`` mode).
"""
from __future__ import annotations

import asyncio
from typing import Callable


class ReadGate:
    def __init__(self, last_index: int):
        self.floor = last_index
        self._event = asyncio.Event()

    def truncating_from(self, index: int) -> None:
        """Entries from ``index`` on are being replaced (never committed, never shown)."""
        self.floor = min(self.floor, index - 1)

    def readable(self, applied_index: int, leader_ok: bool) -> bool:
        """``applied_index`` reached the floor and, on a leader, its term's entry is applied."""
        return applied_index >= self.floor and leader_ok

    def changed(self, readable: bool) -> None:
        """Wake the waiters when the replica became readable."""
        if readable:
            self._event.set()

    async def wait(self, readable: Callable[[], bool], stopped: Callable[[], bool], timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` for ``readable()``; returns it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_ms, 0) / 1000
        while not readable():
            remaining_s = deadline - loop.time()
            if remaining_s <= 0 or stopped():
                return False
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), remaining_s)
            except asyncio.TimeoutError:
                return readable()
        return True
