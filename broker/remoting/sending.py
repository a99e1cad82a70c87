"""What a ``Channel`` writes: the coalesced output, write backpressure, the server's output limit,
and the channel's own requests (the ``Sending`` mixin).

The contracts are in ``channel``'s module doc: frames queued in one loop turn go out in one
transport write; ``send`` waits while the transport holds more than ``write_buffer_bytes_high``;
with limits, more than ``output_bytes_max`` of unread responses stops reading and running
requests; ``request`` / ``submit`` / ``oneway`` number their frames with fresh opaques and match
the responses (``data_received``) by them.

The mixin holds no state of its own: it works on the attributes ``Channel.__init__`` sets
(``_out``, ``_pending``, ``_deadlines``, ...).
"""
from __future__ import annotations

import asyncio
import itertools

from mqbench import hop_trace
from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand, encode_command

ROOM_POLL_S = 0.02
SUBMIT_CHECK_S = 0.1         # how often ``submit``'s deadlines are looked at
_RESPONSE = codes.FLAG_RESPONSE
_ONEWAY = codes.FLAG_ONEWAY


class RemotingClosedError(ConnectionError):
    """The connection closed (or was never open) before the response arrived."""


class RemotingTimeoutError(TimeoutError):
    """No response within the request's timeout."""


class Sending:
    """The output half of ``channel.Channel`` (module doc)."""

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

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
        if self._trace_out:
            for kind, opaque in self._trace_out:
                hop_trace.mark(kind, self._trace_key, opaque)
            self._trace_out.clear()
        if self._limits is not None:
            self._update_room()

    async def send(self, cmd: RemotingCommand) -> None:
        """Write one command (as is) with backpressure."""
        if self._closed:
            raise RemotingClosedError(f"connection to {self.peer} is closed: {self.close_reason}")
        self._queue(encode_command(cmd))
        if self._write_paused or self._out_bytes > self._write_high:
            self._flush()
            await self.wait_writable()

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
        self.submit_to(opaque, frame, timeout_ms, future)
        return future

    def submit_to(self, opaque: int, frame: bytes, timeout_ms: int, receiver) -> None:
        """``submit`` without a future per request: ``receiver`` (an ``asyncio.Future`` or a
        ``Receiver``) is what the pending table holds under ``opaque`` and what the answer, the
        timeout or the close is handed to, inside the read that took it (a load generator's
        per-connection table of its sends: ``Receiver`` below)."""
        if self._closed:
            receiver.set_exception(RemotingClosedError(f"connection to {self.peer} is closed: {self.close_reason}"))
            receiver.exception()       # retrieved: the receiver has it, nobody else must log it
            return
        self._pending[opaque] = receiver
        self._deadlines.append((self._loop.time() + timeout_ms / 1000, opaque, timeout_ms))
        if self._deadline_timer is None:
            self._deadline_timer = self._loop.call_later(SUBMIT_CHECK_S, self._check_deadlines)
        if hop_trace.ON:
            hop_trace.mark("q", self._trace_key, opaque)
            self._trace_out.append(("w", opaque))
        self._out.append(frame)             # _queue, inline (once per send of a load generator)
        self._out_bytes += len(frame)
        if not self._in_read and self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

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

    #: A fresh opaque for a frame the caller encodes itself (``submit``, ``submit_to``); the same
    #: function, not a call through it (a load generator takes one per send).
    next_opaque = _next_opaque


class Receiver:
    """What ``submit_to`` files under a request's opaque instead of a future: the channel calls
    ``set_result(response)`` from the read that took the answer, or ``set_exception(exc)``
    (``RemotingTimeoutError``, ``RemotingClosedError``) once, and never both; a subclass says
    what happens in ``answered(response)`` / ``failed(exc)``. It answers the few questions the
    channel asks a pending future (``done``, ``cancelled``, ``exception``) as a future that is
    still waiting would: a receiver is done only by being taken out of the table, which is what
    the channel does before handing it the outcome.

    Quick answers: an answer whose code is in the class's ``QUICK_CODES`` (a code that tells the
    receiver all it reads of the answer, e.g. a send's SEND_OK) is not built into a command nor
    handed over alone. The channel takes the quick answers of one read out of the table together
    (``frame.take_answer``: receivers of one class a read) and calls the class's
    ``answered_together(receivers)`` once, in the order their answers came, instead of
    ``set_result`` per answer. It must not raise (it runs inside the read)."""

    __slots__ = ()

    #: the answer codes ``answered_together`` takes for ``set_result`` (none here)
    QUICK_CODES: frozenset[int] = frozenset()

    @classmethod
    def answered_together(cls, receivers: list["Receiver"]) -> None:
        """A read's answers with codes in ``QUICK_CODES``, one receiver each (class doc)."""
        raise NotImplementedError

    def done(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def exception(self) -> None:
        return None

    def set_result(self, response: RemotingCommand) -> None:
        self.answered(response)

    def set_exception(self, exc: BaseException) -> None:
        self.failed(exc)

    def answered(self, response: RemotingCommand) -> None:
        raise NotImplementedError

    def failed(self, exc: BaseException) -> None:
        raise NotImplementedError


class _Expired(Exception):
    """A request's timer went off before its response came (``Channel.request``)."""


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(_Expired())
