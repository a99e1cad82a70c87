"""Which asyncio event loop mqbench's own processes run on: the broker, the name server, the run
workers and the send/pull benchmarks' load generators (``use_event_loop``)."""
from __future__ import annotations

import asyncio
import os

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
    if os.environ.get(ENV, "uvloop").strip().lower() == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
