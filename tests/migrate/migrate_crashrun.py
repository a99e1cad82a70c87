"""Run a migration in this process and SIGKILL it at the N-th file write (a pwrite is cut in half
first, so the kill can leave a torn write), for the resume tests.

    python migrate_crashrun.py SRC DST TARGET CHECKPOINT_BYTES KILL_AT RESUME [--map-timers] [--parallel]

KILL_AT 0 never kills and prints the number of writes the run made. --parallel: the source is
checked ahead by 2 worker processes in 16 KiB windows (``migrate.prescan``), however small."""
from __future__ import annotations

import os
import signal
import sys

from mqbench.codecs.registry import parse_codec
from mqbench.migrate import prescan, run
from mqbench.migrate.plan import Options


def main() -> None:
    src, dst, target, checkpoint_bytes, kill_at, resume = sys.argv[1:7]
    run.CHECKPOINT_EVERY_BYTES = int(checkpoint_bytes)
    kill_at = int(kill_at)
    count = [0]
    real_pwrite, real_replace = os.pwrite, os.replace

    def pwrite(fd, data, offset):
        count[0] += 1
        if count[0] == kill_at:
            real_pwrite(fd, bytes(data)[:max(1, len(data) // 2)], offset)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_pwrite(fd, data, offset)

    def replace(a, b):
        count[0] += 1
        if count[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(a, b)

    os.pwrite, os.replace = pwrite, replace
    codec = parse_codec("zlib") if target.startswith("v4") else None
    jobs = None
    if "--parallel" in sys.argv:
        run.PARALLEL_MIN_BYTES = 0
        prescan.WINDOW_BYTES = 16 << 10
        jobs = 2
    run.migrate(src, dst, Options(target=target, codec=codec, map_timers_to_levels="--map-timers" in sys.argv,
                                  jobs=jobs), resume=resume == "1")
    print(count[0])


if __name__ == "__main__":
    main()
