"""Which asyncio event loop mqbench's own processes run on: the broker, the name server, the run
workers and the send/pull benchmarks' load generators (``use_event_loop``)."""
from __future__ import annotations

import asyncio
import os
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")

ENV = "MQBENCH_EVENT_LOOP"
CHOICES = ("uvloop", "asyncio")


def use_event_loop() -> str:
    """Make the next ``asyncio.run`` use uvloop when it is importable and return the loop's name:
    ``uvloop``, or ``asyncio`` where uvloop is missing (it has no Windows build) or when
    ``MQBENCH_EVENT_LOOP=asyncio`` forces asyncio's own loop (any other value than ``uvloop`` or
    ``asyncio`` is ignored: the default applies).

    uvloop is the default: on the Protocol remoting server it takes 15-25% off the CPU per
    unbatched message on single and in the load generator. Its one behavioural difference that
    bit us: it raises RuntimeError, not OSError, for a write on a transport it closed when the peer
    died (handled in ``broker/raft/transport.py``; a restarted raft3 replica once stayed a candidate
    for a minute because of it). The broker test directories that start real processes pass on it."""
    uvloop = _uvloop()
    if uvloop is None:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def _uvloop() -> Any:
    if os.environ.get(ENV, "uvloop").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def run_on_event_loop(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` on the loop ``use_event_loop`` picks, without changing the process's
    event loop policy: for a load generator run inside a process that is not mqbench's own (the
    CLI under a test runner), whose later ``asyncio.run`` calls keep their loop."""
    uvloop = _uvloop()
    if uvloop is None:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)
