"""One remoting connection over asyncio streams, used by both ends (``server`` and ``client``).

A channel reads frames with a ``FrameDecoder``, matches responses to its own requests by opaque,
and hands requests from the peer to ``on_request`` (each in its own task, so a long-polling pull
does not hold up the requests behind it). Contracts:

* ``request(cmd, timeout_ms)`` assigns a fresh opaque, writes, and returns the response, or raises
  ``RemotingTimeoutError`` (the late response, if any, is dropped) or ``RemotingClosedError``.
* ``oneway(cmd)`` writes with the one-way flag; the peer never answers.
* Writes go through one lock and ``drain()``: when the peer reads slowly, writers wait (write
  backpressure, bounded by ``write_buffer_bytes_high``), they do not queue unbounded memory.
* At most ``inflight_requests_max`` peer requests are handled at once; beyond that the channel
  stops reading, so TCP pushes back on the peer.
* With ``limits`` (a server's channel; ``limits.ServerLimits``): while more than
  ``output_bytes_max`` of responses wait for the peer to read them, the channel neither reads nor
  runs the peer's requests; the server's sweeper (``check_timeouts``) closes a channel idle, stuck
  in one frame, or not reading its responses for too long; and the bytes of its incomplete frame
  count in the server's ``PartialFrameBudget``: the channel that takes it over budget is closed.
* A malformed frame (``PeerError``) closes this channel only; pending requests then fail with
  ``RemotingClosedError`` naming the reason.
* ``on_request`` returns the response (its opaque and flags are set here) or None; for a one-way
  request any response is dropped. If it raises, the peer gets SYSTEM_ERROR with the error text
  (``InvariantViolation`` is not swallowed: it closes the channel and goes to ``on_fatal``).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Awaitable, Callable

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand, encode_command
from mqbench.broker.formats.frame import FRAME_BYTES_MAX_DEFAULT, FrameDecoder
from mqbench.broker.remoting.limits import PartialFrameBudget, ServerLimits
from mqbench.errors import InvariantViolation, PeerError, UserError

log = logging.getLogger(__name__)

RequestHandler = Callable[[RemotingCommand, "Channel"], Awaitable["RemotingCommand | None"]]

READ_CHUNK_BYTES = 256 * 1024
WRITE_BUFFER_BYTES_HIGH_DEFAULT = 4 * 1024 * 1024
INFLIGHT_REQUESTS_MAX_DEFAULT = 1024
ROOM_POLL_S = 0.02


class RemotingClosedError(ConnectionError):
    """The connection closed (or was never open) before the response arrived."""


class RemotingTimeoutError(TimeoutError):
    """No response within the request's timeout."""


class Channel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 on_request: RequestHandler | None = None, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
                 write_buffer_bytes_high: int = WRITE_BUFFER_BYTES_HIGH_DEFAULT,
                 inflight_requests_max: int = INFLIGHT_REQUESTS_MAX_DEFAULT,
                 on_fatal: Callable[[BaseException], None] | None = None, credentials=None,
                 limits: ServerLimits | None = None, budget: PartialFrameBudget | None = None) -> None:
        #: ``signature.Credentials`` (or None): every request and one-way request sent is signed
        self.credentials = credentials
        self._reader = reader
        self._writer = writer
        self._decoder = FrameDecoder(frame_bytes_max)
        self._on_request = on_request
        self._on_fatal = on_fatal
        self._pending: dict[int, asyncio.Future] = {}
        self._opaques = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self._inflight = asyncio.Semaphore(inflight_requests_max)
        self._tasks: set[asyncio.Task] = set()
        self._closed = asyncio.Event()
        self.close_reason: str | None = None
        self._limits = limits
        self._budget = budget
        self._loop = asyncio.get_running_loop()
        self._partial_counted = 0                 # this channel's bytes in the budget
        self._queued_bytes = 0                    # encoded responses not yet handed to the transport
        self._room = asyncio.Event()              # set while the queued output is under the limit
        self._room.set()
        self._room_poller: asyncio.Task | None = None
        self.last_read_s = self._loop.time()
        self._frame_started_s: float | None = None
        self._output_over_since_s: float | None = None
        #: Free for the owner (e.g. the broker's client registry keys on the channel itself).
        self.attributes: dict[str, object] = {}
        writer.transport.set_write_buffer_limits(high=write_buffer_bytes_high)
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._read_task = asyncio.get_running_loop().create_task(self._read_loop(), name=f"remoting-read {self.peer}")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # --- sending ---------------------------------------------------------------------------------

    async def send(self, cmd: RemotingCommand) -> None:
        """Write one command (as is) with backpressure."""
        if self.closed:
            raise RemotingClosedError(f"connection to {self.peer} is closed: {self.close_reason}")
        data = encode_command(cmd)
        size = len(data)
        self._queued_bytes += size          # counted until the transport has it (output_bytes_max)
        self._update_room()
        handed = False
        try:
            async with self._write_lock:
                self._queued_bytes -= size
                handed = True
                try:
                    self._writer.write(data)
                    del data
                    await self._writer.drain()
                except (ConnectionError, RuntimeError) as exc:
                    self.close(f"write failed: {exc}")
                    raise RemotingClosedError(f"connection to {self.peer} is closed: {exc}") from None
        finally:
            if not handed:
                self._queued_bytes -= size
            self._update_room()

    def output_bytes(self) -> int:
        """Response bytes the peer has not taken yet (queued here and in the transport)."""
        try:
            buffered = self._writer.transport.get_write_buffer_size()
        except (AttributeError, RuntimeError):
            buffered = 0
        return self._queued_bytes + buffered

    def _update_room(self) -> None:
        if self._limits is None:
            return
        if self.output_bytes() <= self._limits.output_bytes_max or self.closed:
            self._output_over_since_s = None
            self._room.set()
            return
        if self._output_over_since_s is None:
            self._output_over_since_s = self._loop.time()
        self._room.clear()
        if self._room_poller is None or self._room_poller.done():
            # the transport drains without telling us: one poller per channel looks until it has
            self._room_poller = self._loop.create_task(self._poll_room(), name=f"remoting-room {self.peer}")

    async def _poll_room(self) -> None:
        while not self._room.is_set():
            await asyncio.sleep(ROOM_POLL_S)
            self._update_room()

    async def _wait_for_room(self) -> None:
        """With limits: until the peer has read enough of its responses (module doc)."""
        self._update_room()
        await self._room.wait()

    def check_timeouts(self, now_s: float) -> None:
        """Close this channel when one of its limits' timeouts passed (called by the server's sweeper)."""
        limits = self._limits
        if limits is None or self.closed:
            return
        self._update_room()
        if self._frame_started_s is not None and now_s - self._frame_started_s > limits.frame_timeout_ms / 1000:
            self._close_for(f"a frame was not completed within {limits.frame_timeout_ms} ms")
        elif self._output_over_since_s is not None and \
                now_s - self._output_over_since_s > limits.output_stall_timeout_ms / 1000:
            self._close_for(f"over {limits.output_bytes_max} bytes of responses not read for "
                            f"{limits.output_stall_timeout_ms} ms")
        elif not self._tasks and self._frame_started_s is None and \
                now_s - self.last_read_s > limits.idle_timeout_ms / 1000:
            self._close_for(f"idle for {limits.idle_timeout_ms} ms")

    def _close_for(self, reason: str) -> None:
        log.info("closing the connection from %s: %s", self.peer, reason)
        self.close(reason)

    async def request(self, cmd: RemotingCommand, timeout_ms: int) -> RemotingCommand:
        if self.credentials is not None:
            self.credentials.apply(cmd)
        cmd.opaque = self._next_opaque()
        cmd.flag &= ~(codes.FLAG_RESPONSE | codes.FLAG_ONEWAY)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending[cmd.opaque] = future
        # a timer on the future instead of asyncio.wait_for, which wraps every request in a Task
        timer = loop.call_later(timeout_ms / 1000, _expire, future)
        try:
            await self.send(cmd)
            return await future
        except _Expired:
            raise RemotingTimeoutError(f"{cmd.describe()} to {self.peer}: no response within {timeout_ms} ms") from None
        finally:
            timer.cancel()
            self._pending.pop(cmd.opaque, None)

    async def oneway(self, cmd: RemotingCommand) -> None:
        if self.credentials is not None:
            self.credentials.apply(cmd)
        cmd.opaque = self._next_opaque()
        cmd.flag = (cmd.flag | codes.FLAG_ONEWAY) & ~codes.FLAG_RESPONSE
        await self.send(cmd)

    def _next_opaque(self) -> int:
        opaque = next(self._opaques)
        if opaque >= (1 << 31) - 1:
            self._opaques = itertools.count(1)
        return opaque

    # --- closing ---------------------------------------------------------------------------------

    def close(self, reason: str = "closed locally") -> None:
        if self.closed:
            return
        self.close_reason = reason
        self._closed.set()
        self._account_partial(0)
        self._room.set()
        if self._room_poller is not None:
            self._room_poller.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RemotingClosedError(f"connection to {self.peer} closed: {reason}"))
        self._pending.clear()
        self._writer.close()
        current = asyncio.current_task()
        if self._read_task is not current:
            self._read_task.cancel()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def aclose(self, reason: str = "closed locally") -> None:
        self.close(reason)
        try:
            await self._writer.wait_closed()
        except (ConnectionError, OSError):
            pass
        tasks = [t for t in [self._read_task, *self._tasks] if t is not asyncio.current_task()]
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- receiving -------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reason = "peer closed the connection"
        try:
            while True:
                if not self._room.is_set():
                    await self._wait_for_room()     # a peer that does not read: stop reading too
                data = await self._reader.read(READ_CHUNK_BYTES)
                if not data:
                    break
                self.last_read_s = self._loop.time()
                commands = self._decoder.feed(data)
                if self._budget is not None and not self._track_partial(bool(commands)):
                    reason = (f"incomplete frames of all connections exceed {self._budget.bytes_max} bytes "
                              f"({self._decoder.pending_bytes} of them from {self.peer})")
                    log.warning("%s; closing that connection", reason)
                    break
                for cmd in commands:
                    if cmd.is_response:
                        future = self._pending.pop(cmd.opaque, None)
                        if future is not None and not future.done():
                            future.set_result(cmd)
                        continue
                    await self._inflight.acquire()
                    task = asyncio.get_running_loop().create_task(self._handle(cmd))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        except PeerError as exc:
            reason = f"malformed frame from {self.peer}: {exc}"
            log.warning("%s; closing that connection", reason)
        except (ConnectionError, OSError) as exc:
            reason = f"read failed: {exc}"
        except asyncio.CancelledError:
            reason = self.close_reason or "cancelled"
        self.close(reason)

    def _track_partial(self, completed: bool) -> bool:
        """Account this channel's incomplete frame after a read; False when the server's budget is over."""
        pending = self._decoder.pending_bytes
        if pending == 0:
            self._frame_started_s = None
        elif completed or self._frame_started_s is None:
            self._frame_started_s = self.last_read_s
        return self._account_partial(pending)

    def _account_partial(self, pending: int) -> bool:
        if self._budget is None:
            return True
        delta, self._partial_counted = pending - self._partial_counted, pending
        return self._budget.change(delta)

    async def _handle(self, cmd: RemotingCommand) -> None:
        try:
            if not self._room.is_set():
                await self._wait_for_room()
            response = await self._respond(cmd)
            if response is not None and not cmd.is_oneway:
                response.opaque = cmd.opaque
                response.flag = (response.flag | codes.FLAG_RESPONSE) & ~codes.FLAG_ONEWAY
                await self.send(response)
        except RemotingClosedError:
            pass
        finally:
            self._inflight.release()

    async def _respond(self, cmd: RemotingCommand) -> RemotingCommand | None:
        if self._on_request is None:
            return unsupported(cmd)
        try:
            return await self._on_request(cmd, self)
        except asyncio.CancelledError:
            raise
        except InvariantViolation as exc:
            log.critical("invariant violated while handling %s: %s", cmd.describe(), exc)
            self.close(f"invariant violated: {exc}")
            if self._on_fatal is not None:
                self._on_fatal(exc)
            return None
        except (PeerError, UserError) as exc:  # a bad header, body or name: answer and keep going
            return cmd.response_to(codes.SYSTEM_ERROR, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the server down
            log.exception("handler for %s from %s failed", cmd.describe(), self.peer)
            return cmd.response_to(codes.SYSTEM_ERROR, f"{type(exc).__name__}: {exc}")


class _Expired(Exception):
    """A request's timer went off before its response came (``Channel.request``)."""


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(_Expired())


def unsupported(cmd: RemotingCommand) -> RemotingCommand:
    return cmd.response_to(codes.REQUEST_CODE_NOT_SUPPORTED,
                           f"request type {cmd.code} not supported ({codes.request_name(cmd.code)})")
