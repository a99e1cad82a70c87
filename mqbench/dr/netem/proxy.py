"""``DelayProxy``: an asyncio userspace TCP proxy that applies a link model to every connection.

It listens on one address, and for every accepted connection opens one to the target and pumps
bytes both ways through a ``link.Pipe`` per direction (``forward``: client to target, ``backward``:
target to client). When a direction's link adds nothing and nothing is queued, bytes go straight
through (the fast path: one read, one write, the writer's own backpressure). Otherwise the reader
queues chunks (at most ``capacity_bytes`` per direction; it stops reading when the pipe is full)
and a writer task writes each chunk when it is due.

Runtime control (the drills' "control API", called on the proxy's event loop):

* ``cut(reset=False)``: partition. Existing streams stall (nothing is delivered, queued bytes are
  kept); new connections are accepted but not connected to the target until the heal. With
  ``reset=True`` every open connection is aborted instead and new ones are closed at once.
* ``heal()``: deliver again; stalled bytes arrive one link delay after the heal, in order.
* ``set_links(forward=, backward=)``: change latency, jitter or loss for all current and later
  connections.

``stats()`` counts bytes each way, connections accepted and segments "retransmitted" by the loss
model: the drills' cross-room bytes per message come from it. No process-wide state: the clock
(``clock_ms``, integer ms) and the rng seed are given by the caller.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass
from typing import Callable

from mqbench.errors import UserError

from .link import NO_DELAY, LinkSettings, Pipe

READ_CHUNK_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 5.0


@dataclass
class ProxyStats:
    bytes_forward: int = 0  # client -> target, delivered
    bytes_backward: int = 0  # target -> client, delivered
    connections: int = 0  # accepted so far
    connections_open: int = 0
    connect_failures: int = 0  # the target refused or did not answer
    retransmissions: int = 0  # segments the loss model resent (closed and open connections)


class _Connection:
    def __init__(self, proxy: "DelayProxy", client_reader, client_writer):
        self.proxy = proxy
        self.client_reader, self.client_writer = client_reader, client_writer
        self.target_writer: asyncio.StreamWriter | None = None
        self.forward = Pipe(proxy.forward, proxy._rng_for("f"), proxy.capacity_bytes)
        self.backward = Pipe(proxy.backward, proxy._rng_for("b"), proxy.capacity_bytes)
        if proxy.is_cut:
            self.forward.cut(proxy.now_ms())
            self.backward.cut(proxy.now_ms())
        self.wake = {id(self.forward): asyncio.Event(), id(self.backward): asyncio.Event()}
        self.room = {id(self.forward): asyncio.Event(), id(self.backward): asyncio.Event()}
        self.tasks: list[asyncio.Task] = []

    def poke(self) -> None:
        for event in self.wake.values():
            event.set()

    async def run(self) -> None:
        proxy = self.proxy
        try:
            while proxy.is_cut:  # a partition: the SYN would not get through until the heal
                await proxy._healed.wait()
            try:
                target_reader, self.target_writer = await asyncio.wait_for(
                    asyncio.open_connection(*proxy.target), CONNECT_TIMEOUT_S)
            except (OSError, asyncio.TimeoutError):
                proxy._stats.connect_failures += 1
                return
            loop = asyncio.get_running_loop()
            self.tasks = [
                loop.create_task(self._read(self.client_reader, self.forward)),
                loop.create_task(self._write(self.target_writer, self.forward)),
                loop.create_task(self._read(target_reader, self.backward)),
                loop.create_task(self._write(self.client_writer, self.backward)),
            ]
            # The connection ends when both writers delivered their end of stream, or anything fails.
            writers = {self.tasks[1], self.tasks[3]}
            pending = set(self.tasks)
            while writers & pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(t.exception() is not None for t in done if not t.cancelled()):
                    break
        finally:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            self.abort()
            proxy._stats.retransmissions += (self.forward.model.retransmissions
                                             + self.backward.model.retransmissions)

    def abort(self) -> None:
        for writer in (self.client_writer, self.target_writer):
            if writer is not None:
                writer.transport.abort()

    async def _read(self, reader: asyncio.StreamReader, pipe: Pipe) -> None:
        writer = self.target_writer if pipe is self.forward else self.client_writer
        wake, room = self.wake[id(pipe)], self.room[id(pipe)]
        while True:
            while not pipe.has_room():
                room.clear()
                await room.wait()
            data = await reader.read(READ_CHUNK_BYTES)
            if pipe.passthrough():
                pipe.count_passthrough(len(data))
                self.proxy._count(pipe is self.forward, len(data))
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    wake.set()
                    return
                writer.write(data)
                await writer.drain()
                continue
            pipe.push(self.proxy.now_ms(), data)
            wake.set()
            if not data:
                return

    async def _write(self, writer: asyncio.StreamWriter, pipe: Pipe) -> None:
        wake, room = self.wake[id(pipe)], self.room[id(pipe)]
        while True:
            for chunk in pipe.pop_due(self.proxy.now_ms()):
                self.proxy._count(pipe is self.forward, len(chunk))
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()
                room.set()
            if pipe.empty and pipe.bytes_in == pipe.bytes_out and self._reader_done(pipe):
                return  # the fast path delivered the end of stream
            wake.clear()
            due = pipe.next_due_ms()
            if due is None:
                await wake.wait()
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), max(0, due - self.proxy.now_ms()) / 1000)

    def _reader_done(self, pipe: Pipe) -> bool:
        task = self.tasks[0] if pipe is self.forward else self.tasks[2]
        return task.done()


class DelayProxy:
    """A TCP proxy from ``listen`` to ``target`` through a link model (see the module docstring).

    ``forward`` applies to bytes from the connecting client to the target, ``backward`` to the
    answers (defaults to ``forward``: a symmetric link). ``seed`` seeds every connection's rng
    (``Random(f"{seed}/{n}/{direction}")``), so a run replays from its seed. ``clock_ms`` returns
    integer ms (defaults to the event loop's monotonic clock).
    """

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], *, forward: LinkSettings = NO_DELAY,
                 backward: LinkSettings | None = None, seed: int | str = 0, capacity_bytes: int = 1 << 20,
                 clock_ms: Callable[[], int] | None = None, name: str = ""):
        if capacity_bytes < READ_CHUNK_BYTES:
            raise UserError(f"proxy capacity_bytes must be at least {READ_CHUNK_BYTES}, not {capacity_bytes}")
        self.listen, self.target = listen, target
        self.forward, self.backward = forward, backward if backward is not None else forward
        self.seed = seed
        self.capacity_bytes = capacity_bytes
        self.name = name or f"{listen[0]}:{listen[1]}->{target[0]}:{target[1]}"
        self._clock_ms = clock_ms
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task] = set()
        self._stats = ProxyStats()
        self._accepted = 0
        self._cut = False
        self._reset_on_cut = False
        self._healed = asyncio.Event()
        self._healed.set()

    def now_ms(self) -> int:
        if self._clock_ms is not None:
            return self._clock_ms()
        return int(asyncio.get_running_loop().time() * 1000)

    def _rng_for(self, direction: str) -> random.Random:
        return random.Random(f"{self.seed}/{self._accepted}/{direction}")

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port). Raises UserError if the address is taken."""
        try:
            self._server = await asyncio.start_server(self._accept, self.listen[0], self.listen[1])
        except OSError as exc:
            raise UserError(f"proxy {self.name}: cannot listen on {self.listen[0]}:{self.listen[1]}: {exc.strerror}") \
                from None
        self.listen = tuple(self._server.sockets[0].getsockname()[:2])
        return self.listen

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self, reset: bool = False) -> None:
        """Partition the link (stall, or abort every connection with ``reset=True``)."""
        self._cut, self._reset_on_cut = True, reset
        self._healed.clear()
        now = self.now_ms()
        for conn in list(self._connections):
            if reset:
                conn.abort()
            else:
                conn.forward.cut(now)
                conn.backward.cut(now)
                conn.poke()

    def heal(self) -> None:
        """End the partition; stalled bytes flow again, one link delay after now."""
        self._cut = False
        self._healed.set()
        now = self.now_ms()
        for conn in list(self._connections):
            conn.forward.heal(now)
            conn.backward.heal(now)
            conn.poke()

    def set_links(self, forward: LinkSettings | None = None, backward: LinkSettings | None = None) -> None:
        """New link settings for open and future connections (their ``cut`` field is ignored:
        use ``cut``/``heal``)."""
        now = self.now_ms()
        if forward is not None:
            self.forward = forward
        if backward is not None:
            self.backward = backward
        for conn in list(self._connections):
            for pipe, settings in ((conn.forward, self.forward), (conn.backward, self.backward)):
                pipe.set_settings(now, LinkSettings(**{**settings.to_dict(), "cut": self._cut}))
            conn.poke()

    def stats(self) -> ProxyStats:
        s = self._stats
        live = sum(c.forward.model.retransmissions + c.backward.model.retransmissions for c in self._connections)
        return ProxyStats(s.bytes_forward, s.bytes_backward, s.connections, len(self._connections),
                          s.connect_failures, s.retransmissions + live)

    def _count(self, forward: bool, size_bytes: int) -> None:
        if forward:
            self._stats.bytes_forward += size_bytes
        else:
            self._stats.bytes_backward += size_bytes

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._stats.connections += 1
        if self._cut and self._reset_on_cut:
            writer.transport.abort()
            return
        conn = _Connection(self, reader, writer)
        self._accepted += 1
        self._connections.add(conn)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await conn.run()
        except (OSError, asyncio.IncompleteReadError):
            pass  # a side reset the connection: the other side sees its connection end too
        except asyncio.CancelledError:
            # close() cancels this handler task; ending it normally keeps asyncio's stream callback,
            # which asks a finished handler task for its exception, from logging a spurious error.
            conn.abort()
        finally:
            self._connections.discard(conn)
            if task is not None:
                self._tasks.discard(task)

    async def close(self) -> None:
        """Stop listening and abort every open connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
