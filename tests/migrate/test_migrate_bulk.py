"""The copy step's fast path (``migrate.bulk``) writes exactly what the per-record path writes, refuses
exactly what it refuses, and takes the ordinary records (so the comparison is not vacuous)."""
from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from migrate_golden import build_store
from mqbench.bench.migrate import build
from mqbench.broker.formats.index_file import key_hash, key_hash_ascii, key_hash_ascii_after
from mqbench.broker.formats.tags import java_hash, java_hash_ascii
from mqbench.errors import MqbenchError
from mqbench.migrate import bulk, prescan, run
from mqbench.migrate.plan import Options
from mqbench.migrate.run import migrate
from mqbench.migrate.source import log_files
from mqbench.codecs.registry import parse_codec

VERSIONS = ("v4", "v5", "v4-dledger", "v5-dledger")
# every pair; the default suite runs two of them (plain and DLedger on both sides, v5 -> v4)
CI_PAIRS = {("v5-dledger", "v4"), ("v4", "v5-dledger")}
PAIRS = [pytest.param(s, t, marks=() if (s, t) in CI_PAIRS else pytest.mark.slow)
         for s in VERSIONS for t in VERSIONS if s != t]


def tree_digest(root) -> dict[str, str]:
    """Every file under ``root`` -> a digest of its size and its non-zero 1 MiB chunks with their
    offsets (holes are skipped: the key index and DLedger index files are large and sparse)."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            h = hashlib.sha256()
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                h.update(str(size).encode())
                at = 0
                while at < size:
                    try:
                        at = os.lseek(fd, at, os.SEEK_DATA)
                    except OSError:
                        break
                    at -= at % CHUNK
                    chunk = os.pread(fd, CHUNK, at)
                    if chunk.count(0) != len(chunk):
                        h.update(str(at).encode() + b":" + chunk)
                    at += CHUNK
            finally:
                os.close(fd)
            out[os.path.relpath(path, root)] = h.hexdigest()
    return out


CHUNK = 1 << 20


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Per version: the golden store (every kind of record) and a bench-shaped one (~1,300 ordinary
    messages in 16 queues, with KEYS and TAGS). The golden stores' 32 KiB log files put
    many records at a file's end."""
    base = tmp_path_factory.mktemp("bulk")
    out = {}
    for v in VERSIONS:
        out[("golden", v)] = build_store(str(base / f"golden-{v}"), v)["root"]
        root = base / f"bench-{v}"
        build(root, v, 1 << 20, 1)
        out[("bench", v)] = str(root)
    return out


def _migrate(src: str, dst: Path, target: str, *, fast: bool | str, codec=None, monkeypatch=None) -> dict:
    """``fast``: False (the per-record path), True (the fast path, checked in this process) or
    "parallel" (checked ahead by 2 worker processes, in 16 KiB windows: records straddle windows
    and the ring of windows is reused many times)."""
    monkeypatch.setattr(bulk, "ENABLED", bool(fast))
    jobs = 0
    if fast == "parallel":
        monkeypatch.setattr(run, "PARALLEL_MIN_BYTES", 0)
        monkeypatch.setattr(prescan, "WINDOW_BYTES", 16 << 10)
        jobs = 2
    return migrate(src, str(dst), Options(target=target, codec=codec, jobs=jobs))


@pytest.mark.parametrize("source,target", PAIRS)
def test_fast_path_writes_the_per_record_paths_bytes(stores, tmp_path, monkeypatch, source, target):
    """Every file of the output (log, queues, DLedger index, key index, journal) is byte for byte
    what the per-record path writes, on a store with every kind of record and on an ordinary one."""
    codec = parse_codec("zlib") if source.startswith("v5") and target.startswith("v4") else None
    for kind, options_codec in (("golden", codec), ("bench", None)):
        src = stores[(kind, source)]
        slow = _migrate(src, tmp_path / f"{kind}-slow", target, fast=False, codec=options_codec,
                        monkeypatch=monkeypatch)
        want = tree_digest(tmp_path / f"{kind}-slow")
        for mode in (True, "parallel"):
            dst = tmp_path / f"{kind}-{mode}"
            fast = _migrate(src, dst, target, fast=mode, codec=options_codec, monkeypatch=monkeypatch)
            assert fast == {**slow, "out": fast["out"]}
            got = tree_digest(dst)
            assert sorted(got) == sorted(want)
            for name in want:
                assert got[name] == want[name], (kind, mode, name)


@pytest.mark.parametrize("source,target", [("v5-dledger", "v4"), ("v4", "v5-dledger")])
@pytest.mark.parametrize("mode", [True, "parallel"])
def test_fast_path_takes_the_ordinary_records(stores, tmp_path, monkeypatch, source, target, mode):
    """On an ordinary store only a queue's first record, a file's end and the like leave the fast
    path: fewer than 2% of the records go through the per-record path (checked in this process,
    or ahead by worker processes)."""
    seen = []
    real = run.Copier._copy
    monkeypatch.setattr(run.Copier, "_copy", lambda self, item: (seen.append(1), real(self, item))[1])
    summary = _migrate(stores[("bench", source)], tmp_path / "out", target, fast=mode, monkeypatch=monkeypatch)
    assert summary["records_in"] > 1000
    assert len(seen) < summary["records_in"] * 0.02


def _damage(src: str, dst: Path, rng: random.Random) -> None:
    """A copy of ``src`` with a few bytes of one log file changed."""
    import shutil
    shutil.copytree(src, dst)
    rel, size = rng.choice(log_files(src))
    path = dst / rel
    data = bytearray(path.read_bytes())
    end = len(data.rstrip(b"\0")) or 1
    for _ in range(rng.choice((1, 1, 2, 8))):
        at = rng.randrange(end)
        data[at] = rng.choice((0, 2, 0xFF, data[at] ^ (1 << rng.randrange(8))))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("source,target", [
    ("v4", "v5-dledger"), pytest.param("v4-dledger", "v4", marks=pytest.mark.slow),
    pytest.param("v5-dledger", "v5", marks=pytest.mark.slow)])
def test_damaged_source_is_refused_as_the_per_record_path_refuses_it(stores, tmp_path, monkeypatch, source, target):
    """Bytes changed anywhere in the log (the golden stores: small files, every kind of record): the
    fast path refuses with the same message, file and offset as the per-record path (the one log
    reader judges), or both write the same bytes."""
    rng = random.Random(f"{source}-{target}")
    for n in range(8):
        src = tmp_path / f"src{n}"
        _damage(stores[("golden", source)], src, rng)
        outcomes = []
        for fast in (True, False, "parallel"):
            dst = tmp_path / f"out{n}-{fast}"
            try:
                _migrate(str(src), dst, target, fast=fast, monkeypatch=monkeypatch)
                outcomes.append(("ok", tree_digest(dst)))
            except MqbenchError as exc:
                outcomes.append(("refused", str(exc).replace(str(dst), "DST")))
        assert outcomes[0] == outcomes[1] == outcomes[2], n


def test_ascii_java_hash_matches_the_definition():
    rng = random.Random(3)
    for n in list(range(40)) + [511, 512, 513, 1500]:
        text = "".join(chr(rng.randrange(128)) for _ in range(n))
        h = 0
        for c in text:
            h = (31 * h + ord(c)) & 0xFFFFFFFF
        assert java_hash(text) == (h - (1 << 32) if h & 0x80000000 else h)
        assert key_hash_ascii(text.encode()) == key_hash(text)
        for cut in {0, n // 3, n}:
            prefix, key = text[:cut].encode(), text[cut:].encode()
            assert key_hash_ascii_after(java_hash_ascii(prefix), key) == key_hash(text)
    assert key_hash("polygenelubricants") == 0        # String.hashCode() == Integer.MIN_VALUE


def test_entries_cross_into_a_new_index_file(stores, tmp_path, monkeypatch):
    """DLedger index units are written per index file (a write never crosses one)."""
    from mqbench.migrate import target as target_mod
    monkeypatch.setattr(target_mod, "DEFAULT_INDEX_SEGMENT_BYTES", 32 * 100)
    fast = _migrate(stores[("bench", "v4")], tmp_path / "fast", "v5-dledger", fast=True, monkeypatch=monkeypatch)
    slow = _migrate(stores[("bench", "v4")], tmp_path / "slow", "v5-dledger", fast=False, monkeypatch=monkeypatch)
    assert fast["records_out"] == slow["records_out"] > 1000
    assert tree_digest(tmp_path / "fast") == tree_digest(tmp_path / "slow")
    assert len(os.listdir(tmp_path / "fast" / "dledger-n0" / "index")) > 10
