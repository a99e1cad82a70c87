"""A request still pending when its connection closes fails with RemotingClosedError for whoever
waits on it; one whose waiter went away is not logged as "Future exception was never retrieved"
(a Ray DR drill's stderr showed it when the drill closed its clients)."""
from __future__ import annotations

import asyncio
import gc

from mqbench.broker.remoting.channel import RemotingClosedError
from mqbench.broker.remoting.client import connect


def test_pending_requests_fail_on_close_and_an_abandoned_one_is_not_logged():
    async def scenario() -> tuple[list, object]:
        loop = asyncio.get_running_loop()
        logged: list = []
        loop.set_exception_handler(lambda _loop, context: logged.append(context.get("message")))
        silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)   # accepts, never answers
        port = silent.sockets[0].getsockname()[1]
        channel = await connect(f"127.0.0.1:{port}")
        waited = channel.submit(channel.next_opaque(), b"\x00\x00\x00\x04\x00\x00\x00\x00", 60_000)
        abandoned = channel.submit(channel.next_opaque(), b"\x00\x00\x00\x04\x00\x00\x00\x00", 60_000)
        channel.close("closed locally")
        try:
            await waited
        except RemotingClosedError as exc:
            error = exc
        del abandoned
        gc.collect()
        await asyncio.sleep(0)
        silent.close()
        return logged, error

    logged, error = asyncio.run(scenario())
    assert isinstance(error, RemotingClosedError) and "closed locally" in str(error)
    assert not [m for m in logged if m and "never retrieved" in m], logged
