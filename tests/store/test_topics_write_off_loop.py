"""A Raft replica's topic create (applied on the event loop) writes ``topics.json`` with its fsyncs
in the metadata's writer thread, and ``persist`` (which precedes the applied mark) waits for it.

The injected slow write waits for a loop callback scheduled before the create: had it run on the
loop thread, the callback could not have run and the write records a stall."""
from __future__ import annotations

import asyncio
import threading

from mqbench.broker.formats import configs
from mqbench.broker.store import metadata
from mqbench.broker.store.metadata import TOPICS_FILE, Metadata


def _topics_on_disk(meta: Metadata) -> set[str]:
    return set(configs.parse_topics_json((meta.dir / TOPICS_FILE).read_bytes()).topics)


def test_a_replica_topic_create_leaves_the_loop_and_persist_waits_for_it(tmp_path, monkeypatch):
    ran = threading.Event()
    writes: list[bool] = []           # per write: whether the loop ran meanwhile
    real = metadata.write_atomic

    def slow_write(path, data, **kw) -> None:
        writes.append(ran.wait(2.0))
        real(path, data, **kw)

    monkeypatch.setattr(metadata, "write_atomic", slow_write)
    meta = Metadata(tmp_path, "v5-dledger", lambda: 1, topics_in_background=True)

    async def main() -> None:
        asyncio.get_running_loop().call_soon(ran.set)
        meta.create_topic("Orders", read_queue_nums=4, write_queue_nums=4)
        meta.create_topic("Clicks")
        assert meta.topic("Orders") is not None       # in memory at once
        await asyncio.to_thread(meta.persist)           # the applied mark's step: waits for the writes
        assert writes and all(writes)
        assert _topics_on_disk(meta) == {"Orders", "Clicks"}

    asyncio.run(main())
    meta.close()


def test_a_failed_background_write_is_done_again_by_persist(tmp_path, monkeypatch):
    real = metadata.write_atomic
    calls = []

    def failing_once(path, data, **kw) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise OSError(28, "injected ENOSPC")
        real(path, data, **kw)

    monkeypatch.setattr(metadata, "write_atomic", failing_once)
    meta = Metadata(tmp_path, "v5-dledger", lambda: 1, topics_in_background=True)
    meta.create_topic("Orders")
    meta.persist()
    assert _topics_on_disk(meta) == {"Orders"}
    meta.close()


def test_without_the_option_the_write_is_done_when_create_returns(tmp_path):
    meta = Metadata(tmp_path, "v5", lambda: 1)
    meta.create_topic("Orders")
    assert _topics_on_disk(meta) == {"Orders"}
    meta.close()
