"""``mqbench limits`` (and so ``mqbench run``'s default limits) killed with SIGKILL mid-measurement
leaves no process: the loopback receiver it spawned watches its parent and ends with it. A CI run
once found that receiver (and multiprocessing's resource tracker) still holding a killed run's
output a minute later."""
from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest


@pytest.mark.realproc
def test_a_kill_9_while_measuring_loopback_leaves_no_process(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "mqbench", "limits", "--budget-s", "16", "--dir", str(tmp_path)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 60
    receiver = None
    while receiver is None and proc.poll() is None and time.monotonic() < deadline:
        for child in psutil.Process(proc.pid).children(recursive=True):
            try:
                seen[child.pid] = child.create_time()
                if "spawn_main" in " ".join(child.cmdline()):
                    receiver = child
            except psutil.Error:
                continue
        time.sleep(0.05)
    assert receiver is not None, "the loopback receiver was never seen"
    proc.kill()
    proc.communicate(timeout=30)       # every holder of its pipes has let go
    end = time.monotonic() + 10
    while time.monotonic() < end:
        alive = [pid for pid, created in seen.items()
                 if psutil.pid_exists(pid) and abs(psutil.Process(pid).create_time() - created) < 0.05
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, [" ".join(psutil.Process(pid).cmdline())[:100] for pid in alive]
