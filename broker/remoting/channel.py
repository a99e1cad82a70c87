"""One remoting connection as an ``asyncio.Protocol``, used by both ends (``server`` and ``client``).

A channel decodes every complete frame of one read in one pass (``FrameDecoder``), matches
responses to its own requests by opaque, and hands requests from the peer to ``on_request``.
Contracts:

* ``request(cmd, timeout_ms)`` assigns a fresh opaque, writes, and returns the response, or raises
  ``RemotingTimeoutError`` (the late response, if any, is dropped) or ``RemotingClosedError``.
* A ``sending.Receiver`` filed by ``submit_to`` whose class lists an answer's code in
  ``QUICK_CODES`` gets that answer with the other quick answers of its read, in one
  ``answered_together`` call made before the read's other frames are handled (no command built
  for them); the answers before a malformed frame in the same read are still handed over, then
  the channel closes.
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

The class is assembled from one module per concern: this one holds the connection's life (its
state, reading and decoding, the sweeper's timeouts, closing, the partial-frame budget);
``answering`` runs the peer's requests and answers them; ``sending`` holds the output (coalesced
writes, backpressure, the output limit) and the channel's own requests.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import logging
from typing import Any, Awaitable, Callable

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.formats.frame import FRAME_BYTES_MAX_DEFAULT, FrameDecoder
from mqbench.broker.remoting.answering import Answering, unsupported
from mqbench.broker.remoting.limits import PartialFrameBudget, ServerLimits
from mqbench.broker.remoting.sending import RemotingClosedError, RemotingTimeoutError, Sending
from mqbench import hop_trace
from mqbench.errors import PeerError

__all__ = ["Channel", "RemotingClosedError", "RemotingTimeoutError", "RequestHandler", "BatchHandler",
           "unsupported", "WRITE_BUFFER_BYTES_HIGH_DEFAULT", "INFLIGHT_REQUESTS_MAX_DEFAULT", "CLOSE_FLUSH_S"]

log = logging.getLogger(__name__)

RequestHandler = Callable[[RemotingCommand, "Channel"], Awaitable["RemotingCommand | None"]]
#: ``on_batch(cmds, channel)``: one response (a command, an encoded frame, or None) per request
BatchHandler = Callable[[list[RemotingCommand], "Channel"], Awaitable[list["RemotingCommand | bytes | None"]]]

WRITE_BUFFER_BYTES_HIGH_DEFAULT = 4 * 1024 * 1024
INFLIGHT_REQUESTS_MAX_DEFAULT = 1024
CLOSE_FLUSH_S = 1.0        # how long ``aclose`` lets the transport hand over what it holds
_RESPONSE = codes.FLAG_RESPONSE


class Channel(Answering, Sending, asyncio.Protocol):
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
        self._trace_key: str | None = None       # MQBENCH_HOP_TRACE: this connection's key
        self._trace_out: list[tuple[str, int]] = []   # and the marks its next write completes
        #: transport writes made: one per loop turn that produced output (frames are coalesced)
        self.writes = 0

    # --- the protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream transport (TCP)
        self._transport.set_write_buffer_limits(high=self._write_high)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.last_read_s = self._loop.time()
        self._trace_key = hop_trace.channel_key(transport)   # two lookups per connection, traced or not
        if self._on_open is not None:
            self._on_open(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(f"read failed: {exc}" if exc is not None else "peer closed the connection")
        if not self._lost.done():
            self._lost.set_result(None)

    def eof_received(self) -> bool:
        return False            # the transport closes itself; connection_lost follows

    def data_received(self, data: bytes) -> None:
        self.last_read_s = self._loop.time()
        pending = self._pending
        taken: list = []        # the quick answers' receivers (module doc), out of ``pending``
        try:
            # only a table with requests in it can have answers to take; a traced hop marks each answer
            commands = self._decoder.feed(data, pending, taken) if pending and not hop_trace.ON \
                else self._decoder.feed(data)
        except PeerError as exc:
            if taken:       # whole answers before the bad frame: they were answered
                type(taken[0]).answered_together(taken)
            reason = f"malformed frame from {self.peer}: {exc}"
            log.warning("%s; closing that connection", reason)
            self.close(reason)
            return
        if taken:
            type(taken[0]).answered_together(taken)
        if self._budget is not None and not self._track_partial(bool(commands) or bool(taken)):
            reason = (f"incomplete frames of all connections exceed {self._budget.bytes_max} bytes "
                      f"({self._decoder.pending_bytes} of them from {self.peer})")
            log.warning("%s; closing that connection", reason)
            self.close(reason)
            return
        if not commands:
            return
        self._in_read = True
        try:
            backlog = self._backlog
            if hop_trace.ON:
                for cmd in commands:
                    hop_trace.mark("a" if cmd.flag & _RESPONSE else "r", self._trace_key, cmd.opaque)
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

    # --- the server's sweeper --------------------------------------------------------------------

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
