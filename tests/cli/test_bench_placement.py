"""``mqbench.bench.placement``: the CPU lists of ``--broker-cpus``/``--sender-cpus``, pinning, and the
sampled share of time the sender ran on the broker's CPU (the placement the send benchmark records
to tell its two cost levels apart)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mqbench.bench import placement
from mqbench.errors import UserError

linux_only = pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or not os.path.exists("/proc/self/stat"),
                                reason="needs Linux affinity and /proc")


def test_cpu_lists_parse_as_taskset_does():
    assert placement.parse_cpus(None) is None and placement.parse_cpus(" ") is None
    first = min(placement.available_cpus() or {0})
    assert placement.parse_cpus(str(first)) == frozenset({first})
    assert placement.parse_cpus(f"{first}-{first},{first}") == frozenset({first})


@pytest.mark.parametrize("text", ["x", "1-", "3-1", "0,,1", "99999"])
def test_a_bad_cpu_list_is_a_user_error(text):
    with pytest.raises(UserError):
        placement.parse_cpus(text)


def test_same_cpu_share_counts_only_readable_samples():
    assert placement.same_cpu_share([]) is None
    assert placement.same_cpu_share([(None, 1), (0, None)]) is None
    assert placement.same_cpu_share([(0, 0), (0, 1), (1, 1), (None, 0)]) == pytest.approx(2 / 3)


@linux_only
def test_last_cpu_reads_a_live_process_and_none_for_a_gone_one():
    assert placement.last_cpu(os.getpid()) in (placement.available_cpus() or set())
    assert placement.last_cpu(2 ** 22 + 12345) is None        # no such process


@linux_only
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 if hasattr(os, "sched_getaffinity") else True,
                    reason="needs two CPUs")
def test_the_sampler_sees_a_pinned_pair_together_and_apart():
    a, b = sorted(os.sched_getaffinity(0))[:2]
    before = os.sched_getaffinity(0)
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 5\nwhile time.time() < end: pass"])
    try:
        placement.pin([0], frozenset({a}))
        placement.pin([child.pid], frozenset({a}))
        time.sleep(0.05)
        together = placement.PlacementSampler(child.pid, os.getpid(), period_s=0.005).start()
        time.sleep(0.15)
        assert together.stop() == 1.0
        placement.pin([child.pid], frozenset({b}))
        time.sleep(0.05)
        apart = placement.PlacementSampler(child.pid, os.getpid(), period_s=0.005).start()
        time.sleep(0.15)
        assert apart.stop() == 0.0
    finally:
        child.kill()
        child.wait()
        os.sched_setaffinity(0, before)
