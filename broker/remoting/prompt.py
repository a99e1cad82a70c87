"""Futures whose waiting request handler resumes at once when they are resolved, not a loop
turn later (``PromptFuture``, ``resolve``).

Why: ``Future.set_result`` schedules the done callbacks with ``call_soon``, so a request handler
stepped by the channel (``answering``) resumes in the next loop iteration, after every other
callback of the current one and every socket read of the next poll. On the leader at 1,200
msgs/s under load that is 5-10 ms (a pull answer or a Raft round of other work in between) added
to every send's publish latency between its commit and its answer (``mqbench.hop_trace``).

Contract: ``resolve(future, result)`` / ``resolve(future, exc=e)`` settle the future as
``set_result`` / ``set_exception`` do, then, when a channel handler waits on it (``answering``
registered its wake-up as ``_prompt_wake``), run that handler's next step now, inside the
caller. Every other waiter (a Task, ``gather``, another callback) is woken as usual, a loop turn
later; a cancelled future wakes its handler as usual too. The caller must be at a point where
running a handler step is safe: the step may queue and write answers and propose new entries
(the Raft driver takes proposals made while a Ready is handled into the next Ready).
"""
from __future__ import annotations

import asyncio


class PromptFuture(asyncio.Future):
    """An ``asyncio.Future`` a channel handler may be woken from at once (module doc)."""

    _prompt_wake = None     # set by ``answering`` while a channel handler waits on it


def resolve(future: asyncio.Future, result: object = None, exc: BaseException | None = None) -> None:
    """Settle ``future`` and run a waiting channel handler's next step now (module doc)."""
    wake = getattr(future, "_prompt_wake", None)
    # taken off before settling: set_result hands the callbacks it holds to call_soon
    direct = wake is not None and future.remove_done_callback(wake) > 0
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)
    if direct:
        future._prompt_wake = None      # type: ignore[attr-defined]
        wake(future)
