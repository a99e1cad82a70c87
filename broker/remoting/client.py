"""An asyncio remoting client connection: ``connect(addr)`` returns a ``Channel``.

The channel matches responses to requests by opaque, applies a per-request timeout, sends one-way
requests, and passes requests the server pushes (NOTIFY_CONSUMER_IDS_CHANGED, ...) to
``on_request`` (without one, they get REQUEST_CODE_NOT_SUPPORTED, or nothing if one-way). It does
not reconnect: when ``channel.closed`` turns true the caller connects again.
"""
from __future__ import annotations

import asyncio

from mqbench.broker.remoting.channel import (Channel, RemotingClosedError, RemotingTimeoutError, RequestHandler,
                                             WRITE_BUFFER_BYTES_HIGH_DEFAULT)
from mqbench.broker.formats.frame import FRAME_BYTES_MAX_DEFAULT
from mqbench.errors import UserError

__all__ = ["connect", "parse_addr", "Channel", "RemotingClosedError", "RemotingTimeoutError"]


def parse_addr(addr: str) -> tuple[str, int]:
    """``"host:port"`` -> (host, port); UserError naming the problem otherwise."""
    host, sep, port_text = addr.strip().rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UserError(f"address {addr!r} is not host:port")
    return host.strip("[]"), int(port_text)


async def connect(addr: str, *, timeout_ms: int = 3000, on_request: RequestHandler | None = None,
                  frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
                  write_buffer_bytes_high: int = WRITE_BUFFER_BYTES_HIGH_DEFAULT, credentials=None) -> Channel:
    """Open a connection to ``addr`` ("host:port"); RemotingClosedError if it cannot be opened in time.
    With ``credentials`` (``signature.Credentials``) every request on it is signed for RocketMQ's ACL."""
    host, port = parse_addr(addr)
    loop = asyncio.get_running_loop()

    def channel() -> Channel:
        return Channel(on_request=on_request, frame_bytes_max=frame_bytes_max,
                       write_buffer_bytes_high=write_buffer_bytes_high, credentials=credentials)
    try:
        _, protocol = await asyncio.wait_for(loop.create_connection(channel, host, port), timeout_ms / 1000)
    except asyncio.TimeoutError:
        raise RemotingTimeoutError(f"connect to {addr}: no answer within {timeout_ms} ms") from None
    except OSError as exc:
        raise RemotingClosedError(f"connect to {addr} failed: {exc.strerror or exc}") from None
    return protocol
