"""Fuzzing the read side of the migration: the source walker on damaged logs, the journal parser,
inner-batch expansion, and DLedger entries the copy must carry or drop."""
from __future__ import annotations

import os

import pytest
from hypothesis import given, strategies as st

from migrate_golden import storebuilder
from mqbench.broker.formats import dledger as dl
from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.broker.store.reader import unwrap
from mqbench.broker.formats.record import Message, decode_message, encode_message
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_NEED_UNWRAP
from mqbench.broker.store.store import Store
from mqbench.errors import CorruptDataError, UserError
from mqbench.migrate.journal import JOURNAL_FILE, read_journal, write_journal
from mqbench.migrate.plan import Options
from mqbench.migrate.reframe import expand_inner_batch
from mqbench.migrate.run import migrate
from mqbench.migrate.source import decode_item, walk_log
from mqbench.migrate.verify import verify

LOG_BYTES = 2048
_names = st.text("abcXYZ_", min_size=1, max_size=6)
_props = st.dictionaries(_names, st.text("abc 123=;", min_size=1, max_size=8), max_size=3)


def _store(root: str, version: str = "v4", n: int = 12) -> str:
    builder = storebuilder()(root, version=version, log_file_bytes=LOG_BYTES)
    for i in range(n):
        builder.add("T", f"message-{i}".encode() * 5, queue_id=i % 2)
    builder.save()
    return root


@given(data=st.data())
def test_walker_on_damaged_logs_reports_file_and_offset(tmp_path_factory, data):
    version = data.draw(st.sampled_from(["v4", "v5-dledger"]))
    root = _store(str(tmp_path_factory.mktemp("fuzz")), version)
    folder = "commitlog" if version == "v4" else "dledger-n0/data"
    names = sorted(os.listdir(os.path.join(root, folder)))
    name = data.draw(st.sampled_from(names))
    path = os.path.join(root, folder, name)
    raw = bytearray(open(path, "rb").read())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    open(path, "wb").write(raw)
    try:
        for item in walk_log(root):
            if item.record is not None:
                decode_item(item)
    except CorruptDataError as exc:
        assert exc.where is not None and exc.where.startswith(folder) and exc.offset is not None
        assert "\n" not in str(exc)


@given(garbage=st.binary(max_size=200))
def test_journal_parser_refuses_garbage(tmp_path_factory, garbage):
    root = tmp_path_factory.mktemp("journal")
    (root / JOURNAL_FILE).write_bytes(garbage)
    try:
        doc = read_journal(root)
    except CorruptDataError as exc:
        assert JOURNAL_FILE in str(exc)
        return
    assert isinstance(doc, dict)


def test_journal_round_trip_and_missing_fields(tmp_path):
    doc = {"source": "/s", "source_files": [], "target_version": "v4", "options": {}, "step": "copy",
           "progress": {"folder": 0}, "queues": []}
    write_journal(tmp_path, doc)
    assert read_journal(tmp_path)["progress"] == {"folder": 0}
    (tmp_path / JOURNAL_FILE).write_text('{"schema": "mqbench.migrate-journal/1", "step": 3}')
    with pytest.raises(CorruptDataError, match="'step'"):
        read_journal(tmp_path)


@given(items=st.lists(st.tuples(st.binary(max_size=40), _props, st.integers(0, 3)), min_size=1, max_size=6),
       outer=_props, base=st.integers(0, 1000))
def test_expanded_inner_batch_matches_what_a_consumer_reads(items, outer, base):
    batch = [BatchItem(b, p, f) for b, p, f in items]
    props = {**outer, "INNER_NUM": str(len(batch)), "INNER_BASE": str(base)}
    record = Message(topic="B", body=encode_batch(batch), properties=props, queue_id=1, queue_offset=base,
                     sysflag=SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP, store_timestamp_ms=5)
    msg, _ = decode_message(encode_message(record))
    expanded = expand_inner_batch(msg)
    read = unwrap(decode_message(encode_message(record))[0], base)
    assert [m.queue_offset for m in expanded] == [m.queue_offset for m in read] == list(range(base, base + len(batch)))
    for e, r, item in zip(expanded, read, batch):
        assert (e.body, e.flag) == (r.body, r.flag) == (item.body, item.flag)
        assert {**r.properties} == {k: v for k, v in e.properties.items() if k in r.properties}
        assert "INNER_NUM" not in e.properties and not e.sysflag & SYSFLAG_INNER_BATCH
        encode_message(e)     # every expanded record is a valid record


def test_uncommitted_and_noop_entries(tmp_path):
    root = str(tmp_path / "src")
    store = Store.open(root, "v5-dledger", create=True, commitlog_segment_bytes=1 << 16, background_flush=False,
                       clock_ms=lambda: 1_700_000_000_000)
    for i in range(10):
        store.append(Message(topic="T", body=f"m{i}".encode(), queue_id=0), term=2)
        if i % 4 == 0:
            store.replicated.append_entry(2, b"", magic=dl.DLEDGER_MAGIC_NOOP)
    store.close()
    # the replica had committed only the first 8 entries
    ck = os.path.join(root, "dledger-n0", "checkpoint")
    open(ck, "wb").write(dl.encode_properties_file({"endIndex": 12, "committedIndex": 7}))
    plain = str(tmp_path / "plain")
    summary = migrate(root, plain, Options(target="v5"))
    assert summary["entries_dropped"] == 3 and summary["records_uncommitted_dropped"] == 4
    assert summary["records_out"] == 6
    result = verify(root, plain)
    assert result["ok"], result["differences"]
    raft = str(tmp_path / "raft")
    summary = migrate(root, raft, Options(target="v4-dledger"))
    assert summary["entries_out"] == 3 and summary["records_out"] == 10
    items = list(walk_log(raft))
    assert [i.entry_index for i in items] == list(range(13)) and {i.entry_term for i in items} == {2}
    assert [i.entry_magic for i in items if i.record is None] == [dl.DLEDGER_MAGIC_NOOP] * 3
    assert dl.dledger_checkpoint(open(os.path.join(raft, "dledger-n0", "checkpoint"), "rb").read()) == (12, 7)
    result = verify(root, raft)
    assert result["ok"], result["differences"]
    with pytest.raises(UserError, match="does not fit"):
        migrate(root, str(tmp_path / "bad"), Options(target="v4-dledger", segment_bytes=64))
    with pytest.raises(UserError, match="does not fit"):
        migrate(root, str(tmp_path / "bad2"), Options(target="v4", segment_bytes=64))
