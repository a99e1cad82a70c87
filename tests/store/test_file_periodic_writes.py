"""The periodic writes (checkpoints, offsets, timercheck) write only what changed, replace files
with renames only, and stay crash safe."""
import os

import pytest

from store_files_helpers import open_store
from mqbench.broker.formats.record import Message
from mqbench.broker.store.atomic import read_with_backup, write_atomic
from mqbench.broker.timer.index import TimerIndex


def _files(root) -> dict[str, tuple[int, int]]:
    """path -> (inode, mtime_ns) of every file under ``root``: a rewrite changes one of them."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), root)] = (st.st_ino, st.st_mtime_ns)
    return out


def test_write_atomic_keeps_the_old_version_without_unlink_or_link(tmp_path, monkeypatch):
    path = tmp_path / "config" / "f.json"
    write_atomic(path, b"one")
    calls = []
    for name in ("unlink", "link", "remove"):
        monkeypatch.setattr(os, name, lambda *a, _n=name, **k: calls.append(_n) or (_ for _ in ()).throw(
            AssertionError(f"os.{_n} called")))
    write_atomic(path, b"two")
    write_atomic(path, b"three")
    assert calls == []
    assert path.read_bytes() == b"three" and (tmp_path / "config" / "f.json.bak").read_bytes() == b"two"
    assert not (tmp_path / "config" / "f.json.tmp").exists()


def test_a_crash_between_the_two_renames_reads_the_old_version(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    write_atomic(path, b"old")
    real_replace = os.replace

    def crash_on_second(src, dst):
        if str(src).endswith(".tmp"):
            raise KeyboardInterrupt("killed")          # the process dies after path -> path.bak
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, b"new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert not path.exists()
    assert read_with_backup(path, bytes) == b"old"
    write_atomic(path, b"newer")                       # the next write works from there
    assert read_with_backup(path, bytes) == b"newer"


def test_an_unchanged_store_writes_nothing_on_its_periodic_flush(tmp_path):
    store = open_store(tmp_path / "s", "v5-dledger")
    store.append(Message(topic="T", body=b"x"), term=1)
    store.commit_offset("G", "T", 0, 1)
    store.set_delay_offset(1, 5)
    store._flush_queues_and_checkpoint()            # what the background flush runs every second
    before = _files(tmp_path / "s")
    store.commit_offset("G", "T", 0, 1)              # the same offsets committed again
    store.set_delay_offset(1, 5)
    store._flush_queues_and_checkpoint()
    assert _files(tmp_path / "s") == before
    store.commit_offset("G", "T", 0, 2)              # a change is written
    store._flush_queues_and_checkpoint()
    after = _files(tmp_path / "s")
    assert after["config/consumerOffset.json"] != before["config/consumerOffset.json"]
    assert after["dledger-n0/checkpoint"] == before["dledger-n0/checkpoint"]
    store.close()
    assert store.query_offset("G", "T", 0) == 2
    again = open_store(tmp_path / "s", "v5-dledger", create=False)
    assert again.query_offset("G", "T", 0) == 2 and again.delay_offset(1) == 5
    assert again.dledger.committed_index == 0
    again.close()


def test_the_timer_index_rewrites_timercheck_only_when_it_moved(tmp_path):
    ix = TimerIndex(tmp_path, clock_ms=lambda: 1000)
    ix.add(0, 5000, 1000)
    ix.checkpoint(1000)
    check = tmp_path / "config" / "timercheck"
    first = os.stat(check)
    ix.checkpoint(1000)
    same = os.stat(check)
    assert (same.st_ino, same.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    ix.checkpoint(2000)
    assert os.stat(check).st_ino != first.st_ino
    ix.close()
    again = TimerIndex(tmp_path, clock_ms=lambda: 1000)
    assert again.last_read_time_ms == 2000 and again.next_queue_offset == 1
    again.close()


def _free_elsewhere(lock) -> bool:
    """Whether another thread could take ``lock`` now."""
    import threading
    got = []

    def probe():
        got.append(lock.acquire(blocking=False))
        if got[0]:
            lock.release()
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return got[0]


def test_the_periodic_files_are_written_outside_the_locks_appends_and_commits_take(tmp_path, monkeypatch):
    from mqbench.broker.store import dledger_log, metadata
    store = open_store(tmp_path / "s", "v5-dledger")
    store.append(Message(topic="T", body=b"x"), term=1)
    store.commit_offset("G", "T", 0, 1)
    seen = []
    for module in (dledger_log, metadata):
        real = module.write_atomic
        monkeypatch.setattr(module, "write_atomic", lambda path, data, _real=real, **kw: seen.append(
            (os.path.basename(path), _free_elsewhere(store._lock), _free_elsewhere(store.meta._lock)))
            or _real(path, data, **kw))
    store._flush_queues_and_checkpoint()
    assert sorted(seen) == [("checkpoint", True, True), ("consumerOffset.json", True, True)]
    store.close()
