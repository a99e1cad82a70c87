"""Driver worker processes (multiprocessing, spawn) and the parent's side of their pipe protocol.

Each worker is a fresh interpreter (spawn: nothing of the parent's event loop or sockets leaks in)
running one driver (``producer_driver`` or ``consumer_driver``) under ``asyncio.run``. A worker's
command line repeats the parent's interpreter flags (multiprocessing does that): ``python -B`` there
means the parent runs with PYTHONDONTWRITEBYTECODE, which is the user's to choose and is kept. Its
only cost is start-up: without cached bytecode a worker compiles its modules, about 0.13 s of CPU,
before the run's CPU figures start counting. Parent and worker talk over one
``multiprocessing.Pipe`` of pickled dicts:

==========  ==================  ==============================================================
direction   message             meaning
==========  ==================  ==============================================================
to worker   ``{"op": "start",   the run's clock starts (every worker gets the same start)
            "start_ns"}``
to worker   ``{"op": "rate",    a max-rate search sets the total rate from ``from_ns`` on
            "rate_per_s",
            "from_ns"}``
to worker   ``{"op": "stop"}``  end now (producers still wait for their acks)
from worker ``ready``           set up (clients started, routes known); waiting for start
from worker ``progress``        cumulative counters every ``progress_ms``
from worker ``done``            the worker's ``RunMetrics`` (``to_dict``) and totals; it exits
from worker ``error``           it failed: ``message`` says why (an ``MqbenchError`` text or the
                                exception's type and text); it exits
==========  ==================  ==============================================================

A worker whose pipe closes without ``done`` or ``error`` (killed, crashed) is reported as failed
with its exit code. A worker also ends when the parent's end of the pipe closes, or on SIGTERM
(as on a stop); it ignores SIGINT (a terminal's Ctrl-C reaches the whole group: the parent decides).
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field

from mqbench.errors import MqbenchError, UserError
from mqbench.event_loop import use_event_loop
from mqbench.gc_pauses import settle_after_startup
from mqbench import hop_trace
from mqbench.loop_stalls import watch
from mqbench.profiling import start as start_profile

log = logging.getLogger(__name__)


# --- the worker's side ---------------------------------------------------------------------------


def worker_main(spec: dict, conn) -> None:
    """Entry point of a worker process (must stay importable at module level for spawn)."""
    logging.basicConfig(level=logging.ERROR, format=f"mqbench {spec['role']} worker %(levelname)s %(message)s")
    try:
        use_event_loop()
        asyncio.run(_worker(spec, conn))
    except BaseException as exc:  # noqa: BLE001 - everything must reach the parent as one message
        _send(conn, {"type": "error", "role": spec["role"], "message": _describe(exc)})
    finally:
        conn.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MqbenchError):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {exc} ({traceback.format_exc(limit=3).splitlines()[-2].strip()})"


def _blocking(conn) -> None:
    """Put ``conn``'s descriptor back in blocking mode before a whole message is sent or read on it:
    uvloop's ``add_reader`` (libuv's ``uv_poll_init``) makes it non-blocking and leaves it so, and a
    message larger than the socket buffer then stopped half-written (``BlockingIOError``), or was
    read half, as if the other end had ended."""
    os.set_blocking(conn.fileno(), True)


def _send(conn, message: dict) -> None:
    try:
        _blocking(conn)
        conn.send(message)
    except (OSError, EOFError):
        pass  # the parent is gone; nothing to tell


async def _worker(spec: dict, conn) -> None:
    from mqbench.run.consumer_driver import ConsumerDriver
    from mqbench.run.producer_driver import ProducerDriver

    loop = asyncio.get_running_loop()
    driver_class = ProducerDriver if spec["role"] == "producer" else ConsumerDriver
    driver = driver_class(spec, lambda message: _send(conn, message), clock_ns=driver_clock(spec))
    # this process is the worker's own: tune its collector (and probe its loop when asked)
    profiles = []   # MQBENCH_PROFILE=DIR + MQBENCH_PROFILE_CLIENTS=1 (mqbench.profiling): stopped when done
    driver.settle = lambda: (settle_after_startup(), watch(spec["role"], loop),
                             profiles.append(start_profile(spec["role"], loop, client=True)),
                             hop_trace.start(spec["role"]))

    def on_readable() -> None:
        try:
            _blocking(conn)
            message = conn.recv()
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            message = {"op": "stop"}  # the parent went away: end cleanly
        driver.control(message)

    loop.add_reader(conn.fileno(), on_readable)
    # SIGTERM (``timeout`` signals the whole process group; ``terminate`` after the run) ends the
    # driver as a stop does: it reports ``done`` rather than dying without a result mid-clean-up
    loop.add_signal_handler(signal.SIGTERM, driver.control, {"op": "stop"})
    try:
        result = await driver.run()
    finally:
        loop.remove_reader(conn.fileno())
        for profile in profiles:
            if profile is not None:
                profile.stop()
    driver.report(result)   # the driver's report: ``done`` carries the worker's CPU too (probes.with_own_cpu)


def driver_clock(spec: dict):
    """The clock a worker runs on: this machine's monotonic clock, or, on another machine (a Ray
    node, ``mqbench.ray``), that clock moved by ``spec["clock_offset_ns"]`` (node minus driver) so that
    ``start_ns``, stamps and windows are on the driver's clock to within the offset's uncertainty."""
    offset_ns = int(spec.get("clock_offset_ns") or 0)
    if not offset_ns:
        return time.monotonic_ns
    return lambda: time.monotonic_ns() - offset_ns


# --- the parent's side ---------------------------------------------------------------------------


@dataclass
class WorkerHandle:
    name: str
    role: str
    process: multiprocessing.Process
    conn: object
    ready: bool = False
    done: dict | None = None
    error: str | None = None
    last_progress: dict | None = None
    closed: bool = False

    @property
    def finished(self) -> bool:
        return self.done is not None or self.error is not None


@dataclass
class WorkerSet:
    """Spawned workers and the messages they send, read on the parent's event loop."""

    workers: list[WorkerHandle] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.changed: asyncio.Event | None = None  # set on every message; wait_until clears it
        self.on_message = None  # callback(worker, message) for every message, before it is queued

    def spawn(self, specs: list[dict]) -> None:
        """Start a worker per spec. They start with SIGINT ignored: a terminal's Ctrl-C reaches the
        whole process group, and the parent, not each worker, decides how the run ends (it stops
        or terminates them; a worker whose parent vanished ends on its pipe's end-of-file)."""
        context = multiprocessing.get_context("spawn")
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            for spec in specs:
                parent_end, child_end = context.Pipe(duplex=True)
                name = f"{spec['role']}-{spec['worker_index']}"
                process = context.Process(target=worker_main, args=(spec, child_end), name=f"mqbench-{name}",
                                          daemon=True)
                process.start()
                child_end.close()
                self.workers.append(WorkerHandle(name, spec["role"], process, parent_end))
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, previous)

    def attach(self) -> None:
        """Start reading every worker's pipe on the running loop (call from inside the loop)."""
        loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        for worker in self.workers:
            loop.add_reader(worker.conn.fileno(), self._on_readable, worker)

    def _on_readable(self, worker: WorkerHandle) -> None:
        try:
            _blocking(worker.conn)
            message = worker.conn.recv()
        except (EOFError, OSError):
            self._close(worker)
            if not worker.finished:
                worker.process.join(timeout=2)
                worker.error = f"{worker.name} ended without a result (exit code {worker.process.exitcode})"
                self.changed.set()
            return
        kind = message.get("type")
        if kind == "ready":
            worker.ready = True
        elif kind == "progress":
            worker.last_progress = message
        elif kind == "done":
            worker.done = message
        elif kind == "error":
            worker.error = f"{worker.name}: {message.get('message')}"
        if self.on_message is not None:
            self.on_message(worker, message)
        self.changed.set()

    def _close(self, worker: WorkerHandle) -> None:
        if not worker.closed:
            worker.closed = True
            try:
                asyncio.get_running_loop().remove_reader(worker.conn.fileno())
            except (RuntimeError, ValueError, OSError):
                pass

    def of_role(self, role: str) -> list[WorkerHandle]:
        return [w for w in self.workers if w.role == role]

    def send(self, workers: list[WorkerHandle], message: dict) -> None:
        for worker in workers:
            if not worker.finished and not worker.closed:
                try:
                    _blocking(worker.conn)
                    worker.conn.send(message)
                except (OSError, EOFError, BrokenPipeError):
                    pass

    def failure(self) -> str | None:
        for worker in self.workers:
            if worker.error:
                return worker.error
        return None

    async def wait_until(self, predicate, timeout_s: float, what: str) -> None:
        """Wait for ``predicate()`` while handling messages; UserError on a worker error or timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not predicate():
            failure = self.failure()
            if failure:
                raise UserError(f"driver failed: {failure}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise UserError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))
            except asyncio.TimeoutError:
                pass
        failure = self.failure()
        if failure:
            raise UserError(f"driver failed: {failure}")

    def terminate(self, timeout_s: float = 5.0) -> None:
        """End every worker process still running (SIGTERM, then SIGKILL) and close the pipes."""
        for worker in self.workers:
            try:
                asyncio.get_running_loop()
                self._close(worker)
            except RuntimeError:
                pass
            worker.process.join(timeout=timeout_s if worker.finished else 0.1)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=timeout_s)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=timeout_s)
            try:
                worker.conn.close()
            except OSError:
                pass
