"""Which asyncio event loop mqbench's own processes run on: the broker, the run workers and the
send benchmark's load generator (``use_event_loop``)."""
from __future__ import annotations

import asyncio
import os

ENV = "MQBENCH_EVENT_LOOP"


def use_event_loop() -> str:
    """Make the next ``asyncio.run`` use the loop ``MQBENCH_EVENT_LOOP`` names and return its name:
    ``asyncio`` (the default) or ``uvloop`` (when installed; else asyncio's).

    uvloop is opt-in, not the default: on the Protocol remoting server it took 15-25% off the
    CPU per unbatched message on single and in the load generator (within the noise on raft3),
    but with it a raft3 replica killed with SIGKILL and restarted sometimes stayed a candidate
    for over a minute (the failover benchmark failed 1 run in 3, never with asyncio's loop), and
    a faster loop is not worth a slower failover. Not explained yet; one difference found: a write
    on a transport uvloop already closed raises RuntimeError (asyncio's drops it and drain()
    raises ConnectionResetError), and the Raft transport's writer task catches OSError only."""
    if os.environ.get(ENV, "asyncio") != "uvloop":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
