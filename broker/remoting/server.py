"""An asyncio remoting server: accepts connections and dispatches requests by code to async handlers.

Usage::

    server = RemotingServer({codes.GET_ROUTEINFO_BY_TOPIC: on_route})
    host, port = await server.start("127.0.0.1", 0)
    ...
    await server.close()

A handler is ``async def handler(cmd: RemotingCommand, channel: Channel) -> RemotingCommand | None``
and builds its response with ``cmd.response_to(code, remark, ext_fields, body)``; the channel sets
the opaque and flags. What happens to unknown codes, malformed frames, failing handlers, one-way
requests and slow readers is the contract of ``channel.Channel``: REQUEST_CODE_NOT_SUPPORTED,
closing only that connection, SYSTEM_ERROR with the error text, no response, write backpressure.
A code with no handler is logged once per code (warning: the code's name and the first peer that
sent it), so an operator sees what a tool asked for and did not get, without a line per request;
``refused_codes`` counts them per code.
``batch_handlers`` (code -> ``async def handler(cmds, channel) -> [response per request]``) take
the consecutive requests of one read that carry that code together (``Channel``'s ``on_batch``):
the broker's sends, so that one read's sends are one Raft proposal. A code with a batch handler
needs no plain handler.

The server pushes requests to a client through the channel (``channel.oneway(...)`` for
NOTIFY_CONSUMER_IDS_CHANGED, ``channel.request(...)`` when it needs an answer).

What one client may cost is bounded by ``limits`` (``limits.ServerLimits``, the table there): a
connection past ``connections_max`` is closed at once (``refused_connections`` counts them), the
incomplete frames of all connections share one ``PartialFrameBudget``, and a sweeper task checks
every channel's idle, frame and output-stall timeouts every ``SWEEP_S``.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from mqbench.broker.formats import codes
from mqbench.broker.remoting.channel import (INFLIGHT_REQUESTS_MAX_DEFAULT, WRITE_BUFFER_BYTES_HIGH_DEFAULT,
                                             BatchHandler, Channel, RequestHandler, unsupported)
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.formats.frame import FRAME_BYTES_MAX_DEFAULT
from mqbench.broker.remoting.limits import PartialFrameBudget, ServerLimits

log = logging.getLogger(__name__)

SWEEP_S = 1.0


class RemotingServer:
    def __init__(self, handlers: dict[int, RequestHandler] | None = None, *,
                 frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
                 write_buffer_bytes_high: int = WRITE_BUFFER_BYTES_HIGH_DEFAULT,
                 inflight_requests_max: int = INFLIGHT_REQUESTS_MAX_DEFAULT,
                 on_connect: Callable[[Channel], None] | None = None,
                 on_disconnect: Callable[[Channel], None] | None = None,
                 limits: ServerLimits | None = None,
                 batch_handlers: dict[int, BatchHandler] | None = None) -> None:
        self.handlers: dict[int, RequestHandler] = dict(handlers or {})
        self.batch_handlers: dict[int, BatchHandler] = dict(batch_handlers or {})
        self.frame_bytes_max = frame_bytes_max
        self.write_buffer_bytes_high = write_buffer_bytes_high
        self.inflight_requests_max = inflight_requests_max
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.channels: set[Channel] = set()
        self.limits = limits or ServerLimits()
        self.connections_max = self.limits.resolved_connections_max()
        self.budget = PartialFrameBudget(self.limits.partial_frame_bytes_max)
        self.refused_connections = 0
        self._sweeper: asyncio.Task | None = None
        #: Set when a handler raised InvariantViolation; the owner should stop the node.
        self.fatal_error: BaseException | None = None
        self.fatal = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._closing: set[Channel] = set()
        #: request code -> how many requests with that code were refused as not supported
        self.refused_codes: dict[int, int] = {}

    def register(self, code: int, handler: RequestHandler) -> None:
        self.handlers[code] = handler

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (port 0 = ephemeral); returns the bound address."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_channel, host, port)
        self._sweeper = loop.create_task(self._sweep(), name="remoting-sweeper")
        return self.address

    async def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_S)
            now_s = loop.time()
            for channel in list(self.channels):
                channel.check_timeouts(now_s)

    async def close(self) -> None:
        """Stop accepting, close every connection, wait until they are gone."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.gather(*(c.aclose("server shutting down") for c in list(self.channels) + list(self._closing)),
                             return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _new_channel(self) -> Channel:
        return Channel(on_request=self._dispatch, frame_bytes_max=self.frame_bytes_max,
                       write_buffer_bytes_high=self.write_buffer_bytes_high,
                       inflight_requests_max=self.inflight_requests_max, on_fatal=self._fatal,
                       limits=self.limits, budget=self.budget, on_open=self._opened, on_closed=self._channel_closed,
                       on_batch=self._dispatch_batch if self.batch_handlers else None,
                       batch_codes=frozenset(self.batch_handlers))

    def _opened(self, channel: Channel) -> None:
        if len(self.channels) >= self.connections_max:
            self.refused_connections += 1
            if self.refused_connections in (1, 10, 100) or self.refused_connections % 1000 == 0:
                log.warning("connection from %s closed: %d connections is the limit (connections_max; "
                            "%d refused so far)", channel.peer, self.connections_max, self.refused_connections)
            channel.abort()
            return
        self.channels.add(channel)
        if self.on_connect is not None:
            self.on_connect(channel)

    def _channel_closed(self, channel: Channel) -> None:
        if channel not in self.channels:
            return          # refused at the cap: never counted, never announced
        self.channels.discard(channel)
        self._closing.add(channel)          # until its handlers are gone (close() waits for them)
        asyncio.get_running_loop().create_task(self._forget(channel))
        if self.on_disconnect is not None:
            self.on_disconnect(channel)

    async def _forget(self, channel: Channel) -> None:
        try:
            await channel.aclose()
        finally:
            self._closing.discard(channel)

    def _dispatch(self, cmd: RemotingCommand, channel: Channel) -> Awaitable[RemotingCommand | None]:
        handler = self.handlers.get(cmd.code)
        if handler is None:
            seen = self.refused_codes.get(cmd.code, 0)
            self.refused_codes[cmd.code] = seen + 1
            if not seen:
                log.warning("refusing request code %s from %s: not supported (logged once per code)",
                            codes.request_name(cmd.code), channel.peer)
            return _ready(unsupported(cmd))
        return handler(cmd, channel)

    def _dispatch_batch(self, cmds: list[RemotingCommand], channel: Channel) -> Awaitable[list]:
        return self.batch_handlers[cmds[0].code](cmds, channel)     # the channel groups by code

    def _fatal(self, exc: BaseException) -> None:
        if self.fatal_error is None:
            self.fatal_error = exc
        self.fatal.set()
        if self._server is not None:
            self._server.close()


async def _ready(response: RemotingCommand) -> RemotingCommand:
    return response
