"""``mqbench.loop_stalls``: a loop turn that runs long is counted and its callback named."""
from __future__ import annotations

import asyncio
import json
import time

from mqbench import loop_stalls


def _busy_turn_of_40ms() -> None:
    # 40 ms of this thread's CPU, not of the wall clock: on a loaded machine a wall-clock busy loop
    # gets a few ms of CPU and the probe rightly does not call that turn our own CPU
    end = time.thread_time() + 0.04
    while time.thread_time() < end:
        pass


def test_a_long_turn_is_recorded_with_its_callback(tmp_path, monkeypatch):
    monkeypatch.setenv(loop_stalls.ENV, str(tmp_path))

    async def main():
        probe = loop_stalls.watch("t")
        assert probe is not None
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().call_soon(_busy_turn_of_40ms)
        await asyncio.sleep(0.1)
        return probe

    probe = asyncio.run(main())
    assert probe.over10 >= 1 and probe.over20 >= 1
    # the watchdog thread writes what the beat recorded on its next sample, which can come after
    # the loop (and asyncio.run) ended: wait for the line, with a deadline
    deadline = time.monotonic() + 5
    while True:
        stalls = [json.loads(line) for path in tmp_path.iterdir() for line in path.read_text().splitlines()]
        stalls = [s for s in stalls if not s.get("summary")]
        busy = [s for s in stalls if any("_busy_turn_of_40ms" in k for k in s["stacks"])]
        if busy or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert any(s["stall_ms"] >= 30 and any("_busy_turn_of_40ms" in k for k in s["stacks"]) for s in stalls)
    (row,) = loop_stalls.summarize(str(tmp_path), cpu_ms_min=5)
    assert row["process"].startswith("t-") and row["own_cpu_over_5ms"] >= 1   # a busy turn: our own CPU
    assert any("_busy_turn_of_40ms" in stack for stack in row["top_stacks"])


def test_off_without_the_variable(monkeypatch):
    monkeypatch.delenv(loop_stalls.ENV, raising=False)

    async def main():
        return loop_stalls.watch("t")

    assert asyncio.run(main()) is None
