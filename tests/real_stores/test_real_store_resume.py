"""A migration of the real 4.9.8 store SIGKILLed at random writes and resumed with --resume gives
exactly the bytes of an uninterrupted run (the journal, the log, the queues, the key index)."""
from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from real_store_data import PLAIN, extract

HERE = os.path.dirname(os.path.abspath(__file__))
CRASHRUN = os.path.join(HERE, "..", "migrate", "migrate_crashrun.py")
CHECKPOINT_BYTES = 256 * 1024


def _run(src, dst, target, kill_at, resume):
    return subprocess.run([sys.executable, CRASHRUN, src, dst, target, str(CHECKPOINT_BYTES), str(kill_at),
                           "1" if resume else "0"], capture_output=True, text=True, timeout=300)


def _tree(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _kill_and_resume(tmp_path, target: str, kills: int, seed: int) -> None:
    src = extract(PLAIN, str(tmp_path / "src"))
    clean = str(tmp_path / "clean")
    proc = _run(src, clean, target, 0, False)
    assert proc.returncode == 0, proc.stderr
    writes = int(proc.stdout.strip())
    expected = _tree(clean)
    rng = random.Random(seed)
    for n, kill_at in enumerate(sorted(rng.sample(range(2, writes), kills))):
        dst = str(tmp_path / f"crash{n}")
        proc = _run(src, dst, target, kill_at, False)
        assert proc.returncode == -9, (kill_at, proc.stderr)
        proc = _run(src, dst, target, 0, True)
        assert proc.returncode == 0, (kill_at, proc.stderr)
        got = _tree(dst)
        assert sorted(got) == sorted(expected), (kill_at, set(got) ^ set(expected))
        for name in expected:
            assert got[name] == expected[name], (kill_at, name)


@pytest.mark.realproc
@pytest.mark.parametrize("target,seed", [("v5-dledger", 1), ("v4", 2)])
def test_real_store_killed_and_resumed_is_byte_identical(tmp_path, target, seed):
    _kill_and_resume(tmp_path, target, 1, seed)


@pytest.mark.slow
@pytest.mark.realproc
@pytest.mark.parametrize("target,seed", [("v5-dledger", 3), ("v4", 4), ("v5", 5), ("v4-dledger", 6)])
def test_real_store_killed_many_times_and_resumed_is_byte_identical(tmp_path, target, seed):
    _kill_and_resume(tmp_path, target, 6, seed)
