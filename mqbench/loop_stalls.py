"""A probe of event-loop stalls in mqbench's own processes (broker, name server, run workers), for
finding what makes a latency tail: ``watch(name)``, on when ``MQBENCH_LOOP_STALLS=DIR`` is set.

Why a probe and not wall-clock latency: on a loaded 2-core machine a message's latency mixes our
own work with the scheduler's. A loop turn that runs 20 ms delays every message in flight in that
process, whatever the load; the probe counts such turns and says what ran in them.

How: the loop runs a beat every ``BEAT_MS``; a beat that comes more than ``STALL_MS`` late means one
turn (or several back to back) held the loop that long. A watchdog thread samples the loop thread's
Python stack while a beat is overdue (every ``SAMPLE_MS``, so a stall's samples say which callback
ran), and the beat that ends the stall records its wall time and the loop thread's own CPU time in
it: a stall with CPU close to its wall time is our code running; one with little CPU is the thread
waiting (a blocking syscall, or preempted by other processes on a loaded machine).

Output, written by the watchdog thread (never the loop): ``DIR/<name>-<pid>.jsonl``, one line per
stall (``{"stall_ms", "cpu_ms", "at_s", "stacks": {stack: samples}}``) and a summary line every
``SUMMARY_S`` (``{"summary": true, "beats", "stalls_over_10ms", "stalls_over_20ms",
"stall_ms_total", "cpu_s"}``). Off (the default), nothing runs.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import traceback
from collections import Counter

ENV = "MQBENCH_LOOP_STALLS"
BEAT_MS = 2
STALL_MS = 10
SAMPLE_MS = 2
SUMMARY_S = 5.0
STACK_DEPTH = 10


def watch(name: str, loop: asyncio.AbstractEventLoop | None = None) -> "StallProbe | None":
    """Start the probe on ``loop`` (default: the running loop) when ``MQBENCH_LOOP_STALLS`` names a
    folder; None when it is unset. Called once per process after start-up."""
    folder = os.environ.get(ENV, "").strip()
    if not folder:
        return None
    os.makedirs(folder, exist_ok=True)
    probe = StallProbe(os.path.join(folder, f"{name}-{os.getpid()}.jsonl"), loop or asyncio.get_running_loop())
    probe.start()
    return probe


class StallProbe:
    """The beat (on the loop) and the watchdog thread of ``watch`` (module doc)."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop):
        self.path = path
        self.loop = loop
        self.loop_thread = threading.get_ident()
        self.t0 = time.monotonic()
        self.last_beat = time.monotonic()
        self.last_cpu = time.thread_time()
        self.samples: Counter = Counter()
        self.lock = threading.Lock()
        self.pending: list[dict] = []
        self.beats = 0
        self.over10 = 0
        self.over20 = 0
        self.stall_ms_total = 0.0

    def start(self) -> None:
        self.loop.call_later(BEAT_MS / 1000, self._beat)
        threading.Thread(target=self._watchdog, name="loop-stalls", daemon=True).start()

    def _beat(self) -> None:
        now = time.monotonic()
        cpu = time.thread_time()
        late_ms = (now - self.last_beat) * 1000 - BEAT_MS
        self.beats += 1
        if late_ms > STALL_MS:
            with self.lock:
                stacks, self.samples = self.samples, Counter()
                self.pending.append({"stall_ms": round(late_ms, 2), "cpu_ms": round((cpu - self.last_cpu) * 1000, 2),
                                     "at_s": round(now - self.t0, 3), "stacks": dict(stacks.most_common(6))})
            self.over10 += 1
            self.over20 += late_ms > 20
            self.stall_ms_total += late_ms
        elif self.samples:
            with self.lock:
                self.samples = Counter()
        self.last_beat = now
        self.last_cpu = cpu
        self.loop.call_later(BEAT_MS / 1000, self._beat)

    def _watchdog(self) -> None:
        next_summary = time.monotonic() + SUMMARY_S
        while not self.loop.is_closed():    # the loop's end (a test's asyncio.run) ends the probe
            time.sleep(SAMPLE_MS / 1000)
            now = time.monotonic()
            if (now - self.last_beat) * 1000 > STALL_MS / 2 + BEAT_MS and self.loop.is_running():
                frame = sys._current_frames().get(self.loop_thread)
                if frame is not None:
                    stack = traceback.StackSummary.extract(traceback.walk_stack(frame), limit=STACK_DEPTH,
                                                           lookup_lines=False)
                    key = " < ".join(f"{os.path.basename(f.filename)}:{f.lineno}:{f.name}" for f in stack)
                    with self.lock:
                        self.samples[key] += 1
            if self.pending or now >= next_summary:
                with self.lock:
                    lines, self.pending = self.pending, []
                if now >= next_summary:
                    next_summary = now + SUMMARY_S
                    lines.append({"summary": True, "at_s": round(now - self.t0, 3), "beats": self.beats,
                                  "stalls_over_10ms": self.over10, "stalls_over_20ms": self.over20,
                                  "stall_ms_total": round(self.stall_ms_total, 1),
                                  "cpu_s": round(time.process_time(), 3)})
                self._write(lines)
        self._write(self.pending)

    def _write(self, lines: list[dict]) -> None:
        if lines:
            with open(self.path, "a", encoding="utf-8") as out:
                for line in lines:
                    out.write(json.dumps(line) + "\n")



def summarize(folder: str, cpu_ms_min: float = 10.0, top: int = 3) -> list[dict]:
    """One row per probed process of ``folder``: its last counts, how many stalls had at least
    ``cpu_ms_min`` of the loop thread's CPU (our own long turns, whatever the machine's load), and
    the stacks sampled most in those. ``python -m mqbench.loop_stalls DIR`` prints them."""
    rows = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".jsonl"):
            continue
        last: dict = {}
        own = 0
        stacks: Counter = Counter()
        with open(os.path.join(folder, name), encoding="utf-8") as lines:
            for line in lines:
                doc = json.loads(line)
                if doc.get("summary"):
                    last = doc
                elif doc["cpu_ms"] >= cpu_ms_min:
                    own += 1
                    stacks.update(doc["stacks"])
        rows.append({"process": name[:-len(".jsonl")], "stalls_over_10ms": last.get("stalls_over_10ms", 0),
                     "stalls_over_20ms": last.get("stalls_over_20ms", 0), f"own_cpu_over_{cpu_ms_min:g}ms": own,
                     "cpu_s": last.get("cpu_s"), "top_stacks": [k for k, _ in stacks.most_common(top)]})
    return rows


if __name__ == "__main__":
    for row in summarize(sys.argv[1]):
        stacks = row.pop("top_stacks")
        print("  ".join(f"{k}={v}" for k, v in row.items()))
        for stack in stacks:
            print("    " + stack)
