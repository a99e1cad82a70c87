"""A worker's messages reach the parent whole even when an event loop watches the pipe: uvloop's
``add_reader`` (libuv's ``uv_poll_init``) switches the descriptor to non-blocking mode and leaves it
so, and a message larger than the socket buffer then failed its ``send`` half-written with
``BlockingIOError``: a 240-s ``--rate max`` search on raft3 ended with "producer-0 ended without a
result (exit code 0)", its result lost."""
from __future__ import annotations

import asyncio
import multiprocessing
import threading

import pytest

from mqbench.run import workers


def _watch_then_send(conn, message: dict) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), lambda: None)
        loop.remove_reader(conn.fileno())
        workers._send(conn, message)
    uvloop = pytest.importorskip("uvloop")
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    with runner:
        runner.run(main())


def test_a_message_larger_than_the_socket_buffer_arrives_whole_after_a_loop_watched_the_pipe():
    parent, child = multiprocessing.Pipe(duplex=True)
    got: list = []

    def read() -> None:
        try:
            got.append(parent.recv())
        except (EOFError, OSError) as exc:
            got.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    blob = b"x" * (8 << 20)
    try:
        _watch_then_send(child, {"type": "done", "blob": blob})
    finally:
        child.close()
    reader.join(timeout=10)
    assert got and isinstance(got[0], dict), f"the parent got {got!r:.200}"
    arrived_whole = got[0]["blob"] == blob
    assert arrived_whole

