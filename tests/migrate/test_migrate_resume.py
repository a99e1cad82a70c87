"""Crash safety: the migration SIGKILLed at random writes, then resumed with --resume, gives a
store byte-identical to an uninterrupted run."""
from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from migrate_golden import build_store, tree_bytes
from mqbench.migrate.verify import verify

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKPOINT_BYTES = 8192


def _run(src, dst, target, kill_at, resume, parallel=False):
    proc = subprocess.run([sys.executable, os.path.join(HERE, "migrate_crashrun.py"), src, dst, target,
                           str(CHECKPOINT_BYTES), str(kill_at), "1" if resume else "0"]
                          + (["--parallel"] if parallel else []), capture_output=True, text=True, timeout=120)
    return proc


@pytest.mark.realproc
@pytest.mark.parametrize("source,target,seed,parallel", [
    # ~17 s each: CI's kill-and-resume check is the real 4.9.8 store's (tests/real_stores); -m slow runs these
    pytest.param("v5-dledger", "v4", 1, False, marks=pytest.mark.slow),
    pytest.param("v4", "v5-dledger", 2, False, marks=pytest.mark.slow),
    pytest.param("v5", "v5-dledger", 3, False, marks=pytest.mark.slow),
    pytest.param("v4-dledger", "v5", 4, False, marks=pytest.mark.slow),
    # the killed and the resumed runs check the source ahead in worker processes (migrate.prescan)
    pytest.param("v4", "v5-dledger", 5, True, marks=pytest.mark.slow),
    pytest.param("v4-dledger", "v5", 6, True, marks=pytest.mark.slow)])
def test_kill9_at_random_points_then_resume_is_byte_identical(tmp_path, source, target, seed, parallel):
    """The uninterrupted run is the serial one: with ``parallel`` the killed and resumed runs must
    also equal it byte for byte."""
    src = build_store(str(tmp_path / "src"), source, messages=160)["root"]
    clean = str(tmp_path / "clean")
    proc = _run(src, clean, target, 0, False)
    assert proc.returncode == 0, proc.stderr
    writes = int(proc.stdout.strip())
    expected = tree_bytes(clean)
    rng = random.Random(seed)
    # random points, plus the first write (the first journal) and the last (the final journal)
    points = sorted(rng.sample(range(2, writes), 2)) + [1, writes]
    for n, kill_at in enumerate(points):
        dst = str(tmp_path / f"crash{n}")
        proc = _run(src, dst, target, kill_at, False, parallel)
        assert proc.returncode == -9, (kill_at, proc.stderr)
        if n == 0:   # a second crash during the resume, then a clean resume
            proc = _run(src, dst, target, max(1, writes // 7), True, parallel)
            assert proc.returncode in (0, -9), proc.stderr
        proc = _run(src, dst, target, 0, True, parallel)
        assert proc.returncode == 0, (kill_at, proc.stderr)
        got = tree_bytes(dst)
        assert sorted(got) == sorted(expected), (kill_at, set(got) ^ set(expected))
        for name in expected:
            assert got[name] == expected[name], (kill_at, name)
    assert verify(src, clean)["ok"]


@pytest.mark.realproc
def test_resume_accepts_every_queue_a_fresh_run_writes(tmp_path):
    """A record of queue 2147483647 (the largest int32): the fresh run writes its queue folder, and
    the resumed run read that folder back and refused it ('not a queue id folder')."""
    from migrate_golden import storebuilder
    builder = storebuilder()(str(tmp_path / "src"), version="v4", log_file_bytes=16384)
    for i in range(60):
        builder.add("TopicTest", b"x" * 200, queue_id=(0x7FFFFFFF if i % 2 else 3), properties={"KEYS": f"k{i}"})
    builder.save()
    clean = str(tmp_path / "clean")
    proc = _run(builder.root, clean, "v5-dledger", 0, False)
    assert proc.returncode == 0, proc.stderr
    assert os.path.isdir(os.path.join(clean, "consumequeue", "TopicTest", "2147483647"))
    writes = int(proc.stdout.strip())
    dst = str(tmp_path / "crash")
    proc = _run(builder.root, dst, "v5-dledger", writes // 2, False)
    assert proc.returncode == -9
    proc = _run(builder.root, dst, "v5-dledger", 0, True)
    assert proc.returncode == 0, proc.stderr
    assert tree_bytes(dst) == tree_bytes(clean)
