"""A deterministic profile of mqbench's own processes (brokers, name server, run workers), for
finding what costs per message, per loop turn or per unit of time: ``start(name)``, on when
``MQBENCH_PROFILE=DIR`` is set (run workers only with ``MQBENCH_PROFILE_CLIENTS=1`` too).

Why cProfile and not only a sampler: a sampler (py-spy) says where the time goes, but under uvloop
it attributes most samples of a broker to ``Runner.run`` (the C loop calls Python callbacks
without a Python frame above them), and it never says how often something runs. Call counts do:
divided by the messages of the run they tell per-message work (1 call per message, or 3) from
per-turn or per-time work (calls that do not grow with the rate), which is what this probe is for.
Times are the loop thread's CPU time (``time.thread_time_ns``), not wall time, so preemption on a
loaded machine is not charged to the function that was running; other threads are not profiled.
That clock is a system call (clock_gettime of the thread's CPU clock), read at every call and
return: on this VM a loop of 600k call events took 0.04 s unprofiled, 1.0-1.1 s profiled with it
and 0.19-0.25 s with cProfile's own monotonic clock. A broker costs about 3x its CPU with it (raft3
at 2,000 msgs/s offered, load 11-18: 448-585 msgs/s achieved at 596-676 broker CPU us/msg, where
unprofiled runs achieved 1,868-2,018 at 132-206), so a profile taken at a moderate rate describes
an overloaded broker whose Raft rounds and pulls carry many messages each, not the unprofiled one.
``MQBENCH_PROFILE_TIMER=wall`` profiles with cProfile's monotonic clock instead: the same runs
achieved 1,494-2,001 msgs/s at 188-218 broker us/msg. Its times are wall time: they include preemption
(charged to whatever was running, often a write) and the loop's idle wait (the own time of the
loop's run call), so compare busy functions with each other, not with the total. Counts are
exact with either timer.

What ``start`` does: enables ``cProfile`` on the calling (event-loop) thread and writes
``DIR/<name>-<pid>.pstats`` (a ``pstats`` file) every ``SNAPSHOT_S`` seconds (cumulative, so a
process killed with SIGKILL still leaves its last snapshot) and once more at ``Profile.stop`` or at
exit. Unset (the default), ``start`` returns None and nothing else runs.

``python -m mqbench.profiling DIR [--per FUNC] [--top N]`` prints each file's top functions by
own time with their call counts, and with ``--per`` (a function name, ``file:function`` or just
``function``; the counts of every match are summed) each count divided by that function's calls, e.g.
``--per handle_send`` for calls per send request.
"""
from __future__ import annotations

import argparse
import atexit
import cProfile
import os
import pstats
import sys
import threading
import time
from pathlib import Path

ENV = "MQBENCH_PROFILE"
CLIENTS_ENV = "MQBENCH_PROFILE_CLIENTS"
TIMER_ENV = "MQBENCH_PROFILE_TIMER"
TIMERS = ("cpu", "wall")
SNAPSHOT_S = 5.0


def timer() -> str:
    """The clock profiles use (module doc): ``MQBENCH_PROFILE_TIMER``, ``cpu`` (the default) or
    ``wall``; any other value is named once on stderr and ``cpu`` is used (a diagnostic must not
    stop the process it watches)."""
    chosen = os.environ.get(TIMER_ENV, "").strip().lower() or "cpu"
    if chosen not in TIMERS:
        print(f"mqbench: {TIMER_ENV}={chosen!r} is not one of {', '.join(TIMERS)}; profiling with cpu",
              file=sys.stderr)
        return "cpu"
    return chosen


class Profile:
    """One process's profiler (``start``): a ``cProfile.Profile`` on the loop thread, snapshots."""

    def __init__(self, path: str, loop=None):
        self.path = path
        self.loop = loop
        # the thread's CPU time, not wall time: on a loaded machine wall time charges preemption
        # (another process running) to whatever function was on the stack, often a write
        # wall: cProfile's own monotonic clock (no Python-level timer call per event)
        self.profiler = cProfile.Profile() if timer() == "wall" else cProfile.Profile(time.thread_time_ns, 1e-9)
        self.lock = threading.Lock()
        self.stopped = False

    def start(self) -> None:
        self.profiler.enable()
        atexit.register(self.stop)
        if self.loop is not None:
            self.loop.call_later(SNAPSHOT_S, self._snapshot)

    def _snapshot(self) -> None:
        if self.stopped:
            return
        self.write()
        self.profiler.enable()
        self.loop.call_later(SNAPSHOT_S, self._snapshot)

    def write(self) -> None:
        """Write the counts so far (``create_stats`` disables the profiler; the caller re-enables)."""
        with self.lock:
            self.profiler.create_stats()
            tmp = self.path + ".tmp"
            try:
                self.profiler.dump_stats(tmp)
                os.replace(tmp, self.path)
            except OSError as exc:   # a diagnostic must not stop the process it watches
                print(f"mqbench: profile not written: {exc}", file=sys.stderr)

    def stop(self) -> None:
        """Write the final counts and stop (idempotent)."""
        if self.stopped:
            return
        self.stopped = True
        self.write()


def start(name: str, loop=None, *, client: bool = False) -> Profile | None:
    """Profile this thread (the event loop's) when ``MQBENCH_PROFILE`` names a folder; None when it is
    unset. ``loop`` (the running loop) enables the periodic snapshots. Called once per process after
    start-up, beside ``loop_stalls.watch``. A ``client`` (a run worker: the load generator) is
    profiled only with ``MQBENCH_PROFILE_CLIENTS=1`` as well: profiled, the producer worker builds
    its workload about 3x slower and offers less (on a loaded machine: nothing in a 30 s run)."""
    folder = os.environ.get(ENV, "").strip()
    if not folder or (client and os.environ.get(CLIENTS_ENV, "").strip() != "1"):
        return None
    os.makedirs(folder, exist_ok=True)
    safe = name.replace("/", "_").replace(os.sep, "_")   # an instance name holds a slash (broker-a/n0)
    profile = Profile(os.path.join(folder, f"{safe}-{os.getpid()}.pstats"), loop)
    profile.start()
    return profile


# --- the report ----------------------------------------------------------------------------------


def _label(key: tuple) -> str:
    filename, line, function = key
    if filename == "~":
        return function
    parts = Path(filename).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else filename
    return f"{short}:{line}({function})"


def _matches(key: tuple, spec: str) -> bool:
    filename, _line, function = key
    if ":" in spec:
        file_part, func_part = spec.rsplit(":", 1)
        return function == func_part and filename.endswith(file_part)
    return function == spec


def summarize(path: str, per: str | None = None, top: int = 25) -> list[str]:
    """The lines ``python -m mqbench.profiling`` prints for one pstats file (module doc)."""
    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    total_s = sum(v[2] for v in stats.values())
    lines = [f"{Path(path).name}: {total_s:.2f} s of profiled own time"]
    divisor = None
    if per:
        divisor = sum(v[1] for k, v in stats.items() if _matches(k, per))
        lines.append(f"  per call of {per}: {divisor} calls" if divisor else f"  {per}: not called")
        divisor = divisor or None
    lines.append(f"  {'own %':>6} {'own s':>7} {'calls':>10} {'per':>8}  function")
    ranked = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    for key, (_cc, ncalls, tottime, _ct, _callers) in ranked:
        share = 100.0 * tottime / total_s if total_s else 0.0
        ratio = f"{ncalls / divisor:8.2f}" if divisor else f"{'':8}"
        lines.append(f"  {share:6.1f} {tottime:7.2f} {ncalls:10d} {ratio}  {_label(key)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqbench.profiling",
                                     description="Top functions of each MQBENCH_PROFILE file in DIR.")
    parser.add_argument("dir")
    parser.add_argument("--per", help="divide call counts by this function's calls (name or file:name)")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    files = sorted(Path(args.dir).glob("*.pstats"))
    if not files:
        print(f"mqbench: error: no .pstats files in {args.dir}", file=sys.stderr)
        return 2
    for path in files:
        print("\n".join(summarize(str(path), args.per, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
