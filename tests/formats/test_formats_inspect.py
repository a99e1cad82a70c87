"""``mqbench inspect`` on small stores laid out as RocketMQ writes them: plain and DLedger, v4 and
v5 JSON files, clean and damaged (torn tail, flipped CRC byte, CQ past the end, ...)."""
import hashlib
import json
import os
import pathlib
import struct
import tempfile

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from formats_storebuild import StoreBuilder
from mqbench.broker.formats import dledger as dl
from mqbench.broker.formats.batch import BatchItem
from mqbench.inspection.report import SCHEMA, inspect_store, iter_messages
from mqbench.broker.formats.record_layout import SYSFLAG_TX_PREPARED
from mqbench.cli import cli
from mqbench.errors import UserError

OFFSETS = {("TopicTest", "group_a"): {0: 3, 1: 9}, ("%RETRY%group_a", "group_a"): {0: 0}}


def build(tmp_path, version="v4", n=20, name="store", **kw):
    b = StoreBuilder(str(tmp_path / name), version=version, **kw)
    for i in range(n):
        b.add("TopicTest", b"x" * (40 + i), queue_id=i % 2, properties={"TAGS": "TagA", "KEYS": f"k{i}"})
    b.add("Other", b"y", properties={"WAIT": "true"})
    return b


def snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            out[os.path.relpath(path, root)] = (hashlib.sha256(open(path, "rb").read()).hexdigest(), st.st_mtime_ns)
    return out


def kinds(doc):
    return {d["kind"] for d in doc["damage"]}


def queue(doc, topic, qid):
    return next(q for q in doc["queues"] if q["topic"] == topic and q["queue_id"] == qid)


@pytest.mark.parametrize("version", ["v4", "v5", "v4-dledger", "v5-dledger"])
def test_clean_store(tmp_path, version):
    b = build(tmp_path, version)
    b.save(offsets=OFFSETS, delay_offsets={1: 5, 3: 0})
    doc = inspect_store(b.root)
    assert doc["schema"] == SCHEMA and doc["version"] == version
    assert doc["damage"] == [] and doc["damage_counts"] == {}
    assert queue(doc, "TopicTest", 0) == {"topic": "TopicTest", "queue_id": 0, "cq_type": "SimpleCQ", "messages": 10,
                                          "min_offset": 0, "max_offset": 10, "log_records": 10}
    assert queue(doc, "Other", 0)["messages"] == 1
    log = doc["logs"][0]
    assert log["records"] == 21 and log["files"] >= 3 and log["file_size_bytes"] == 1024 and log["end_of_file_blanks"] >= 2
    assert log["valid_end_offset"] == b.write_pos
    folders = {f["folder"]: f for f in doc["files"]}
    assert folders[b.log_folder]["files"] == log["files"]
    assert folders[b.log_folder]["size_bytes"] == 1024 * log["files"]
    lag = {(c["topic"], c["queue_id"]): c["lag_messages"] for c in doc["consumer_offsets"]}
    assert lag == {("TopicTest", 0): 7, ("TopicTest", 1): 1, ("%RETRY%group_a", 0): None}
    assert doc["delay_offsets"] == [{"level": 1, "queue_id": 0, "offset": 5}, {"level": 3, "queue_id": 2, "offset": 0}]
    topics = {t["topic"]: t for t in doc["topics"]}
    assert topics["TopicTest"]["messages"] == 20 and topics["TopicTest"]["read_queue_nums"] == 4
    if version.endswith("dledger"):
        assert (log["entries"], log["first_index"], log["last_index"], log["committed_index"]) == (21, 0, 20, 20)
        assert log["current_term"] == 1
    assert doc["checkpoint"]["physic_msg_timestamp_ms"] == b.store_time_ms


def test_inspect_never_modifies_the_store(tmp_path):
    b = build(tmp_path, "v5-dledger")
    b.save(offsets=OFFSETS)
    with open(os.path.join(b.root, b.log_folder, "00000000000000004096"), "wb") as f:
        f.write(b"")  # a zero-length last file: RocketMQ would delete it, inspect must not
    before = snapshot(b.root)
    if os.geteuid() != 0:  # read-only permissions prove no write is even attempted
        for dirpath, _dirs, files in os.walk(b.root):
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o444)
    inspect_store(b.root)
    list(iter_messages(b.root))
    assert snapshot(b.root) == before
    assert not os.path.exists(os.path.join(b.root, "abort")) and not os.path.exists(os.path.join(b.root, "lock"))


@pytest.mark.parametrize("version", ["v4", "v5-dledger"])
def test_torn_tail(tmp_path, version):
    b = build(tmp_path, version)
    b.save()
    end = b.write_pos
    name = os.path.join(b.root, b.log_folder, f"{end - end % 1024:020d}")
    with open(name, "r+b") as f:
        f.seek(end % 1024)
        f.write(b"\x00\x00\x00\x50torn record")  # a half-written record
    doc = inspect_store(b.root)
    torn = [d for d in doc["damage"] if d["kind"] == "torn_tail"]
    assert len(torn) == 1
    assert torn[0]["file"] == f"{b.log_folder}/{end - end % 1024:020d}" and torn[0]["offset"] == end % 1024
    assert torn[0]["valid_end_offset"] == end and torn[0]["nonzero_after_bytes"] == 12
    assert doc["logs"][0]["records"] == 21


def test_flipped_crc_byte(tmp_path):
    b = build(tmp_path, "v4")
    b.save()
    w = b.written[3]
    path = os.path.join(b.root, "commitlog", f"{w.physical_offset - w.physical_offset % 1024:020d}")
    with open(path, "r+b") as f:
        f.seek(w.physical_offset % 1024 + 8)  # BODYCRC
        f.write(b"\x7f")
    doc = inspect_store(b.root)
    crc = [d for d in doc["damage"] if d["kind"] == "crc_mismatch"]
    assert len(crc) == 1 and crc[0]["physical_offset"] == w.physical_offset
    assert crc[0]["file"].endswith(os.path.basename(path)) and crc[0]["offset"] == w.physical_offset % 1024
    assert doc["logs"][0]["records"] == 21  # the walk goes on past it
    msgs = list(iter_messages(b.root))
    assert [m["crc_ok"] for m in msgs].count(False) == 1


def test_flipped_body_byte_in_dledger(tmp_path):
    b = build(tmp_path, "v5-dledger")
    b.save()
    w = b.written[5]
    path = os.path.join(b.root, b.log_folder, f"{w.physical_offset - w.physical_offset % 1024:020d}")
    body_at = w.physical_offset % 1024 + 88
    with open(path, "r+b") as f:
        f.seek(body_at)
        f.write(b"Z")
    doc = inspect_store(b.root)
    assert kinds(doc) == {"crc_mismatch"}
    assert doc["damage"][0]["physical_offset"] == w.physical_offset


def test_cq_past_end_mismatch_and_missing(tmp_path):
    b = build(tmp_path, "v4")
    b.save()
    cq = os.path.join(b.root, "consumequeue", "TopicTest", "0", "0" * 20)
    with open(cq, "r+b") as f:
        data = bytearray(f.read())
        # entry 2 -> past the end of the log; entry 3 -> the record of entry 4 (wrong queue offset)
        struct.pack_into(">qiq", data, 40, b.write_pos + 100, 60, 0)
        e4 = struct.unpack_from(">qiq", data, 80)
        struct.pack_into(">qiq", data, 60, *e4)
        f.seek(0)
        f.write(data)
    os.remove(os.path.join(b.root, "consumequeue", "TopicTest", "1", "0" * 20))  # queue 1 loses its first file
    doc = inspect_store(b.root)
    by_kind = {}
    for d in doc["damage"]:
        by_kind.setdefault(d["kind"], []).append(d)
    assert by_kind["cq_past_end"][0]["queue_offset"] == 2 and by_kind["cq_past_end"][0]["offset"] == 40
    assert by_kind["cq_mismatch"][0]["queue_offset"] == 3 and "queue offset 4" in by_kind["cq_mismatch"][0]["detail"]
    missing = {(d["queue_id"], d["queue_offset"]) for d in by_kind["cq_missing_entry"]}
    assert (0, 2) in missing and (0, 3) in missing
    assert {(1, q) for q in range(4)} <= missing  # the first CQ file of queue 1 is gone
    assert doc["damage_counts"]["cq_past_end"] == 1


def test_cq_pointing_at_another_topic(tmp_path):
    b = build(tmp_path, "v5-dledger")
    b.save()
    other = next(w for w in b.written if w.topic == "Other")
    cq = os.path.join(b.root, "consumequeue", "TopicTest", "1", "0" * 20)
    with open(cq, "r+b") as f:
        f.write(struct.pack(">qiq", other.physical_offset, other.size, 0))
    doc = inspect_store(b.root)
    mismatch = [d for d in doc["damage"] if d["kind"] == "cq_mismatch"]
    assert mismatch and "topic 'Other'" in mismatch[0]["detail"]


def test_record_without_cq_entry_and_prepared_transactions(tmp_path):
    b = build(tmp_path, "v4", n=4)
    b.add("TopicTest", b"late", queue_id=0, cq=False)
    b.add("TopicTest", b"half", queue_id=0, sysflag=SYSFLAG_TX_PREPARED)  # no CQ entry by design
    b.save()
    doc = inspect_store(b.root)
    missing = [d for d in doc["damage"] if d["kind"] == "cq_missing_entry"]
    assert len(missing) == 1 and missing[0]["queue_offset"] == 2
    assert queue(doc, "TopicTest", 0)["log_records"] == 3


def test_batch_cq_topic(tmp_path):
    b = StoreBuilder(str(tmp_path / "s"), version="v5", batch_topics={"BatchTopic"})
    b.add("BatchTopic", items=[BatchItem(b"a", {"K": "1"}), BatchItem(b"b"), BatchItem(b"c")])
    b.add("BatchTopic", items=[BatchItem(b"d")])
    b.add("BatchTopic", b"single")
    b.save()
    doc = inspect_store(b.root)
    assert doc["version"] == "v5" and doc["damage"] == []
    q = queue(doc, "BatchTopic", 0)
    assert (q["cq_type"], q["messages"], q["min_offset"], q["max_offset"], q["log_records"]) == ("BatchCQ", 5, 0, 5, 3)


def test_cq_with_filler_starts_later(tmp_path):
    b = build(tmp_path, "v4", n=30)
    b.save()
    b.filler_cq("TopicTest", 0, 9)  # the first CQ file starts at 160/20 = 8, offsets 0..8 gone
    doc = inspect_store(b.root)
    q = queue(doc, "TopicTest", 0)
    assert (q["messages"], q["min_offset"], q["max_offset"]) == (6, 9, 15)
    assert {d["queue_offset"] for d in doc["damage"] if d["kind"] == "cq_missing_entry"} == set(range(9))


def test_dledger_index_mismatch_and_bad_segment_files(tmp_path):
    b = build(tmp_path, "v5-dledger")
    b.save()
    idx = os.path.join(b.root, "dledger-n0", "index", "0" * 20)
    with open(idx, "r+b") as f:
        f.seek(32 * 2 + 4)
        f.write(struct.pack(">q", 999))
    with open(os.path.join(b.root, "consumequeue", "Other", "0", "00000000000000000160"), "wb") as f:
        f.write(b"short")
    with open(os.path.join(b.root, "consumequeue", "Other", "0", "notes.txt"), "wb") as f:
        f.write(b"x")
    doc = inspect_store(b.root)
    mism = [d for d in doc["damage"] if d["kind"] == "dledger_index_mismatch"]
    assert len(mism) == 1 and mism[0]["entry_index"] == 2 and "pos 999" in mism[0]["detail"]
    assert {"file_size_mismatch", "unexpected_file"} <= kinds(doc)


def test_config_damage_falls_back_to_bak(tmp_path):
    b = build(tmp_path, "v5")
    b.save(offsets=OFFSETS)
    path = os.path.join(b.root, "config", "consumerOffset.json")
    os.replace(path, path + ".bak")
    with open(path, "w") as f:
        f.write('{"offsetTable":{"TopicTest@group_a":{0:')
    with open(os.path.join(b.root, "checkpoint"), "wb") as f:
        f.write(b"\1" * 10)
    doc = inspect_store(b.root)
    bad = [d for d in doc["damage"] if d["kind"] == "config_unreadable"]
    assert {d["file"] for d in bad} == {"config/consumerOffset.json", "checkpoint"}
    assert len(doc["consumer_offsets"]) == 3  # read from the .bak


def test_abort_file_is_a_note(tmp_path):
    b = build(tmp_path, "v4", n=2)
    b.save()
    open(os.path.join(b.root, "abort"), "w").close()
    assert any("abort" in n for n in inspect_store(b.root)["notes"])


def test_upgraded_store_commitlog_below_dledger(tmp_path):
    old = build(tmp_path, "v4", n=4, name="old")
    old.save()
    new = StoreBuilder(str(tmp_path / "old"), version="v4-dledger")
    doc_old = inspect_store(old.root)
    assert doc_old["version"] == "v4"
    # The DLedger part starts at the divided offset: the file after the last commitlog file.
    divided = (old.write_pos // 1024 + 1) * 1024
    new.write_pos = divided
    new.files[new.log_folder] = bytearray(divided)
    new.add("TopicTest", b"after", queue_id=0)
    new._save_segments(new.log_folder, new.files[new.log_folder], 1024, start=divided)
    new._save_segments("dledger-n0/index", b"".join(new.index_units), 256)
    for name in os.listdir(os.path.join(new.root, new.log_folder)):
        if int(name) < divided:
            os.remove(os.path.join(new.root, new.log_folder, name))
    doc = inspect_store(new.root)
    assert doc["version"] == "v4-dledger"
    assert [log["folder"] for log in doc["logs"]] == ["commitlog", "dledger-n0/data"]
    assert doc["logs"][1]["min_offset"] == divided and doc["logs"][1]["records"] == 1
    msgs = list(iter_messages(new.root))
    assert len(msgs) == 6 and msgs[-1]["physical_offset"] == divided + 48


def test_iter_messages_fields_and_limit(tmp_path):
    b = build(tmp_path, "v5-dledger", n=6)
    b.save()
    msgs = list(iter_messages(b.root))
    assert [(m["topic"], m["queue_id"], m["queue_offset"]) for m in msgs[:3]] == [
        ("TopicTest", 0, 0), ("TopicTest", 1, 0), ("TopicTest", 0, 1)]
    assert msgs[0]["physical_offset"] == 48 and msgs[0]["body_size_bytes"] == 40
    assert msgs[0]["properties"] == {"TAGS": "TagA", "KEYS": "k0"}
    assert len(list(iter_messages(b.root, limit=2))) == 2 and list(iter_messages(b.root, limit=0)) == []


# --- the command line ---

def test_cli_text_and_json(tmp_path):
    b = build(tmp_path, "v5-dledger")
    b.save(offsets=OFFSETS)
    runner = CliRunner()
    result = runner.invoke(cli, ["inspect", b.root])
    assert result.exit_code == 0, result.output
    assert "v5-dledger" in result.output and "damage: none found" in result.output
    assert "TopicTest" in result.output
    result = runner.invoke(cli, ["inspect", b.root, "--json"])
    doc = json.loads(result.output)
    assert doc["schema"] == "mqbench.inspect/1" and "messages" not in doc
    result = runner.invoke(cli, ["inspect", b.root, "--json", "--messages", "--limit", "4"])
    doc = json.loads(result.output)
    assert len(doc["messages"]) == 4 and doc["messages"][0]["body_size_bytes"] == 40
    result = runner.invoke(cli, ["inspect", b.root, "--messages", "--limit", "2"])
    assert result.exit_code == 0 and "KEYS=k1" in result.output and "KEYS=k2" not in result.output


def test_cli_damage_exits_zero_and_names_file(tmp_path):
    b = build(tmp_path, "v4")
    b.save()
    end = b.write_pos
    with open(os.path.join(b.root, "commitlog", f"{end - end % 1024:020d}"), "r+b") as f:
        f.seek(end % 1024)
        f.write(b"\xff" * 5)
    result = CliRunner().invoke(cli, ["inspect", b.root])
    assert result.exit_code == 0
    assert f"torn_tail: commitlog/{end - end % 1024:020d} at offset {end % 1024}" in result.output


def test_cli_not_a_store(tmp_path):
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0 and "not a RocketMQ or mqbench store" in result.output
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such store folder" in result.output
    with pytest.raises(UserError):
        inspect_store(str(tmp_path))


@pytest.mark.parametrize("version", ["v4", "v5", "v4-dledger", "v5-dledger"])
def test_store_written_by_our_store_layer(tmp_path, version):
    from mqbench.broker.formats.record import Message
    from mqbench.broker.store.store import Store
    root = str(tmp_path / "ours")
    store = Store.open(root, version, create=True, commitlog_segment_bytes=4096, cq_segment_bytes=200,
                       bcq_segment_bytes=460, dledger_index_segment_bytes=320, background_flush=False)
    if version.startswith("v5"):
        store.create_topic("B", attributes={"queue.type": "BatchCQ"})
        store.append_batch("B", 0, [BatchItem(b"1"), BatchItem(b"2")], consolidate=True)
    for i in range(30):
        store.append(Message(topic="T", body=b"x" * 100, queue_id=i % 3, properties={"TAGS": "a"}))
    store.commit_offset("g", "T", 0, 4)
    store.close()
    doc = inspect_store(root)
    assert doc["version"] == version and doc["damage"] == []
    assert [(q["topic"], q["queue_id"], q["messages"]) for q in doc["queues"] if q["topic"] == "T"] == \
        [("T", 0, 10), ("T", 1, 10), ("T", 2, 10)]
    assert doc["consumer_offsets"][0]["lag_messages"] == 6
    if version.startswith("v5"):
        assert queue(doc, "B", 0)["messages"] == 2


def test_expired_log_files_are_not_damage(tmp_path):
    b = build(tmp_path, "v4")
    b.save()
    os.remove(os.path.join(b.root, "commitlog", "0" * 20))  # RocketMQ deleted the oldest file
    doc = inspect_store(b.root)
    assert "cq_mismatch" not in kinds(doc) and "cq_past_end" not in kinds(doc)
    assert doc["logs"][0]["min_offset"] == 1024


def test_undecodable_topic_is_listed_not_fatal(tmp_path):
    b = build(tmp_path, "v4", n=2)
    b.save()
    w = b.written[1]
    raw = bytearray(open(os.path.join(b.root, "commitlog", "0" * 20), "rb").read())
    topic_at = w.physical_offset + 89 + 41  # 88 + body 41 + 1 length byte for two IPv4 hosts
    assert raw[topic_at:topic_at + 9] == b"TopicTest"
    props_at = topic_at + 9 + 2
    torn = bytearray(raw)
    torn[topic_at] = 0xFF
    open(os.path.join(b.root, "commitlog", "0" * 20), "wb").write(torn)
    # a topic no broker writes: not a record (recovery cuts there, migrate refuses): the log ends there
    doc = inspect_store(b.root)
    tail = [d for d in doc["damage"] if d["kind"] == "torn_tail"]
    assert tail and tail[0]["offset"] == w.physical_offset and "topic" in tail[0]["detail"]
    assert len(list(iter_messages(b.root))) == 1
    raw[props_at + 1] = 0xFF                 # properties that are not UTF-8: a whole record that does not decode
    open(os.path.join(b.root, "commitlog", "0" * 20), "wb").write(raw)
    doc = inspect_store(b.root)
    assert "corrupt_record" in kinds(doc)
    msgs = list(iter_messages(b.root))
    assert msgs[1].get("error") and msgs[0]["topic"] == "TopicTest"
    result = CliRunner().invoke(cli, ["inspect", b.root, "--messages"])
    assert result.exit_code == 0 and "UNDECODABLE" in result.output


@settings(max_examples=25)
@given(st.sampled_from(["v4", "v5-dledger"]), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 256)),
                                                      min_size=1, max_size=6))
def test_fuzz_damaged_stores_never_crash(version, flips):
    """Random byte changes (256 = cut the file there) anywhere in the store: damage, never a crash."""
    with tempfile.TemporaryDirectory() as tmp:
        b = build(pathlib.Path(tmp), version, n=8)
        b.save(offsets=OFFSETS)
        files = sorted(p for p in pathlib.Path(b.root).rglob("*") if p.is_file() and p.stat().st_size)
        for at, value in flips:
            path = files[at % len(files)]
            data = bytearray(path.read_bytes())
            if not data:
                continue
            if value == 256:
                del data[at % len(data):]
            else:
                data[at % len(data)] = value
            path.write_bytes(bytes(data))
        doc = inspect_store(b.root)
        assert doc["schema"] == SCHEMA
        for msg in iter_messages(b.root):
            assert "physical_offset" in msg


def test_timer_store_and_index_files(tmp_path):
    from mqbench.broker.formats import index_file as ix, timer_formats as tf
    b = build(tmp_path, "v5", n=4)
    b.save()
    os.makedirs(os.path.join(b.root, "timerlog"))
    units = b"".join(tf.encode_timer_unit(tf.TimerLogUnit(-1 if i == 0 else (i - 1) * 52, 1, 1_700_000_000_000,
                                                          10_000, i * 200, 150, 7)) for i in range(3))
    log = bytearray(512)
    log[:len(units)] = units
    with open(os.path.join(b.root, "timerlog", "0" * 20), "wb") as f:
        f.write(bytes(log))
    with open(os.path.join(b.root, "timerwheel"), "wb") as f:
        f.truncate(tf.TIMER_WHEEL_FILE_BYTES)  # sparse: instant
    with open(os.path.join(b.root, "config", "timercheck"), "wb") as f:
        f.write(tf.encode_timer_check(tf.TimerCheckpoint(1_700_000_001_000, 156, 3)))
    os.makedirs(os.path.join(b.root, "index"))
    header, writes = ix.plan_put(ix.IndexHeader(), 0, "TopicTest#k0", 0, 1_700_000_000_001, hash_slot_num=10, index_num=10)
    with open(os.path.join(b.root, "index", "20231114221320001"), "wb") as f:
        f.write(ix.encode_index_header(header) + bytes(40 + 200))
    doc = inspect_store(b.root)
    assert doc["damage"] == []
    assert doc["timer"] == {"timerwheel_size_bytes": 38_707_200, "last_read_time_ms": 1_700_000_001_000,
                            "last_timer_log_flush_offset": 156, "last_timer_queue_offset": 3,
                            "timerlog_units": 3, "timerlog_valid_end_offset": 156}
    assert doc["index_files"] == [{"file": "index/20231114221320001", "items": 1, "hash_slots_used": 1,
                                   "begin_timestamp_ms": 1_700_000_000_001, "end_timestamp_ms": 1_700_000_000_001,
                                   "begin_physical_offset": 0, "end_physical_offset": 0}]
    log[156:160] = b"\x00\x00\x00\x34"  # a torn unit after the last one
    with open(os.path.join(b.root, "timerlog", "0" * 20), "wb") as f:
        f.write(bytes(log))
    with open(os.path.join(b.root, "timerwheel"), "wb") as f:
        f.truncate(1000)
    doc = inspect_store(b.root)
    torn = [d for d in doc["damage"] if d["kind"] == "torn_tail"]
    assert torn == [{"kind": "torn_tail", "file": "timerlog/" + "0" * 20, "offset": 156, "valid_end_offset": 156,
                     "nonzero_after_bytes": 1, "detail": torn[0]["detail"]}]
    assert "file_size_mismatch" in kinds(doc)


def test_dledger_commit_state(tmp_path):
    b = build(tmp_path, "v5-dledger", n=4)
    b.save()
    path = os.path.join(b.root, "dledger-n0", "checkpoint")
    with open(path, "wb") as f:
        f.write(b"endIndex=4\ncommittedIndex=2\n")
    doc = inspect_store(b.root)
    assert any("2 entries after the committed index 2" in n for n in doc["notes"])
    with open(path, "wb") as f:
        f.write(b"endIndex=9\ncommittedIndex=9\n")
    assert "dledger_entries_missing" in kinds(inspect_store(b.root))
    with open(path, "wb") as f:
        f.write(b"endIndex=x\n")
    assert "config_unreadable" in kinds(inspect_store(b.root))


@pytest.mark.slow
@pytest.mark.realproc
def test_full_size_1gib_commitlog_streams(tmp_path):
    """A real-size (1 GiB, sparse) commitlog file with records at its start and a torn tail near
    its end: inspect reads it in a bounded amount of memory (checked in a child process)."""
    import subprocess
    import sys
    b = build(tmp_path, "v4", n=50, log_file_bytes=1 << 30, cq_file_bytes=6_000_000)
    for i in range(6000):  # ~200 MiB of records: the walk and the CQ check touch all of them
        b.add("Big", os.urandom(32 * 1024), queue_id=i % 4)
    b.save()
    path = os.path.join(b.root, "commitlog", "0" * 20)
    assert os.path.getsize(path) == 1 << 30
    with open(path, "r+b") as f:
        f.seek((1 << 30) - 100)
        f.write(b"\1" * 10)  # garbage far after the valid end
    # VmHWM (peak resident set of this process image); ru_maxrss would carry the parent's peak over exec.
    code = ("import json, sys; from mqbench.inspection.report import inspect_store, iter_messages;"
            "doc = inspect_store(sys.argv[1]); n = sum(1 for _ in iter_messages(sys.argv[1]));"
            "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')][0];"
            "print(json.dumps([doc['damage'], n, hwm]))")
    out = subprocess.run([sys.executable, "-c", code, b.root], capture_output=True, text=True, timeout=120, check=True)
    damage, n, maxrss_kib = json.loads(out.stdout)
    assert n == 6051
    assert [d["kind"] for d in damage] == ["torn_tail"] and damage[0]["nonzero_after_bytes"] == 10
    assert damage[0]["valid_end_offset"] == b.write_pos
    assert maxrss_kib < 200 * 1024, f"inspect used {maxrss_kib} KiB for a 1 GiB file"


def test_uncommitted_dledger_entries_need_no_cq_entry(tmp_path):
    b = build(tmp_path, "v5-dledger", n=4)
    b.add("TopicTest", b"uncommitted-1", queue_id=0, cq=False)
    b.add("TopicTest", b"uncommitted-2", queue_id=0, cq=False)
    b.save()
    path = os.path.join(b.root, "dledger-n0", "checkpoint")
    with open(path, "wb") as f:
        f.write(b"endIndex=6\ncommittedIndex=4\n")
    doc = inspect_store(b.root)
    assert doc["damage"] == [] and any("2 entries after the committed index 4" in n for n in doc["notes"])
    with open(path, "wb") as f:
        f.write(b"endIndex=6\ncommittedIndex=6\n")  # now they should have been dispatched
    doc = inspect_store(b.root)
    assert doc["damage_counts"] == {"cq_missing_entry": 2}


def test_cli_file_instead_of_folder(tmp_path):
    path = tmp_path / "checkpoint"
    path.write_bytes(b"\0" * 4096)
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_damage_list_is_capped_with_totals(tmp_path):
    from mqbench.inspection.report import DAMAGE_LIST_MAX
    b = build(tmp_path, "v4", n=60, log_file_bytes=16384)
    b.save()
    import shutil
    shutil.rmtree(os.path.join(b.root, "consumequeue", "TopicTest"))
    doc = inspect_store(b.root)
    assert doc["damage_counts"] == {"cq_missing_entry": 60}
    assert len(doc["damage"]) == DAMAGE_LIST_MAX
    result = CliRunner().invoke(cli, ["inspect", b.root])
    assert f"... and {60 - DAMAGE_LIST_MAX} more cq_missing_entry" in result.output


@pytest.mark.parametrize("version", ["v4-dledger", "v5-dledger"])
def test_term_changes_are_not_damage(tmp_path, version):
    """Every new leader starts its term with an empty no-op entry: a healthy store after a term
    change (or a failover, or a DLedger migration) has no damage (the gap check skipped them)."""
    b = StoreBuilder(str(tmp_path / "store"), version=version, log_file_bytes=4096)
    for term in (1, 2, 3):
        b.noop(term)
        for i in range(4):
            b.add("TopicTest", b"x" * 300, queue_id=i % 2, properties={"KEYS": f"k{term}-{i}"})
    b.noop(4, body=b"mqbench-meta", magic=dl.DLEDGER_MAGIC)
    b.save()
    doc = inspect_store(b.root)
    assert doc["damage"] == []
    log = doc["logs"][0]
    assert (log["entries"], log["records"], log["first_index"], log["last_index"], log["last_term"]) == (16, 12, 0, 15, 4)
    # real damage is still found: an index that does not follow
    data_dir = os.path.join(b.root, b.log_folder)
    seg = os.path.join(data_dir, sorted(os.listdir(data_dir))[0])
    raw = bytearray(open(seg, "rb").read())
    second = int.from_bytes(raw[4:8], "big")                # the entry after the first no-op
    raw[second + 8:second + 16] = (7).to_bytes(8, "big")
    open(seg, "wb").write(raw)
    assert "dledger_index_gap" in kinds(inspect_store(b.root))
