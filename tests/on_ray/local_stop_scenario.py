"""Run inside a private network namespace by test_local_ray_stop.py: a one-node ``local_ray``
cluster that runs one task (so a worker process exists too); prints, as JSON, the pids of every
Ray process that appeared while it ran (``argv[1]``: the pids to leave out, those of before)."""
from __future__ import annotations

import json
import os
import sys

import ray

from mqbench.ray.local import local_ray
from ray_processes import ray_processes


def _pid() -> int:
    return os.getpid()


def main() -> None:
    skip = set(json.loads(sys.argv[1]))
    with local_ray(nodes=1) as address:
        ray.init(address)
        worker = ray.get(ray.remote(num_cpus=1)(_pid).remote())
        ray.shutdown()
        during = list(ray_processes(skip))
    print(json.dumps({"during": during, "worker": worker}))


if __name__ == "__main__":
    main()
