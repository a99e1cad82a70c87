"""Connections of one mqbench client: a pool of remoting channels by address, and route lookups.

``ConnectionPool.request(addr, cmd, timeout_ms)`` reuses one channel per address and reconnects
when the last one closed (the remoting layer leaves reconnecting to its caller; this is it).
``NameServerClient`` asks the name servers in turn, moving on when one does not answer.
``RouteCache`` keeps each topic's route for ``route_ttl_ms`` and refreshes it on demand (a send
that failed on a broker forces a refresh, which is how a client follows a Raft failover).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from mqbench.broker.formats import codes
from mqbench.broker.remoting.channel import Channel, RemotingClosedError, RemotingTimeoutError, RequestHandler
from mqbench.broker.remoting.client import connect, parse_addr
from mqbench.broker.formats.command import RemotingCommand
from mqbench.client.routes import TopicRoute
from mqbench.errors import PeerError, UserError

log = logging.getLogger(__name__)

#: What a request can fail with at the transport level (the caller retries or reports).
TRANSPORT_ERRORS = (RemotingClosedError, RemotingTimeoutError, PeerError)


class ClientError(UserError):
    """The cluster refused a request or did not answer; the message names the request and the cause."""


class ConnectionPool:
    def __init__(self, *, connect_timeout_ms: int = 3000, on_request: RequestHandler | None = None,
                 credentials=None) -> None:
        self.connect_timeout_ms = connect_timeout_ms
        self.credentials = credentials
        self.on_request = on_request
        self._channels: dict[str, Channel] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def channel(self, addr: str) -> Channel:
        channel = self._channels.get(addr)
        if channel is not None and not channel.closed:
            return channel
        async with self._locks.setdefault(addr, asyncio.Lock()):
            channel = self._channels.get(addr)
            if channel is None or channel.closed:
                channel = await connect(addr, timeout_ms=self.connect_timeout_ms, on_request=self.on_request,
                                        credentials=self.credentials)
                self._channels[addr] = channel
            return channel

    def open_channel(self, addr: str) -> Channel | None:
        """The open connection to ``addr``, or None when there is none yet (no connecting here)."""
        channel = self._channels.get(addr)
        return channel if channel is not None and not channel.closed else None

    async def request(self, addr: str, cmd: RemotingCommand, timeout_ms: int) -> RemotingCommand:
        channel = await self.channel(addr)
        return await channel.request(cmd, timeout_ms)

    async def oneway(self, addr: str, cmd: RemotingCommand) -> None:
        channel = await self.channel(addr)
        await channel.oneway(cmd)

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        await asyncio.gather(*(c.aclose() for c in channels), return_exceptions=True)


class NameServerClient:
    def __init__(self, addrs: str | list[str], pool: ConnectionPool, *, timeout_ms: int = 3000) -> None:
        if isinstance(addrs, str):
            addrs = [a for a in addrs.replace(",", ";").split(";") if a.strip()]
        if not addrs:
            raise UserError("no name server address given")
        for addr in addrs:
            parse_addr(addr)
        self.addrs = [a.strip() for a in addrs]
        self.pool = pool
        self.timeout_ms = timeout_ms
        self._current = 0

    async def request(self, cmd_factory: Callable[[], RemotingCommand]) -> RemotingCommand:
        """Send to the current name server, moving to the next on a transport failure."""
        failures = []
        for _ in range(len(self.addrs)):
            addr = self.addrs[self._current]
            try:
                return await self.pool.request(addr, cmd_factory(), self.timeout_ms)
            except TRANSPORT_ERRORS as exc:
                failures.append(f"{addr}: {exc}")
                self._current = (self._current + 1) % len(self.addrs)
        raise ClientError("no name server answered (" + "; ".join(failures) + ")")

    async def route(self, topic: str) -> TopicRoute | None:
        """The topic's route, or None when the name server does not know the topic."""
        response = await self.request(lambda: RemotingCommand.request(
            codes.GET_ROUTEINFO_BY_TOPIC, {"topic": topic, "acceptStandardJsonOnly": True}))
        if response.code == codes.TOPIC_NOT_EXIST:
            return None
        if response.code != codes.SUCCESS:
            raise ClientError(f"route of {topic!r}: {codes.response_name(response.code)} {response.remark or ''}")
        return TopicRoute.parse(topic, response.body)


class RouteCache:
    def __init__(self, namesrv: NameServerClient, *, route_ttl_ms: int = 30_000,
                 clock_ms: Callable[[], int]) -> None:
        self.namesrv = namesrv
        self.route_ttl_ms = route_ttl_ms
        self.clock_ms = clock_ms
        self._routes: dict[str, tuple[TopicRoute, int]] = {}
        self._inflight: dict[str, asyncio.Future] = {}
        #: counts the routes fetched: what a caller derived from a route is stale once it moved
        self.version = 0

    async def get(self, topic: str) -> TopicRoute:
        """A route no older than the TTL; ClientError if the topic has no route."""
        cached = self._routes.get(topic)
        if cached is not None and self.clock_ms() - cached[1] <= self.route_ttl_ms:
            return cached[0]
        return await self.refresh(topic)

    async def refresh(self, topic: str) -> TopicRoute:
        """Fetch the route now (one lookup per topic at a time, shared by concurrent callers)."""
        pending = self._inflight.get(topic)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._inflight[topic] = future
        try:
            route = await self.namesrv.route(topic)
            if route is None:
                raise ClientError(f"topic {topic!r} has no route: no broker serves it")
            self._routes[topic] = (route, self.clock_ms())
            self.version += 1
            future.set_result(route)
            return route
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: concurrent waiters get it, nobody else must
            raise
        finally:
            del self._inflight[topic]

    def fresh(self, topic: str) -> TopicRoute | None:
        """The cached route when it is no older than the TTL (what ``get`` returns without a lookup)."""
        cached = self._routes.get(topic)
        if cached is not None and self.clock_ms() - cached[1] <= self.route_ttl_ms:
            return cached[0]
        return None

    def fresh_until_ms(self, topic: str) -> tuple[TopicRoute, int] | None:
        """The cached route and the ``clock_ms`` time until which ``fresh`` returns it (a caller
        that keeps what it derived from the route checks that time, not the clock, per use)."""
        cached = self._routes.get(topic)
        if cached is not None and self.clock_ms() - cached[1] <= self.route_ttl_ms:
            return cached[0], cached[1] + self.route_ttl_ms
        return None

    def cached(self, topic: str) -> TopicRoute | None:
        entry = self._routes.get(topic)
        return entry[0] if entry else None
