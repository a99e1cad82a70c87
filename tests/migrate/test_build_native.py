"""The compiled copy loop (``mqbench.migrate._build``, ``bulk._copy_run_native``) writes exactly what
the Python loop (``bulk.BulkCopy.copy_run``, the reference) writes: every file of the output, for
every pair of versions (one in the default suite, all twelve with ``-m slow``), checked in this
process and by worker processes, with small buffers, queue runs and checkpoints so that every way
the C loop hands back to Python (a queue it has not seen, a file's end, a full buffer, a queue's
units to write, a checkpoint, a record it does not take) happens many times. Skipped where the
accelerator is not built (``MQBENCH_NATIVE=0``: the Python loop is then what runs everywhere)."""
from __future__ import annotations

import os

import pytest

from migrate_golden import build_store
from mqbench.bench.migrate import build
from mqbench.broker.store import index_files
from mqbench.migrate import bulk, prescan, run
from mqbench.migrate.plan import Options
from mqbench.migrate.run import migrate
from test_migrate_bulk import tree_digest  # noqa: F401  (a test module beside this one, not conftest)

pytestmark = pytest.mark.skipif(bulk._build is None, reason="mqbench.migrate._build is not built or MQBENCH_NATIVE=0")

VERSIONS = ("v4", "v5", "v4-dledger", "v5-dledger")
# the default suite runs one pair (a DLedger source's indexes, a DLedger target's entries and CRCs, the
# 4.x property form); test_migrate_bulk's CI pairs also run the compiled loop against the per-record path
CI_PAIRS = {("v5-dledger", "v4-dledger")}
PAIRS = [pytest.param(s, t, marks=() if (s, t) in CI_PAIRS else pytest.mark.slow)
         for s in VERSIONS for t in VERSIONS if s != t]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Per version: the golden store (every kind of record, 32 KiB log files) and a bench-shaped one."""
    base = tmp_path_factory.mktemp("build")
    out = {}
    for v in VERSIONS:
        out[("golden", v)] = build_store(str(base / f"golden-{v}"), v)["root"]
        root = base / f"bench-{v}"
        build(root, v, 1 << 20, 1)
        out[("bench", v)] = str(root)
    return out


def _migrate(src: str, dst, target: str, *, native: bool, parallel: bool, monkeypatch, segment_bytes=None) -> dict:
    monkeypatch.setattr(bulk, "_build", bulk._build if native else None)
    monkeypatch.setattr(index_files, "_native", index_files._native if native else None)
    jobs = 0
    if parallel:
        monkeypatch.setattr(run, "PARALLEL_MIN_BYTES", 0)
        monkeypatch.setattr(prescan, "WINDOW_BYTES", 16 << 10)
        jobs = 2
    return migrate(src, str(dst), Options(target=target, jobs=jobs, segment_bytes=segment_bytes))


@pytest.fixture
def small_runs(monkeypatch):
    """Buffers, queue runs and checkpoints small enough that every hand-back happens often."""
    monkeypatch.setattr(bulk, "BUFFER_BYTES", 5000)
    monkeypatch.setattr(bulk, "QUEUE_UNITS_PENDING", 7)
    monkeypatch.setattr(run, "CHECKPOINT_EVERY_BYTES", 96 << 10)


@pytest.mark.parametrize("source,target", PAIRS)
def test_compiled_loop_writes_the_python_loops_bytes(stores, tmp_path, monkeypatch, small_runs, source, target):
    builder = bulk._build
    # the golden v5 stores hold zstd bodies, which a v4 target takes only with --codec (no fast path)
    kinds = ("bench",) if source.startswith("v5") and target.startswith("v4") else ("golden", "bench")
    for kind in kinds:
        src = stores[(kind, source)]
        # the bench store into 64 KiB target files: many records meet a file's end
        seg = 64 << 10 if kind == "bench" else None
        for parallel in (False, True):
            monkeypatch.setattr(bulk, "_build", builder)
            want_dir, got_dir = tmp_path / f"{kind}-{parallel}-py", tmp_path / f"{kind}-{parallel}-c"
            want = _migrate(src, want_dir, target, native=False, parallel=parallel, monkeypatch=monkeypatch,
                            segment_bytes=seg)
            monkeypatch.setattr(bulk, "_build", builder)
            got = _migrate(src, got_dir, target, native=True, parallel=parallel, monkeypatch=monkeypatch,
                           segment_bytes=seg)
            assert got == {**want, "out": got["out"]}
            assert got["records_out"] > 100
            a, b = tree_digest(want_dir), tree_digest(got_dir)
            assert sorted(a) == sorted(b)
            for name in a:
                assert a[name] == b[name], (kind, parallel, name)


def test_compiled_loop_takes_the_ordinary_records(stores, tmp_path, monkeypatch):
    """The compiled loop is what copies an ordinary store (not a hand-back per record)."""
    calls = []
    real = bulk._build.run

    class Counting:
        def __getattr__(self, name):
            return getattr(bulk._build_real, name)

        @staticmethod
        def run(*args):
            calls.append(1)
            return real(*args)

    monkeypatch.setattr(bulk, "_build_real", bulk._build, raising=False)
    monkeypatch.setattr(bulk, "_build", Counting())
    summary = migrate(stores[("bench", "v5-dledger")], str(tmp_path / "out"), Options(target="v4", jobs=0))
    assert summary["records_in"] > 1000
    assert 0 < len(calls) < summary["records_in"] * 0.05


def test_index_put_writes_put_flats_items(tmp_path):
    """``IndexWriter.put_packed`` (C insert) against ``put_flat`` (the Python one): the same files,
    across several full files, with hashes colliding on few slots and times before a file's begin."""
    from array import array
    from random import Random

    if index_files._native is None:
        pytest.skip("mqbench.broker.store._index_files is not built")
    rng = Random(5)
    for case in range(6):
        slots, items = rng.choice([(7, 28), (100, 400), (3, 12)])
        triples = []
        ms = 1_700_000_000_000
        for _ in range(rng.randrange(1, 900)):
            ms += rng.choice((0, 1, 999, 1000, 1001, 86_400_000, -5000))
            triples += [rng.choice((0, 1, 2**31 - 1, rng.randrange(2**31))), rng.randrange(2**40), ms]
        writers = {}
        for how in ("flat", "packed"):
            w = index_files.IndexWriter(tmp_path / f"{case}-{how}", hash_slot_num=slots, index_num=items)
            cut = rng.randrange(len(triples) // 3 + 1) * 3
            for part in (triples[:cut], triples[cut:]):
                if how == "flat":
                    w.put_flat(list(part))
                else:
                    w.put_packed(array("q", part).tobytes())
            w.close()
            writers[how] = w
        assert writers["flat"].items_written == writers["packed"].items_written == len(triples) // 3
        assert tree_digest(tmp_path / f"{case}-flat") == tree_digest(tmp_path / f"{case}-packed")
        assert sorted(os.listdir(tmp_path / f"{case}-flat")) == sorted(os.listdir(tmp_path / f"{case}-packed"))
