"""This machine's physical limits, the denominators of every other figure mqbench reports.

Measured in the same run as the figures they divide (never copied from a spec sheet), in at most
about 30 s altogether:

* disk: sequential write + fdatasync bandwidth (1 MiB writes, fdatasync after each) and fdatasync
  calls per second (4 KiB writes, fdatasync after each) on the disk holding ``dir``;
* loopback TCP from Python with asyncio, as the broker uses it: small frames per second (100-byte
  frames, length-prefixed, each parsed by the receiver) and MB/s with 64 KiB frames; the receiver
  runs in another process, so the two ends use both cores like a client and a broker do;
* raw codec speed: each codec library called directly (no registry) on the same realistic payloads
  at batch 256.

Each measurement runs for a bounded time (``budget_ms``), never a fixed amount of work, so a slow
disk cannot stretch the command past its budget.

``mqbench run`` measures them by default (``limits_for_run``) and keeps them per machine for a day
in ``cache_file()``: ``$MQBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/mqbench``, else
``~/.cache/mqbench``, file ``limits-<hostname>.json``. A cache measured on another machine (host
name, CPU model or core count differ), on another disk, or over a day ago is measured again.
"""
from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import platform
import queue
import random
import struct
import tempfile
import time
from pathlib import Path
from typing import Callable

from mqbench.codecs.bench import direct_functions, make_batches
from mqbench.codecs.registry import parse_codec
from mqbench.workloads.bodies import generate_bodies

LIMITS_SCHEMA = "mqbench.limits/1"
MB = 1_000_000
_FRAME_HEADER = struct.Struct(">i")

def machine_info() -> dict:
    """What machine the figures were measured on (results carry this)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_bytes = None
    try:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    return {
        "cpu_model": cpu,
        "cpu_cores": os.cpu_count(),
        "memory_bytes": memory_bytes,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }

# --- disk ------------------------------------------------------------------------------------------

def measure_disk(directory: str | os.PathLike, budget_ms: int = 6000,
                 clock_ns: Callable[[], int] = time.perf_counter_ns) -> dict:
    """Sequential write+fdatasync MB/s and fdatasync calls/s in ``directory`` (a temp file, removed)."""
    directory = Path(directory)
    half_ns = budget_ms * 1_000_000 // 2
    chunk = os.urandom(1 << 20)
    small = os.urandom(4096)
    fd, path = tempfile.mkstemp(prefix=".mqbench-limits-", dir=directory)
    try:
        written = 0
        start = clock_ns()
        while clock_ns() - start < half_ns:
            written += os.write(fd, chunk)
            os.fdatasync(fd)
        write_ns = clock_ns() - start
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        syncs = 0
        start = clock_ns()
        while clock_ns() - start < half_ns:
            os.write(fd, small)
            os.fdatasync(fd)
            syncs += 1
        sync_ns = clock_ns() - start
    finally:
        os.close(fd)
        os.unlink(path)
    return {
        "disk_dir": str(directory),
        "disk_write_fdatasync_mb_per_s": written / MB / (write_ns / 1e9),
        "disk_fdatasync_per_s": syncs / (sync_ns / 1e9),
    }

# --- loopback TCP ----------------------------------------------------------------------------------

class _CountingReceiver(asyncio.Protocol):
    """Parses length-prefixed frames one by one, as a frame decoder does, and counts them."""

    def __init__(self, done: asyncio.Future):
        self.buffer = bytearray()
        self.frames = 0
        self.bytes = 0
        self.done = done

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        position = 0
        length_total = len(buffer)
        while length_total - position >= 4:
            (length,) = _FRAME_HEADER.unpack_from(buffer, position)
            if length_total - position - 4 < length:
                break
            _frame = bytes(buffer[position + 4 : position + 4 + length])
            position += 4 + length
            self.frames += 1
            self.bytes += length + 4
        del buffer[:position]

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result((self.frames, self.bytes))

def _receiver_process(port_queue, result_queue) -> None:
    """The receiving end, in a spawned process. It ends when the sender's connection closes, or
    without a result as soon as its parent is gone (``mqbench run`` killed with SIGKILL while it
    measures must leave no process behind, and nothing else would ever connect)."""
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        parent = multiprocessing.parent_process()
        if parent is not None:   # its sentinel turns readable when the parent dies, however it dies
            def orphaned() -> None:
                if not done.done():
                    done.set_exception(SystemExit(0))
            loop.add_reader(parent.sentinel, orphaned)
        server = await loop.create_server(lambda: _CountingReceiver(done), "127.0.0.1", 0)
        port_queue.put(server.sockets[0].getsockname()[1])
        try:
            frames, nbytes = await done
        except SystemExit:
            server.close()
            return
        result_queue.put((frames, nbytes, time.perf_counter_ns()))
        server.close()

    asyncio.run(serve())

class _Sender(asyncio.Protocol):
    """The sending side: ``can_write`` follows the transport's flow control, ``closed`` is done once
    the connection is lost (after ``close()``, once the transport's buffer has reached the kernel)."""

    def __init__(self):
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

async def _send_frames(port: int, frame_bytes: int, duration_ns: int) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    transport, sender = await loop.create_connection(_Sender, "127.0.0.1", port)
    frame = _FRAME_HEADER.pack(frame_bytes) + os.urandom(frame_bytes)
    sent = 0
    start = time.perf_counter_ns()
    deadline = start + duration_ns
    while time.perf_counter_ns() < deadline:
        for _ in range(64):  # check the clock every 64 frames, not every frame
            transport.write(frame)
        sent += 64
        if not sender.can_write.is_set():
            await sender.can_write.wait()
    # close() only starts the flush of what the transport still buffers (up to its high-water mark,
    # many 64 KiB frames): wait for it, or the loop ends with frames unsent and a socket the
    # receiver never sees closed (it then waited for them until the parent's 60 s ran out)
    transport.close()
    await asyncio.wait_for(sender.closed, timeout=30)
    return sent, start

def _measure_stream(frame_bytes: int, duration_ms: int) -> tuple[float, float]:
    """(frames/s, MB/s) of one connection sending ``frame_bytes`` frames to another process."""
    context = multiprocessing.get_context("spawn")
    port_queue, result_queue = context.Queue(), context.Queue()
    receiver = context.Process(target=_receiver_process, args=(port_queue, result_queue), daemon=True)
    receiver.start()
    try:
        port = port_queue.get(timeout=30)
        sent, start_ns = asyncio.run(_send_frames(port, frame_bytes, duration_ms * 1_000_000))
        try:
            frames, nbytes, end_ns = result_queue.get(timeout=60)
        except queue.Empty:
            raise RuntimeError(f"the loopback receiver process gave no count within 60 s of the sender's end "
                               f"({frame_bytes}-byte frames; alive: {receiver.is_alive()})") from None
    finally:
        receiver.join(timeout=10)
        if receiver.is_alive():
            receiver.kill()
    if frames != sent:
        raise RuntimeError(f"loopback receiver counted {frames} frames, {sent} were sent")
    seconds = (end_ns - start_ns) / 1e9
    return frames / seconds, nbytes / MB / seconds

def measure_loopback(budget_ms: int = 6000) -> dict:
    """Loopback TCP frames/s with 100-byte frames and MB/s with 64 KiB frames."""
    small_fps, _small_mbps = _measure_stream(100, budget_ms // 2)
    _large_fps, large_mbps = _measure_stream(64 * 1024, budget_ms // 2)
    return {"loopback_small_frames_per_s": small_fps, "loopback_frame_bytes_small": 100,
            "loopback_mb_per_s": large_mbps, "loopback_frame_bytes_large": 64 * 1024}

# --- raw codec speed -------------------------------------------------------------------------------

RAW_CODEC_SPECS = ("zlib:5", "zstd:3", "lz4", "snappy")

def measure_codecs(budget_ms: int = 8000, profile: str = "orders", batch_msgs: int = 256, seed: int = 1,
                   clock_ns: Callable[[], int] = time.perf_counter_ns) -> list[dict]:
    """Each codec library called directly on ``profile`` payloads at ``batch_msgs`` per batch."""
    bodies = generate_bodies(profile, 2048, random.Random(seed))
    batches = make_batches(bodies, batch_msgs)
    raw = sum(len(b) for b in batches)
    per_direction_ns = budget_ms * 1_000_000 // (2 * len(RAW_CODEC_SPECS))
    rows = []
    for spec in RAW_CODEC_SPECS:
        compress, decompress = direct_functions(parse_codec(spec))
        packed = [compress(b) for b in batches]
        speeds = []
        for function, inputs in ((compress, batches), (decompress, packed)):
            passes, start = 0, clock_ns()
            while passes == 0 or clock_ns() - start < per_direction_ns:
                for item in inputs:
                    function(item)
                passes += 1
            speeds.append(raw * passes / MB / ((clock_ns() - start) / 1e9))
        rows.append({"codec": spec, "batch_msgs": batch_msgs, "payload": profile,
                     "compress_mb_per_s": speeds[0], "decompress_mb_per_s": speeds[1],
                     "compression_ratio": raw / sum(len(p) for p in packed)})
    return rows

def measure_all(directory: str | os.PathLike, budget_ms: int = 24000) -> dict:
    """Every limit, within about ``budget_ms`` plus process start-up."""
    quarter = budget_ms // 4
    return {
        "machine": machine_info(),
        **measure_disk(directory, quarter),
        **measure_loopback(quarter),
        "codecs": measure_codecs(budget_ms - 2 * quarter),
    }

# --- the per-machine cache used by `mqbench run` -----------------------------------------------------

CACHE_MAX_AGE_S = 24 * 3600

def cache_dir() -> Path:
    """Where measured limits are kept: ``$MQBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/mqbench``, else
    ``~/.cache/mqbench``."""
    if os.environ.get("MQBENCH_CACHE_DIR"):
        return Path(os.environ["MQBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mqbench"

def cache_file(machine: dict, directory: Path | None = None) -> Path:
    """``limits-<hostname>.json`` in ``directory`` (default ``cache_dir()``): one file per machine."""
    host = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(machine.get("hostname") or "host"))
    return (directory or cache_dir()) / f"limits-{host}.json"

def _disk_device(directory: str | os.PathLike) -> int:
    return os.stat(directory).st_dev

def cached_limits(path: Path, machine: dict, device: int, now_s: float, max_age_s: float = CACHE_MAX_AGE_S) -> dict | None:
    """The limits in the cache ``path`` when they were measured on this machine (same hostname, CPU
    model and cores), on the disk ``device``, less than ``max_age_s`` before ``now_s``; else None.
    A damaged cache file counts as no cache (it is measured again and rewritten)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("schema") != LIMITS_SCHEMA or not isinstance(doc.get("limits"), dict):
        return None
    cached_machine = doc.get("machine") or {}
    same = all(cached_machine.get(k) == machine.get(k) for k in ("hostname", "cpu_model", "cpu_cores"))
    measured_s = doc.get("measured_unix_s")
    if not same or doc.get("disk_device") != device or not isinstance(measured_s, (int, float)):
        return None
    if not 0 <= now_s - measured_s < max_age_s:
        return None
    return doc["limits"]

def limits_for_run(mode: str, directory: str | os.PathLike, *, budget_ms: int = 24_000, cache: Path | None = None,
                   clock_s: Callable[[], float] = time.time, note: Callable[[str], None] | None = None) -> dict | None:
    """Limits for ``mqbench run --limits MODE``: ``auto`` uses this machine's cache when it is less
    than a day old and measures (and caches) otherwise; ``measure`` always measures and refreshes
    the cache; ``none`` gives None. Measured limits carry ``measured_utc`` and ``cache_file``."""
    if mode == "none":
        return None
    machine = machine_info()
    Path(directory).mkdir(parents=True, exist_ok=True)
    device = _disk_device(directory)
    path = cache or cache_file(machine)
    if mode == "auto":
        found = cached_limits(path, machine, device, clock_s())
        if found is not None:
            return found
    if note is not None:
        note(f"measuring this machine's limits (about {budget_ms / 1000 + 2:.0f} s; cached for a day in {path})")
    measured_s = clock_s()
    limits = measure_all(directory, budget_ms)
    limits.pop("machine", None)
    limits["measured_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(measured_s))
    limits["cache_file"] = str(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + f".tmp-{os.getpid()}")
        temporary.write_text(json.dumps({"schema": LIMITS_SCHEMA, "machine": machine, "disk_device": device,
                                         "measured_unix_s": measured_s, "limits": limits}, indent=1), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass  # an unwritable cache only costs a measurement next time
    return limits
