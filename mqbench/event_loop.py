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
    CPU per unbatched message on single and in the load generator (within the noise on raft3).
    With it, a raft3 replica killed with SIGKILL and restarted used to stay a candidate for over a
    minute: uvloop raises RuntimeError for a write on a transport it closed when the peer died,
    and the Raft transport's writer task caught OSError only, so it ended and the restarted peer
    never heard from that node (fixed in ``broker/raft/transport.py``; bench failover on uvloop
    then passed 5/5). It stays opt-in until the whole suite has run on it."""
    if os.environ.get(ENV, "asyncio") != "uvloop":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
