"""A real process appending with flush_policy=sync is killed with SIGKILL at random (seeded)
moments; after each kill the store is reopened: every acknowledged append is there byte for byte,
nothing torn is served, the queues agree with the log, and the writer continues where it stopped."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crash_writer import body, open_store
from store_files_helpers import assert_queues_agree

WRITER = Path(__file__).with_name("crash_writer.py")


def run_round(root: Path, version: str, seed: int, delay_s: float) -> tuple[int, int]:
    """Start the writer, kill it after ``delay_s`` of appending; returns the last acknowledged counts."""
    env = dict(os.environ, PYTHONPATH=str(WRITER.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-u", str(WRITER), str(root), version, str(seed)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        first = proc.stdout.readline()
        if first != b"READY\n":
            proc.kill()
            raise AssertionError(f"writer did not start: {first!r} {proc.stderr.read()[-2000:]!r}")
        time.sleep(delay_s)
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err[-2000:]
    acked = (0, 0)
    for line in out.split(b"\n")[:-1]:       # the last piece may be a line cut by the kill
        parts = line.split()
        if parts and parts[0] == b"ACK":
            acked = (int(parts[2]), int(parts[4]))
    return acked


def verify(root: Path, version: str, acked: tuple[int, int]) -> tuple[int, int]:
    store = open_store(str(root), version, flush_policy="none", background_flush=False)
    try:
        assert store.recovered_abnormally
        counts = []
        for topic, need in zip(("T", "B"), acked):
            got = store.read_queue(topic, 0, 0, max_messages=1 << 20, max_bytes=1 << 40)
            bodies = [m.body for m in got.messages]
            assert len(bodies) >= need, f"{topic}: {len(bodies)} messages after recovery, {need} acknowledged"
            for i, b in enumerate(bodies):
                assert b == body(topic, i), f"{topic} offset {i} holds the wrong bytes"
            assert [m.queue_offset for m in got.messages] == list(range(len(bodies)))
            counts.append(len(bodies))
        assert_queues_agree(store)
        return counts[0], counts[1]
    finally:
        store.close()


def crash_rounds(tmp_path: Path, seed: int, rounds: int, max_delay_s: float) -> None:
    rng = random.Random(seed)
    roots = {v: tmp_path / v for v in ("v5", "v5-dledger", "v4")}
    last = {v: (0, 0) for v in roots}
    total_acked = 0
    for n in range(rounds):
        version = list(roots)[n % len(roots)]
        acked = run_round(roots[version], version, rng.randrange(1 << 30), rng.uniform(0.02, max_delay_s))
        assert acked[0] >= last[version][0], "acknowledged counts never go back"
        last[version] = verify(roots[version], version, acked)
        total_acked += acked[0]
    assert total_acked > 0, "the writer never acknowledged anything: the test proved nothing"


@pytest.mark.realproc
def test_sigkill_during_sync_appends_loses_nothing_acknowledged(tmp_path):
    crash_rounds(tmp_path, seed=20261124, rounds=9, max_delay_s=0.5)


@pytest.mark.realproc
@pytest.mark.slow
def test_sigkill_soak(tmp_path):
    crash_rounds(tmp_path, seed=7, rounds=30, max_delay_s=1.5)
