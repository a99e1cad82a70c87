"""``WriteGate``: whether a replica can make writes durable right now, and the retry of the Raft
loop's disk work while it cannot (issue 18: disk full, descriptors used up).

Two causes close the gate; either one makes ``check()`` raise ``WritesUnavailable`` (answered
SERVICE_NOT_AVAILABLE, retriable: a producer retries, on another broker when it has one), while
reads go on being served from what the store holds:

* ``low_space``: the store's file system has less than ``disk_free_bytes_min`` free (looked at by
  ``watch_disk`` every ``DISK_CHECK_MS``). RocketMQ refuses writes above a disk-usage ratio the same
  way, before anything fails. It opens again when space is back.
* ``io_error``: a step of the Raft loop (append, hard state, fdatasync, apply/dispatch) failed with
  a resource error (``flush.is_resource_error``: ENOSPC, EDQUOT, EMFILE, ENFILE, ENOMEM; or the
  store's own ``WritesUnavailable`` while its background flusher is failing so). ``run``
  then retries that same step, backing off from ``RETRY_FIRST_S`` to ``RETRY_MAX_S``, until it
  succeeds (each step is safe to repeat: a partial append is truncated and written again, a
  dispatch resumes where it stopped, a metadata entry is applied once), and opens the gate again.
  Any other error still stops the replica: it is not a shortage but a broken disk or invariant.

Nothing acknowledged is at risk: an entry is acknowledged only after the steps that failed here
succeeded. Puts waiting for their entry meanwhile either complete when it is retried through, or
time out at the client, which then retries (at-least-once, as after any failover).
"""
from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Callable

from mqbench.broker.store.flush import WritesUnavailable, is_resource_error

log = logging.getLogger("mqbench.broker.replicated")

DISK_CHECK_MS = 1000
DISK_FREE_BYTES_MIN_DEFAULT = 64 * 1024 * 1024
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 2.0


class WriteGate:
    def __init__(self, root: Path, *, disk_free_bytes_min: int = DISK_FREE_BYTES_MIN_DEFAULT) -> None:
        self.root = Path(root)
        self.disk_free_bytes_min = disk_free_bytes_min
        self.low_space: str | None = None
        self.io_error: str | None = None
        self.refusals = 0             # writes refused while closed

    @property
    def reason(self) -> str | None:
        """Why writes are refused now, or None."""
        return self.io_error or self.low_space

    def check(self) -> None:
        """Raise ``WritesUnavailable`` while the gate is closed (module doc)."""
        reason = self.reason
        if reason is not None:
            self.refusals += 1
            raise WritesUnavailable(f"writes are refused until this passes: {reason}")

    def look_at_disk(self) -> None:
        """Close or open the gate on the store's free space (a statvfs; cheap)."""
        if self.disk_free_bytes_min <= 0:
            return
        try:
            st = os.statvfs(self.root)
        except OSError as exc:
            log.warning("cannot read the free space of %s: %s", self.root, exc)
            return
        free = st.f_bavail * st.f_frsize
        if free < self.disk_free_bytes_min:
            if self.low_space is None:
                log.error("%s has %d bytes free, below the minimum of %d: refusing writes, serving reads",
                          self.root, free, self.disk_free_bytes_min)
            self.low_space = (f"the disk of {self.root} is nearly full ({free} bytes free, "
                              f"minimum {self.disk_free_bytes_min})")
        elif self.low_space is not None:
            log.warning("%s has %d bytes free again: taking writes", self.root, free)
            self.low_space = None

    async def run(self, what: str, step: Callable[[], object], *, in_thread: bool = False,
                  on_retry: Callable[[], None] | None = None):
        """``step()`` (in a worker thread with ``in_thread``), retried while it fails with a
        resource error (module doc); ``on_retry`` is called before each retry."""
        delay_s = RETRY_FIRST_S
        while True:
            try:
                result = await asyncio.to_thread(step) if in_thread else step()
            except (OSError, WritesUnavailable) as exc:
                if not (is_resource_error(exc) or isinstance(exc, WritesUnavailable)):
                    raise
                cause = getattr(exc, "strerror", None) or str(exc)
                if self.io_error is None:
                    log.error("%s failed on %s: %s; refusing writes, serving reads, retrying", what, self.root, cause)
                self.io_error = f"{what} failed: {cause} ({self.root})"
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RETRY_MAX_S)
                if on_retry is not None:
                    on_retry()
                continue
            if self.io_error is not None:
                log.warning("%s on %s works again: taking writes", what, self.root)
                self.io_error = None
            return result
