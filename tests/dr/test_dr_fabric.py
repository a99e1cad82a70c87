"""The fabric's proxies over real sockets (no brokers): an alias address reaches the real host
through the room link; a room cut stalls exactly the connections that cross that room's boundary."""
import asyncio
import os
import time

import pytest

from mqbench.broker.layout import load_layout
from mqbench.dr.fabric import ProxyFabric, alias_address


async def echo(host, port):
    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
    return await asyncio.start_server(handle, host, port)


async def ping(host, port, payload=b"ping", timeout_s=2.0):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        start = time.monotonic()
        writer.write(payload)
        await asyncio.wait_for(reader.readexactly(len(payload)), timeout_s)
        return time.monotonic() - start
    finally:
        writer.close()


@pytest.fixture
def layout():
    return load_layout("dr-a").with_port_offset(20_000 + (os.getpid() % 500) * 20)


def test_alias_reaches_the_real_host_through_the_room_link_and_a_cut_stalls_it(layout):
    h2 = layout.instance("broker-a/n1")
    h1 = layout.instance("broker-a/n0")
    fabric = ProxyFabric(layout, seed=1).start()

    async def body():
        servers = [await echo(h2.address, h2.raft_port), await echo(h1.address, h1.raft_port)]
        try:
            via = alias_address(layout, "room1", "h2")
            # room1 <-> room2 is 1 ms +- 1 ms each way, drawn per chunk: one ping can draw 0 ms both
            # ways (1 in 9; the seed includes the port, which follows the pid), so the link's delay
            # shows in the sum of eight pings (16 draws; under 2 ms in total 4e-7 of the time)
            rtts_s = [await ping(via, h2.raft_port) for _ in range(8)]
            assert sum(rtts_s) >= 0.002
            fabric.cut_room("room2")
            with pytest.raises(asyncio.TimeoutError):
                await ping(via, h2.raft_port, timeout_s=0.3)
            # room3 -> room1 does not touch room2: it still flows
            await ping(alias_address(layout, "room3", "h1"), h1.raft_port)
            fabric.heal()
            await ping(via, h2.raft_port)
            fabric.set_transparent(True)
            await ping(via, h2.raft_port)
            return fabric.cross_room_bytes()
        finally:
            for server in servers:
                server.close()
                await server.wait_closed()

    try:
        crossed = asyncio.run(asyncio.wait_for(body(), 20))
    finally:
        fabric.close()
    assert crossed >= 4 * 2 * 10  # ten completed pings through room links, both ways (the stalled one did not arrive)


def test_unknown_room_is_a_user_error(layout):
    from mqbench.errors import UserError

    fabric = ProxyFabric(layout).start()
    try:
        with pytest.raises(UserError, match="no room 'room9'"):
            fabric.cut_room("room9")
    finally:
        fabric.close()


def test_ray_node_views_alias_by_host_index_and_a_second_node_of_one_machine_shares_a_taken_alias(layout):
    """On Ray nodes (``mqbench.ray.links``) the hosts' real addresses are other machines' IPs, which may
    share their last octets: the aliases go by host index; each room's proxies add no delay; a node
    actor whose alias another node of the same machine listens on already leaves that proxy to it."""
    from dataclasses import replace

    from mqbench.dr.fabric import proxy_plan, view_layout
    from mqbench.dr.netem import NO_DELAY

    placed = replace(layout, hosts={"h1": "10.0.0.5", "h2": "10.1.0.5", "h3": "10.2.0.5", "ns": "10.3.0.5"})
    view = view_layout(placed, "room1", by_index=True)["hosts"]
    assert view == {"h1": {"address": "10.0.0.5"}, "h2": {"address": "127.200.0.2"},
                    "h3": {"address": "127.200.0.3"}, "ns": {"address": "127.200.0.4"}}
    specs = proxy_plan(placed, by_index=True, link=NO_DELAY)
    assert {s.link for s in specs} == {NO_DELAY} and len({(s.view_room, s.listen) for s in specs}) == len(specs)
    ours = [s for s in proxy_plan(layout) if s.view_room == "room1"]
    first = ProxyFabric(layout, specs=ours, share_busy=True).start()
    try:
        second = ProxyFabric(layout, specs=ours, share_busy=True).start()
        assert second.shared == len(ours) and second.cross_room_bytes() == 0
        second.close()
        from mqbench.errors import UserError

        with pytest.raises(UserError, match="cannot listen"):
            ProxyFabric(layout, specs=ours).start()     # without share_busy a taken alias is an error
    finally:
        first.close()
