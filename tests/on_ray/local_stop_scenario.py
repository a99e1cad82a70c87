"""Run inside a private network namespace by test_local_ray_stop.py: a one-node ``local_ray``
cluster that runs one task (so a worker process exists too); prints, as JSON, the pids of every
Ray process that appeared while it ran (``argv[1]``: the pids to leave out, those of before)."""
from __future__ import annotations

import json
import os
import sys

import psutil
import ray

from mqbench.ray.local import local_ray

RAY_WORDS = ("raylet", "gcs_server", "ray::", "ray/_private", "ray.util.client", "dashboard", "mqbray-")


def ray_pids(skip: set[int]) -> list[int]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
        except psutil.Error:
            continue
        if proc.pid not in skip and proc.pid != os.getpid() and any(word in text for word in RAY_WORDS):
            found.append(proc.pid)
    return found


def _pid() -> int:
    return os.getpid()


def main() -> None:
    skip = set(json.loads(sys.argv[1]))
    with local_ray(nodes=1) as address:
        ray.init(address)
        worker = ray.get(ray.remote(num_cpus=1)(_pid).remote())
        ray.shutdown()
        during = ray_pids(skip)
    print(json.dumps({"during": during, "worker": worker}))


if __name__ == "__main__":
    main()
