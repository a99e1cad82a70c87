"""A node agent's driver worker (a multiprocessing spawn child) ends when the agent's process
dies, however it dies: on a Ray node the agent is killed with its driver (or with SIGKILL), and
a worker that outlived it would keep loading the brokers with nobody to read its results.

No Ray needed: ``NodeAgent`` is a plain class; the test runs it in a process of its own, starts a
consumer worker whose name server accepts connections and never answers (so the worker is stuck
setting up), kills that process with SIGKILL and waits for the worker to go. It ends through the
pipe: the agent's end closes with the agent, the worker reads end-of-file and stops (``run.workers``).
About 10 s on a loaded 2-core machine (a spawned interpreter importing mqbench): ``slow``.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = [pytest.mark.realproc, pytest.mark.slow]

AGENT = r"""
import json, sys, time
from mqbench.ray.agents import NodeAgent

spec = json.loads(sys.argv[1])
agent = NodeAgent("orphan test")
print(agent.start_worker(spec), flush=True)
time.sleep(120)
"""


def test_a_node_agents_worker_ends_when_the_agent_is_killed(tmp_path):
    with socket.socket() as silent:          # a "name server" that never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        spec = {"role": "consumer", "worker_index": 0, "workers": 1, "namesrv": f"127.0.0.1:{silent.getsockname()[1]}",
                "run_id": "orphan", "duration_ms": 60_000, "warmup_ms": 0, "window_ms": 1000,
                "subscriptions": [["g", "t", "*"]], "progress_ms": 500, "consume_from": "first", "consume": "pull"}
        agent = subprocess.Popen([sys.executable, "-c", AGENT, json.dumps(spec)], stdout=subprocess.PIPE, text=True)
        try:
            worker_pid = int(agent.stdout.readline())
            worker = psutil.Process(worker_pid)
            time.sleep(1.0)
            assert worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE   # stuck setting up
            os.kill(agent.pid, signal.SIGKILL)
            agent.wait(10)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE:
                time.sleep(0.1)
            gone = not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
            assert gone, f"the worker {worker_pid} outlived its killed agent by 20 s"
        finally:
            agent.kill()
            agent.wait(10)
            try:
                psutil.Process(worker_pid).kill()
            except (psutil.Error, NameError, UnboundLocalError):
                pass
