"""Running the peer's requests on a ``Channel`` and answering them (the ``Answering`` mixin).

The contracts are in ``channel``'s module doc: requests run at once inside the read, stepped
without a Task; at most ``inflight_requests_max`` in progress, the rest kept in the backlog while
reading is paused; consecutive ``batch_codes`` requests go to ``on_batch`` together; a handler's
response gets the request's opaque and the response flag, a prebuilt frame is queued as it is,
and a handler error answers SYSTEM_ERROR (an ``InvariantViolation`` closes the channel).

The mixin holds no state of its own: it works on the attributes ``Channel.__init__`` sets
(``_backlog``, ``_inflight``, ``_waiting``, ...) and calls the output side (``sending.Sending``).
"""
from __future__ import annotations

import asyncio
import functools
import logging
import types
from typing import Any

from mqbench import hop_trace
from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand, encode_command
from mqbench.broker.remoting.prompt import PromptFuture
from mqbench.errors import InvariantViolation, PeerError, UserError

log = logging.getLogger("mqbench.broker.remoting.channel")    # one logger for a connection's story

_RESPONSE = codes.FLAG_RESPONSE
_ONEWAY = codes.FLAG_ONEWAY


class Answering:
    """The request-running half of ``channel.Channel`` (module doc)."""

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
            if type(yielded) is PromptFuture:
                # its resolver steps this handler at once and the answer is written then (``prompt``)
                wake = yielded._prompt_wake = functools.partial(self._wake_now, cmd, coro)
            else:
                wake = functools.partial(self._wake, cmd, coro)
            yielded.add_done_callback(wake)
            if self._closed:
                yielded.cancel()
        else:
            waiting[coro] = None
            first = cmd[0] if type(cmd) is list else cmd
            self._loop.call_soon(self._step, cmd, coro, RuntimeError(
                f"handler for {first.describe()} yielded {yielded!r}, not a future"))

    def _wake(self, cmd: Any, coro: Any, _future: asyncio.Future) -> None:
        self._step(cmd, coro, None)     # the handler's await reads the future's result or error

    def _wake_now(self, cmd: Any, coro: Any, _future: asyncio.Future) -> None:
        """``_wake`` from a ``PromptFuture``'s resolver, and what the step answered written now, not
        a loop turn later (``prompt``: a committed send's answer waited one more loop iteration
        for its write; one write per resolved handler, as the output of a read gets)."""
        self._step(cmd, coro, None)
        if self._out and not self._in_read:
            if self._flush_handle is not None:
                self._flush_handle.cancel()
            self._flush()

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
            if hop_trace.ON:
                hop_trace.mark("o", self._trace_key, cmd.opaque)
                self._trace_out.append(("x", cmd.opaque))
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
                if hop_trace.ON:
                    hop_trace.mark("o", self._trace_key, one.opaque)
                    self._trace_out.append(("x", one.opaque))
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


def unsupported(cmd: RemotingCommand) -> RemotingCommand:
    return cmd.response_to(codes.REQUEST_CODE_NOT_SUPPORTED,
                           f"request type {cmd.code} not supported ({codes.request_name(cmd.code)})")
