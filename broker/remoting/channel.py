"""One remoting connection as an ``asyncio.Protocol``, used by both ends (``server`` and ``client``).

A channel decodes every complete frame of one read in one pass (``FrameDecoder``), matches
responses to its own requests by opaque, and hands requests from the peer to ``on_request``.
Contracts:

* ``request(cmd, timeout_ms)`` assigns a fresh opaque, writes, and returns the response, or raises
  ``RemotingTimeoutError`` (the late response, if any, is dropped) or ``RemotingClosedError``.
* ``oneway(cmd)`` writes with the one-way flag; the peer never answers.
* Writes are coalesced: every frame queued in one loop turn (the responses to all the requests of
  one read, the requests many tasks send at once) goes to the transport in ONE ``write`` at the
  end of that turn. ``send`` waits while the transport holds more than ``write_buffer_bytes_high``
  (write backpressure: writers wait, they do not queue unbounded memory).
* A request is run at once, inside the read: ``on_request(cmd, channel)`` returns an awaitable
  that is stepped right there, and again from the done callback of each future it waits for (a
  quorum commit, a long poll), so it never holds up the requests behind it. No Task is made per
  request: a handler runs outside any Task (``asyncio.current_task()`` is None, so it must not
  use ``asyncio.timeout``; ``wait_for``, locks, events and futures work as usual). Closing the
  channel cancels what its handlers wait for, as cancelling their Tasks did.
* At most ``inflight_requests_max`` peer requests are in progress at once; beyond that the
  channel stops reading (and keeps the decoded rest for later), so TCP pushes back on the peer.
* With ``limits`` (a server's channel; ``limits.ServerLimits``): while more than
  ``output_bytes_max`` of responses wait for the peer to read them, the channel neither reads nor
  runs the peer's requests; the server's sweeper (``check_timeouts``) closes a channel idle, stuck
  in one frame, or not reading its responses for too long; and the bytes of its incomplete frame
  count in the server's ``PartialFrameBudget``: the channel that takes it over budget is closed.
* A malformed frame (``PeerError``) closes this channel only; pending requests then fail with
  ``RemotingClosedError`` naming the reason.
* Requests whose code is in ``batch_codes`` and that follow each other in one read (or in the
  backlog) with the same code are handed to ``on_batch(cmds, channel)`` together, one awaitable
  for all of them (stepped the same way) that returns one response per request, in order: the
  sends of one read are validated, proposed, committed and answered together. Each still counts
  as one request in flight, gets its own response, and a handler error answers each of them.
* ``on_request``'s response gets its opaque and flags here; for a one-way request it is dropped.
  A response may also be a whole encoded frame (``bytes``), which the handler built with the
  request's opaque and the response flag (a prebuilt success frame); it is queued as it is.
  If the handler raises, the peer gets SYSTEM_ERROR with the error text (``InvariantViolation``
  is not swallowed: it closes the channel and goes to ``on_fatal``).
"""
from __future__ import annotations

import asyncio
import collections
import functools
import itertools
import logging
import types
from typing import Any, Awaitable, Callable

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand, encode_command
from mqbench.broker.formats.frame import FRAME_BYTES_MAX_DEFAULT, FrameDecoder
from mqbench.broker.remoting.limits import PartialFrameBudget, ServerLimits
from mqbench.errors import InvariantViolation, PeerError, UserError

log = logging.getLogger(__name__)

RequestHandler = Callable[[RemotingCommand, "Channel"], Awaitable["RemotingCommand | None"]]
#: ``on_batch(cmds, channel)``: one response (a command, an encoded frame, or None) per request
BatchHandler = Callable[[list[RemotingCommand], "Channel"], Awaitable[list["RemotingCommand | bytes | None"]]]

WRITE_BUFFER_BYTES_HIGH_DEFAULT = 4 * 1024 * 1024
INFLIGHT_REQUESTS_MAX_DEFAULT = 1024
ROOM_POLL_S = 0.02
SUBMIT_CHECK_S = 0.1         # how often ``submit``'s deadlines are looked at
CLOSE_FLUSH_S = 1.0        # how long ``aclose`` lets the transport hand over what it holds
_RESPONSE = codes.FLAG_RESPONSE
_ONEWAY = codes.FLAG_ONEWAY


class RemotingClosedError(ConnectionError):
    """The connection closed (or was never open) before the response arrived."""


class RemotingTimeoutError(TimeoutError):
    """No response within the request's timeout."""


class Channel(asyncio.Protocol):
    """The protocol object of one connection (module doc). ``on_open(channel)`` is called when the
    connection is made (it may ``abort()`` it), ``on_closed(channel)`` once when it closes."""

    def __init__(self, *, on_request: RequestHandler | None = None, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
                 write_buffer_bytes_high: int = WRITE_BUFFER_BYTES_HIGH_DEFAULT,
                 inflight_requests_max: int = INFLIGHT_REQUESTS_MAX_DEFAULT,
                 on_fatal: Callable[[BaseException], None] | None = None, credentials=None,
                 limits: ServerLimits | None = None, budget: PartialFrameBudget | None = None,
                 on_open: Callable[["Channel"], None] | None = None,
                 on_closed: Callable[["Channel"], None] | None = None,
                 on_batch: BatchHandler | None = None, batch_codes: frozenset[int] = frozenset()) -> None:
        #: ``signature.Credentials`` (or None): every request and one-way request sent is signed
        self.credentials = credentials
        self._decoder = FrameDecoder(frame_bytes_max)
        self._on_request = on_request
        self._on_batch = on_batch
        self._batch_codes = batch_codes if on_batch is not None else frozenset()
        self._on_fatal = on_fatal
        self._on_open = on_open
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._opaques = itertools.count(1)
        self._write_high = write_buffer_bytes_high
        self._inflight_max = inflight_requests_max
        self._inflight = 0                        # peer requests started and not yet answered
        self._waiting: dict[Any, asyncio.Future | None] = {}   # handler coroutine -> what it waits for
        self._backlog: collections.deque[RemotingCommand] = collections.deque()  # decoded, not yet run
        self._out: list[bytes] = []               # encoded frames not yet handed to the transport
        self._out_bytes = 0
        self._flush_handle: asyncio.Handle | None = None
        self._in_read = False                     # inside data_received: its end flushes
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future] = []
        self._deadlines: collections.deque[tuple[float, int, int]] = collections.deque()   # of ``submit``
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._reading_paused = False
        self._closed = False
        self._closed_event = asyncio.Event()
        self._lost = self._loop.create_future()
        self.close_reason: str | None = None
        self._limits = limits
        self._budget = budget
        self._partial_counted = 0                 # this channel's bytes in the budget
        self._room = True                         # the queued output is under the limit
        self._room_timer: asyncio.TimerHandle | None = None
        self.last_read_s = self._loop.time()
        self._frame_started_s: float | None = None
        self._output_over_since_s: float | None = None
        #: Free for the owner (e.g. the broker's client registry keys on the channel itself).
        self.attributes: dict[str, object] = {}
        self.peer = "?"
        #: transport writes made: one per loop turn that produced output (frames are coalesced)
        self.writes = 0

    # --- the protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport (TCP)
        self._transport.set_write_buffer_limits(high=self._write_high)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.last_read_s = self._loop.time()
        if self._on_open is not None:
            self._on_open(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(f"read failed: {exc}" if exc is not None else "peer closed the connection")
        if not self._lost.done():
            self._lost.set_result(None)

    def eof_received(self) -> bool:
        return False            # the transport closes itself; connection_lost follows

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        self.last_read_s = self._loop.time()
        try:
            commands = self._decoder.feed(data)
        except PeerError as exc:
            reason = f"malformed frame from {self.peer}: {exc}"
            log.warning("%s; closing that connection", reason)
            self.close(reason)
            return
        if self._budget is not None and not self._track_partial(bool(commands)):
            reason = (f"incomplete frames of all connections exceed {self._budget.bytes_max} bytes "
                      f"({self._decoder.pending_bytes} of them from {self.peer})")
            log.warning("%s; closing that connection", reason)
            self.close(reason)
            return
        if not commands:
            return
        self._in_read = True
        try:
            pending = self._pending
            backlog = self._backlog
            for cmd in commands:
                if cmd.flag & _RESPONSE:
                    future = pending.pop(cmd.opaque, None)
                    if future is not None and not future.done():
                        future.set_result(cmd)
                else:
                    backlog.append(cmd)
            if backlog:
                self._run_backlog()
        finally:
            self._in_read = False
            self._flush()
        if self._backlog:
            self._pause_reading()

    # --- running the peer's requests -------------------------------------------------------------

    def _may_run(self) -> bool:
        if self._inflight >= self._inflight_max:
            return False
        if self._limits is not None and not self._update_room():
            return False
        return True

    def _run_backlog(self) -> None:
        """Start the backlog's requests, in order, while there is room; consecutive ones with the
        same code in ``batch_codes`` start together through ``on_batch`` (module doc)."""
        backlog, batch_codes = self._backlog, self._batch_codes
        group: list[RemotingCommand] | None = None
        while backlog and self._may_run():
            cmd = backlog.popleft()
            if cmd.code in batch_codes:
                if group is not None and group[0].code != cmd.code:
                    self._run_batch(group)
                    group = None
                    if self._closed:
                        return
                if group is None:
                    group = [cmd]
                else:
                    group.append(cmd)
                self._inflight += 1         # counted now, so _may_run bounds the group too
                continue
            if group is not None:
                self._run_batch(group)
                group = None
                if self._closed:
                    return
            self._run(cmd)
            if self._closed:
                return
        if group is not None:
            self._run_batch(group)

    def _run(self, cmd: RemotingCommand) -> None:
        """Start one request: stepped here, and from the callbacks of what it waits for (module doc)."""
        self._inflight += 1
        if self._on_request is None:
            self._answer(cmd, unsupported(cmd))
            return
        try:
            awaitable = self._on_request(cmd, self)
            coro = awaitable if isinstance(awaitable, types.CoroutineType) else awaitable.__await__()
        except BaseException as exc:  # noqa: BLE001 - failure_response re-raises what is not the handler's
            self._answer(cmd, self.failure_response(cmd, exc))
            return
        self._step(cmd, coro, None)

    def _run_batch(self, cmds: list[RemotingCommand]) -> None:
        """Start ``on_batch`` for ``cmds``, already counted in flight (module doc)."""
        try:
            coro = self._on_batch(cmds, self)    # type: ignore[misc]  # only called with on_batch set
            if not isinstance(coro, types.CoroutineType):
                coro = coro.__await__()
        except BaseException as exc:  # noqa: BLE001 - failure_response re-raises what is not the handler's
            self._answer_failure(cmds, exc)
            return
        self._step(cmds, coro, None)

    def _answer_failure(self, cmd: RemotingCommand | list[RemotingCommand], exc: BaseException) -> None:
        if type(cmd) is not list:
            self._answer(cmd, self.failure_response(cmd, exc))  # type: ignore[arg-type]
            return
        for one in cmd:
            # an invariant violation closes the channel once; the rest are then dropped unanswered
            self._answer(one, None if self._closed else self.failure_response(one, exc))

    def _step(self, cmd: Any, coro: Any, exc: BaseException | None) -> None:
        """One step of a handler's coroutine, as a Task would take it: a future it yields wakes the
        next step when done (a cancelled one raises CancelledError inside the handler), a bare
        yield (``asyncio.sleep(0)``) goes on in the next loop turn. No Task is made: a Task per
        request cost more than most handlers."""
        waiting = self._waiting
        try:
            yielded = coro.send(None) if exc is None else coro.throw(exc)
        except StopIteration as stop:
            waiting.pop(coro, None)
            if type(cmd) is list:
                self._answer_all(cmd, stop.value)
            else:
                self._answer(cmd, stop.value)
            return
        except BaseException as error:  # noqa: BLE001 - failure_response re-raises what is not the handler's
            waiting.pop(coro, None)
            self._answer_failure(cmd, error)
            return
        if yielded is None:
            waiting[coro] = None
            self._loop.call_soon(self._step, cmd, coro, None)
        elif getattr(yielded, "_asyncio_future_blocking", None):
            yielded._asyncio_future_blocking = False
            waiting[coro] = yielded
            yielded.add_done_callback(functools.partial(self._wake, cmd, coro))
            if self._closed:
                yielded.cancel()
        else:
            waiting[coro] = None
            first = cmd[0] if type(cmd) is list else cmd
            self._loop.call_soon(self._step, cmd, coro, RuntimeError(
                f"handler for {first.describe()} yielded {yielded!r}, not a future"))

    def _wake(self, cmd: Any, coro: Any, _future: asyncio.Future) -> None:
        self._step(cmd, coro, None)     # the handler's await reads the future's result or error

    def failure_response(self, cmd: RemotingCommand, exc: BaseException) -> RemotingCommand | None:
        """The response to a handler that raised ``exc`` (module doc)."""
        if isinstance(exc, InvariantViolation):
            log.critical("invariant violated while handling %s: %s", cmd.describe(), exc)
            self.close(f"invariant violated: {exc}")
            if self._on_fatal is not None:
                self._on_fatal(exc)
            return None
        if isinstance(exc, (PeerError, UserError)):   # a bad header, body or name: answer and keep going
            return cmd.response_to(codes.SYSTEM_ERROR, str(exc))
        if isinstance(exc, asyncio.CancelledError):
            return None
        if not isinstance(exc, Exception):
            raise exc
        log.error("handler for %s from %s failed", cmd.describe(), self.peer, exc_info=exc)
        return cmd.response_to(codes.SYSTEM_ERROR, f"{type(exc).__name__}: {exc}")

    def _answer(self, cmd: RemotingCommand, response: RemotingCommand | bytes | None) -> None:
        self._inflight -= 1
        if response is not None and not cmd.flag & _ONEWAY and not self._closed:
            if type(response) is bytes:         # a whole frame the handler encoded (module doc)
                self._queue(response)
            else:
                response.opaque = cmd.opaque  # type: ignore[union-attr]
                response.flag = (response.flag | _RESPONSE) & ~_ONEWAY  # type: ignore[union-attr]
                try:
                    self._queue(encode_command(response))  # type: ignore[arg-type]
                except UserError as exc:
                    log.warning("response to %s from %s cannot be encoded: %s", cmd.describe(), self.peer, exc)
        if self._backlog and not self._in_read:
            self._loop.call_soon(self._pump)

    def _answer_all(self, cmds: list[RemotingCommand], responses: list[RemotingCommand | bytes | None]) -> None:
        """``_answer`` for each of a batch's requests, in order; prebuilt frames (the usual send
        answers) are queued in one pass, with one flush and one pump scheduled for all of them."""
        out, queued = self._out, 0
        for one, response in zip(cmds, responses):
            if type(response) is bytes and not one.flag & _ONEWAY and not self._closed:
                self._inflight -= 1
                out.append(response)
                queued += len(response)
            else:
                self._answer(one, response)
        if queued:
            self._out_bytes += queued
            if not self._in_read and self._flush_handle is None:
                self._flush_handle = self._loop.call_soon(self._flush)
        if self._backlog and not self._in_read:
            self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        """Run what the backlog holds while there is room; read again once it is empty."""
        if self._closed:
            return
        self._in_read = True
        try:
            self._run_backlog()
        finally:
            self._in_read = False
            self._flush()
        if not self._backlog and (self._limits is None or self._room):
            self._resume_reading()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None and not self._closed:
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None and not self._closed:
            self._reading_paused = False
            self._transport.resume_reading()

    # --- sending ---------------------------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        """Queue one encoded frame; the end of this loop turn (or of the read) writes them all."""
        self._out.append(data)
        self._out_bytes += len(data)
        if not self._in_read and self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        out = self._out
        if not out or self._transport is None:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._out_bytes = 0
        if self._closed and self._transport.is_closing():
            return
        self.writes += 1
        try:
            self._transport.write(data)
        except (ConnectionError, RuntimeError) as exc:
            self.close(f"write failed: {exc}")
            return
        if self._limits is not None:
            self._update_room()

    async def send(self, cmd: RemotingCommand) -> None:
        """Write one command (as is) with backpressure."""
        if self._closed:
            raise RemotingClosedError(f"connection to {self.peer} is closed: {self.close_reason}")
        self._queue(encode_command(cmd))
        if self._write_paused or self._out_bytes > self._write_high:
            self._flush()
            while self._write_paused and not self._closed:
                waiter = self._loop.create_future()
                self._drain_waiters.append(waiter)
                await waiter
            if self._closed:
                raise RemotingClosedError(f"connection to {self.peer} is closed: {self.close_reason}")

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def output_bytes(self) -> int:
        """Response bytes the peer has not taken yet (queued here and in the transport)."""
        try:
            buffered = self._transport.get_write_buffer_size() if self._transport is not None else 0
        except (AttributeError, RuntimeError):
            buffered = 0
        return self._out_bytes + buffered

    def _update_room(self) -> bool:
        """With limits: whether the queued output is under ``output_bytes_max``; when it is not,
        reading stops and a timer looks again every ``ROOM_POLL_S`` (the transport drains
        without telling us)."""
        limits = self._limits
        if limits is None:
            return True
        if self._closed or self.output_bytes() <= limits.output_bytes_max:
            self._output_over_since_s = None
            if not self._room:
                self._room = True
                if self._room_timer is not None:
                    self._room_timer.cancel()
                    self._room_timer = None
                self._loop.call_soon(self._pump)
            return True
        if self._output_over_since_s is None:
            self._output_over_since_s = self._loop.time()
        self._room = False
        self._pause_reading()
        if self._room_timer is None:
            self._room_timer = self._loop.call_later(ROOM_POLL_S, self._poll_room)
        return False

    def _poll_room(self) -> None:
        self._room_timer = None
        self._update_room()

    def check_timeouts(self, now_s: float) -> None:
        """Close this channel when one of its limits' timeouts passed (called by the server's sweeper)."""
        limits = self._limits
        if limits is None or self._closed:
            return
        self._update_room()
        if self._frame_started_s is not None and now_s - self._frame_started_s > limits.frame_timeout_ms / 1000:
            self._close_for(f"a frame was not completed within {limits.frame_timeout_ms} ms")
        elif self._output_over_since_s is not None and \
                now_s - self._output_over_since_s > limits.output_stall_timeout_ms / 1000:
            self._close_for(f"over {limits.output_bytes_max} bytes of responses not read for "
                            f"{limits.output_stall_timeout_ms} ms")
        elif not self._inflight and not self._backlog and self._frame_started_s is None and \
                now_s - self.last_read_s > limits.idle_timeout_ms / 1000:
            self._close_for(f"idle for {limits.idle_timeout_ms} ms")

    def _close_for(self, reason: str) -> None:
        log.info("closing the connection from %s: %s", self.peer, reason)
        self.close(reason)

    async def request(self, cmd: RemotingCommand, timeout_ms: int) -> RemotingCommand:
        if self.credentials is not None:
            self.credentials.apply(cmd)
        if self._closed:
            raise RemotingClosedError(f"connection to {self.peer} is closed: {self.close_reason}")
        opaque = cmd.opaque = self._next_opaque()
        cmd.flag &= ~(_RESPONSE | _ONEWAY)
        future = self._loop.create_future()
        self._pending[opaque] = future
        # a timer on the future instead of asyncio.wait_for, which wraps every request in a Task
        timer = self._loop.call_later(timeout_ms / 1000, _expire, future)
        try:
            await self.send(cmd)
            return await future
        except _Expired:
            raise RemotingTimeoutError(f"{cmd.describe()} to {self.peer}: no response within {timeout_ms} ms") from None
        finally:
            timer.cancel()
            self._pending.pop(opaque, None)

    def next_opaque(self) -> int:
        """A fresh opaque for a frame the caller encodes itself (``submit``)."""
        return self._next_opaque()

    @property
    def writable(self) -> bool:
        """False while the transport holds more than ``write_buffer_bytes_high`` (see ``wait_writable``)."""
        return not self._write_paused

    async def wait_writable(self) -> None:
        """Until the transport is under ``write_buffer_bytes_high`` again; RemotingClosedError when closed."""
        while self._write_paused and not self._closed:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._closed:
            raise RemotingClosedError(f"connection to {self.peer} is closed: {self.close_reason}")

    def submit(self, opaque: int, frame: bytes, timeout_ms: int) -> asyncio.Future:
        """Queue ``frame``, a whole request frame the caller encoded with ``opaque`` from
        ``next_opaque()`` (no signing: a caller with credentials uses ``request``). The future gets
        the response, or RemotingClosedError, or RemotingTimeoutError once ``timeout_ms`` passed.
        Pipelining: nothing is awaited here (see ``writable`` for backpressure). Deadlines are
        checked in submission order every ``SUBMIT_CHECK_S``: a request with a shorter timeout
        than one submitted before it may fail that much later."""
        future = self._loop.create_future()
        if self._closed:
            future.set_exception(RemotingClosedError(f"connection to {self.peer} is closed: {self.close_reason}"))
            return future
        self._pending[opaque] = future
        self._deadlines.append((self._loop.time() + timeout_ms / 1000, opaque, timeout_ms))
        if self._deadline_timer is None:
            self._deadline_timer = self._loop.call_later(SUBMIT_CHECK_S, self._check_deadlines)
        self._queue(frame)
        return future

    def _check_deadlines(self) -> None:
        self._deadline_timer = None
        now, deadlines, pending = self._loop.time(), self._deadlines, self._pending
        while deadlines and (deadlines[0][0] <= now or deadlines[0][1] not in pending):
            _, opaque, timeout_ms = deadlines.popleft()
            future = pending.get(opaque)
            if future is not None and not future.done() and not future.cancelled():
                del pending[opaque]
                future.set_exception(RemotingTimeoutError(
                    f"request opaque={opaque} to {self.peer}: no response within {timeout_ms} ms"))
        if deadlines and not self._closed:
            self._deadline_timer = self._loop.call_later(SUBMIT_CHECK_S, self._check_deadlines)

    async def oneway(self, cmd: RemotingCommand) -> None:
        if self.credentials is not None:
            self.credentials.apply(cmd)
        cmd.opaque = self._next_opaque()
        cmd.flag = (cmd.flag | _ONEWAY) & ~_RESPONSE
        await self.send(cmd)

    def _next_opaque(self) -> int:
        opaque = next(self._opaques)
        if opaque >= (1 << 31) - 1:
            self._opaques = itertools.count(1)
        return opaque

    # --- closing ---------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    def abort(self) -> None:
        """Drop the connection at once (nothing queued is sent)."""
        if self._transport is not None:
            self._transport.abort()
        self.close("aborted")

    def close(self, reason: str = "closed locally") -> None:
        if self._closed:
            return
        self._flush()                             # what was answered before still goes out
        self._closed = True
        self.close_reason = reason
        self._closed_event.set()
        self._account_partial(0)
        self._backlog.clear()
        if self._room_timer is not None:
            self._room_timer.cancel()
            self._room_timer = None
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._deadlines.clear()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RemotingClosedError(f"connection to {self.peer} closed: {reason}"))
                # A waiter still there gets it (await, callbacks); one that went away is no error to
                # log ("Future exception was never retrieved" on stderr of a drill that closed).
                future.exception()
        self._pending.clear()
        self._wake_writers()
        if self._transport is not None:
            self._transport.close()
        else:
            self._lost.set_result(None)
        for future in list(self._waiting.values()):     # as Task.cancel(): the awaited future is cancelled
            if future is not None:
                future.cancel()
        if self._on_closed is not None:
            self._on_closed(self)

    async def aclose(self, reason: str = "closed locally") -> None:
        self.close(reason)
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), CLOSE_FLUSH_S)
        except asyncio.TimeoutError:     # a peer that does not read: give up what is left
            if self._transport is not None:
                self._transport.abort()
        deadline = self._loop.time() + CLOSE_FLUSH_S
        while self._waiting and self._loop.time() < deadline:     # handlers unwinding their cancellation
            await asyncio.sleep(0.01)

    # --- the partial-frame budget ----------------------------------------------------------------

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


class _Expired(Exception):
    """A request's timer went off before its response came (``Channel.request``)."""


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(_Expired())


def unsupported(cmd: RemotingCommand) -> RemotingCommand:
    return cmd.response_to(codes.REQUEST_CODE_NOT_SUPPORTED,
                           f"request type {cmd.code} not supported ({codes.request_name(cmd.code)})")
