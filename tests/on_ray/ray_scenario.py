"""Run inside a private network namespace by test_ray_run.py (``mqbench.ray.local`` says why):
start a local Ray cluster (head + 3 worker nodes), run ``mqbench run`` on it, stop the cluster.

argv: OUT_DIR, then an mqbench command (``run ...`` or ``bench workers ...``) that gets
``--cluster ray://...`` (and ``run`` also ``--out OUT_DIR/results``). Writes OUT_DIR/scenario.json:
the address, the command's exit status, its stdout and stderr tail.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mqbench.ray.local import local_ray

RUN_TIMEOUT_S = 300


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {}
    with local_ray(nodes=3) as address:
        report["address"] = address
        mqbench = str(Path(sys.executable).with_name("mqbench"))
        try:
            extra = ["--out", str(out / "results")] if sys.argv[2] == "run" else []
            done = subprocess.run([mqbench, *sys.argv[2:], "--cluster", address, *extra],
                                  capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
            report.update(exit=done.returncode, stdout=done.stdout, stderr=done.stderr[-4000:])
        except subprocess.TimeoutExpired as exc:
            report.update(exit=None, stderr=f"timed out: {exc}")
    (out / "scenario.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
