"""The asyncio delay proxy over real loopback sockets: integrity, delay, cut/heal, reset, bounds."""
import asyncio
import os
import time

import pytest

from mqbench.dr.netem import DelayProxy, LinkSettings
from mqbench.errors import UserError


async def echo_server():
    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[:2]


async def with_proxy(body, **settings):
    server, target = await echo_server()
    proxy = DelayProxy(("127.0.0.1", 0), target, **settings)
    listen = await proxy.start()
    try:
        return await body(proxy, listen)
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()


async def round_trip(listen, payload: bytes) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection(*listen)
    start = time.monotonic()
    writer.write(payload)
    got = await reader.readexactly(len(payload))
    elapsed = time.monotonic() - start
    writer.close()
    return got, elapsed


def run(coro, timeout_s=20):
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def test_fast_path_forwards_megabytes_intact_both_ways_and_counts_bytes():
    payload = os.urandom(3 << 20)

    async def body(proxy, listen):
        reader, writer = await asyncio.open_connection(*listen)

        async def send():
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        got = await reader.read(-1)  # the echo ends its side after our end of stream arrived through the proxy
        await sender
        writer.close()
        await asyncio.sleep(0.05)
        return got, proxy.stats()

    got, stats = run(with_proxy(body))
    assert got == payload
    assert stats.bytes_forward == stats.bytes_backward == len(payload)
    assert stats.connections == 1


def test_latency_is_added_each_way():
    async def body(proxy, listen):
        got, elapsed = await round_trip(listen, b"ping")
        return got, elapsed

    got, elapsed = run(with_proxy(body, forward=LinkSettings(latency_ms=40), backward=LinkSettings(latency_ms=20)))
    assert got == b"ping"
    assert elapsed >= 0.058  # 40 + 20 ms, less timer rounding


def test_lossy_jittery_link_delivers_the_exact_stream_and_counts_retransmissions():
    payload = os.urandom(400_000)

    async def body(proxy, listen):
        got, _ = await round_trip(listen, payload)
        return got, proxy.stats()

    got, stats = run(with_proxy(body, forward=LinkSettings(latency_ms=2, jitter_ms=2, loss=0.02, retransmit_ms=5),
                                seed=11))
    assert got == payload
    assert stats.retransmissions > 0


def test_cut_stalls_then_heal_delivers_everything_in_order():
    async def body(proxy, listen):
        reader, writer = await asyncio.open_connection(*listen)
        writer.write(b"before;")
        assert await reader.readexactly(7) == b"before;"
        proxy.cut()
        writer.write(b"during;")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.readexactly(7), 0.2)
        late_reader, late_writer = await asyncio.open_connection(*listen)  # a new connection stalls too
        late_writer.write(b"new")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(late_reader.readexactly(3), 0.1)
        proxy.heal()
        got = await asyncio.wait_for(reader.readexactly(7), 2)
        late = await asyncio.wait_for(late_reader.readexactly(3), 2)
        writer.close()
        late_writer.close()
        return got, late

    # wait_for cancelled a readexactly; the bytes stay in the stream buffer, so read what arrived
    got, late = run(with_proxy(body, forward=LinkSettings(latency_ms=5)))
    assert (got, late) == (b"during;", b"new")


def test_cut_with_reset_aborts_connections_and_refuses_new_ones_until_heal():
    async def body(proxy, listen):
        reader, writer = await asyncio.open_connection(*listen)
        writer.write(b"x")
        await reader.readexactly(1)
        proxy.cut(reset=True)
        assert await asyncio.wait_for(reader.read(10), 2) == b""
        r2, w2 = await asyncio.open_connection(*listen)
        assert await asyncio.wait_for(r2.read(10), 2) == b""
        proxy.heal()
        got, _ = await round_trip(listen, b"again")
        return got

    assert run(with_proxy(body)) == b"again"


def test_set_links_changes_delay_of_an_open_connection():
    async def body(proxy, listen):
        reader, writer = await asyncio.open_connection(*listen)
        writer.write(b"a")
        await reader.readexactly(1)
        proxy.set_links(forward=LinkSettings(latency_ms=80), backward=LinkSettings())
        start = time.monotonic()
        writer.write(b"b")
        await reader.readexactly(1)
        writer.close()
        return time.monotonic() - start

    assert run(with_proxy(body)) >= 0.075


def test_buffer_stays_bounded_while_cut_and_sender_is_pushed_back():
    async def body(proxy, listen):
        reader, writer = await asyncio.open_connection(*listen)
        proxy.cut()
        chunk = b"z" * 65536
        blocked = False
        for _ in range(200):  # 12.5 MiB: far beyond the proxy's and the kernel's buffers
            writer.write(chunk)
            try:
                await asyncio.wait_for(writer.drain(), 0.2)
            except asyncio.TimeoutError:
                blocked = True
                break
        conn = next(iter(proxy._connections))
        buffered = conn.forward.buffered_bytes
        writer.transport.abort()
        return blocked, buffered

    blocked, buffered = run(with_proxy(body, capacity_bytes=256 * 1024))
    assert blocked
    assert buffered <= 256 * 1024 + 65536


def test_unreachable_target_closes_the_client_and_is_counted():
    async def body():
        proxy = DelayProxy(("127.0.0.1", 0), ("127.0.0.1", 1))
        listen = await proxy.start()
        reader, writer = await asyncio.open_connection(*listen)
        got = await asyncio.wait_for(reader.read(10), 5)
        stats = proxy.stats()
        await proxy.close()
        return got, stats

    got, stats = run(body())
    assert got == b"" and stats.connect_failures == 1


def test_listen_address_in_use_is_a_user_error():
    async def body():
        first = DelayProxy(("127.0.0.1", 0), ("127.0.0.1", 1))
        listen = await first.start()
        try:
            with pytest.raises(UserError, match="cannot listen"):
                await DelayProxy(listen, ("127.0.0.1", 1)).start()
        finally:
            await first.close()

    run(body())
