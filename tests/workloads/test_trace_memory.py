"""A trace bigger than the memory it is written and read with (slow: moves a few hundred MB)."""
import subprocess
import sys

import pytest

SCRIPT = r"""
import os, resource, sys
from mqbench.workloads.message import TraceMessage
from mqbench.workloads.trace import TraceWriter, iter_trace_rows
import pyarrow.parquet  # counted in the baseline

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

path, count, body_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
block = os.urandom(body_bytes)
baseline = peak_mb()
with TraceWriter(path, source="generated") as writer:
    for i in range(count):
        writer.write(TraceMessage(send_offset_us=i, topic="t", body=i.to_bytes(8, "big") + block[8:]))
written = peak_mb()
total = 0
for i, message in enumerate(iter_trace_rows(path)):
    if message.body[:8] != i.to_bytes(8, "big"):
        raise SystemExit(f"row {i} differs")
    total += len(message.body)
print(baseline, written, peak_mb(), total / 2**20)
"""


@pytest.mark.slow
def test_a_trace_larger_than_the_memory_used(tmp_path):
    count, body_bytes = 40_000, 8192  # 312 MiB of bodies
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "big.parquet"), str(count), str(body_bytes)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    baseline_mb, written_mb, read_mb, total_mb = map(float, out.stdout.split())
    assert total_mb > 300
    assert written_mb - baseline_mb < 160 and read_mb - baseline_mb < 160, out.stdout
