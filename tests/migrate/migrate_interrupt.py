"""Run ``mqbench migrate ARGS...`` (the real CLI) and deliver a real SIGINT to this process at the
N-th journal write, for the Ctrl-C test.

    python migrate_interrupt.py N ARGS...
"""
from __future__ import annotations

import os
import signal
import sys

from mqbench.cli import cli
from mqbench.migrate import run


def main() -> None:
    # Python keeps SIGINT ignored when it starts with it ignored (a background job, some test
    # runners' workers), and then the kill below does nothing: install the terminal's handler
    signal.signal(signal.SIGINT, signal.default_int_handler)
    at = int(sys.argv[1])
    run.CHECKPOINT_EVERY_BYTES = 4096
    count = [0]
    real_replace = os.replace

    def replace(a, b):
        real_replace(a, b)
        count[0] += 1
        if count[0] == at:
            os.kill(os.getpid(), signal.SIGINT)

    os.replace = replace
    cli.main(["migrate", *sys.argv[2:]], prog_name="mqbench")


if __name__ == "__main__":
    main()
