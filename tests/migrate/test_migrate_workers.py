"""The worker processes that check a migration's source ahead (``migrate.prescan``) never outlive it:
they end when the migration ends, fails, or is killed with SIGKILL."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from mqbench.bench.migrate import build

# the child starts the windows of a real store with 2 workers, prints their pids, then either
# waits to be killed or finishes (or fails) the migration
CHILD = r"""
import sys, time
from mqbench.migrate import prescan, run
from mqbench.migrate.plan import Options
run.PARALLEL_MIN_BYTES = 0
prescan.WINDOW_BYTES = 16 << 10
real = prescan.Windows.__init__
def started(self, *a, **k):
    real(self, *a, **k)
    print(" ".join(str(p.pid) for p in self.procs), flush=True)
    if sys.argv[3] == "hang":
        time.sleep(60)
    if sys.argv[3] == "fail":
        raise RuntimeError("planted failure")
prescan.Windows.__init__ = started
run.migrate(sys.argv[1], sys.argv[2], Options(target="v5", jobs=2))
print("done", flush=True)
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("workers") / "src"
    build(root, "v4", 1 << 20, 1)
    return str(root)


def _gone(pids: list[int], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("how", ["sigkill", "done", "fail"])
def test_workers_end_with_the_migration(store, tmp_path, how):
    mode = {"sigkill": "hang", "done": "run", "fail": "fail"}[how]
    proc = subprocess.Popen([sys.executable, "-c", CHILD, store, str(tmp_path / "out"), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2
        if how == "sigkill":
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(60)
        if how == "done":
            assert proc.returncode == 0, proc.stderr.read()
        else:
            assert proc.returncode != 0
        assert _gone(pids, 10), f"worker processes {pids} outlived the migration ({how})"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow      # builds a 12 MiB store (~5-10 s)
def test_closing_with_windows_in_flight_lets_the_workers_exit(tmp_path, monkeypatch):
    """A copy refused while windows are still being checked: ``close`` takes their results, so every
    worker exits when told (before, a worker blocked sending a large result was killed after 5 s)."""
    from mqbench.broker.store.log_reader import FolderFiles, list_segments
    from mqbench.migrate import prescan

    root = tmp_path / "src"
    build(root, "v4", 12 << 20, 1)
    monkeypatch.setattr(prescan, "WINDOW_BYTES", 2 << 20)    # a window's result is larger than a pipe holds
    files = FolderFiles(list_segments(str(root / "commitlog"), "commitlog"), "commitlog")
    windows = prescan.Windows(files, False, False, None, 2)
    procs = list(windows.procs)
    try:
        first, _ = windows.at(0, None, 0)
        assert first is not None and len(windows.pending) >= 2      # windows in flight
        windows.release(first)
        time.sleep(1)      # the workers finish their windows and block sending the results
    finally:
        windows.close()
        files.close()
    assert [p.exitcode for p in procs] == [0, 0]
