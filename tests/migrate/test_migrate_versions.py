"""Offline migration between every pair of versions: messages, queue offsets, consumer and delay
offsets, configs, DLedger indexes, rollback refusals, corrupt sources."""
from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from click.testing import CliRunner

from migrate_golden import SEGMENT_BYTES, build_store, storebuilder, tree_bytes
from mqbench.broker.formats import configs, dledger as dl
from mqbench.inspection.report import inspect_store
from mqbench.broker.formats.record import decode_message
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.store.store import Store
from mqbench.cli import cli as cli_main
from mqbench.codecs.registry import parse_codec
from mqbench.errors import CorruptDataError, UserError
from mqbench.migrate.plan import Options, make_plan
from mqbench.migrate.run import migrate
from mqbench.migrate.source import walk_log
from mqbench.migrate.verify import verify

VERSIONS = ("v4", "v5", "v4-dledger", "v5-dledger")


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    base = tmp_path_factory.mktemp("golden")
    return {v: build_store(str(base / v), v)["root"] for v in VERSIONS}


def _options(src_version: str, target: str) -> Options:
    # zstd bodies of a v5 store have no v4 form: re-compress them with zlib
    codec = parse_codec("zlib") if src_version.startswith("v5") and target.startswith("v4") else None
    return Options(target=target, codec=codec)


def _open(root: str) -> Store:
    return Store.open(root, commitlog_segment_bytes=SEGMENT_BYTES, background_flush=False)


def _digest(root: str) -> str:
    h = hashlib.sha256()
    for name, data in sorted(tree_bytes(root).items()):
        h.update(name.encode() + b"\0" + data)
    return h.hexdigest()


@pytest.mark.parametrize("version", VERSIONS)
def test_same_version_is_refused_as_a_copy(golden, tmp_path, version):
    """Migrating an mqbench store to its own version would only copy it: refused with a hint,
    nothing written (a --codec or another --segment-bytes makes it a real migration)."""
    out = tmp_path / "out"
    with pytest.raises(UserError, match="same version.*cp -a"):
        migrate(golden[version], str(out), _options(version, version))
    assert not out.exists()
    res = CliRunner().invoke(cli_main, ["migrate", golden[version], "--to", version, "--out", str(out)])
    assert res.exit_code == 2 and "same version" in res.output and "Traceback" not in res.output
    migrate(golden[version], str(out), Options(target=version, segment_bytes=64 * 1024))
    assert verify(golden[version], str(out))["ok"]


@pytest.mark.parametrize("src_version,target", [(a, b) for a in VERSIONS for b in VERSIONS if a != b])
def test_every_pair_round_trips(golden, tmp_path, src_version, target):
    src = golden[src_version]
    before = _digest(src)
    out = str(tmp_path / "out")
    summary = migrate(src, out, _options(src_version, target))
    result = verify(src, out)
    assert result["ok"], result["differences"]
    assert result["messages_compared"] >= 150 and result["offsets_checked"] >= 5
    assert inspect_store(src)["damage"] == []          # inspect is quiet on healthy stores,
    assert inspect_store(out)["damage"] == []          # mqbench's own and every migrate output
    back = str(tmp_path / "back")
    migrate(out, back, _options(target, src_version))
    result = verify(src, back)
    assert result["ok"], result["differences"]
    assert _digest(src) == before, "the source store was modified"
    assert summary["records_out"] >= summary["records_in"]


@pytest.mark.parametrize("src_version,target", [("v5", "v4"), ("v5-dledger", "v4-dledger"), ("v4", "v5-dledger"),
                                                ("v5", "v5-dledger")])
def test_consumers_resume_at_the_same_message(golden, tmp_path, src_version, target):
    src, out = golden[src_version], str(tmp_path / "out")
    migrate(src, out, _options(src_version, target))
    a, b = _open(src), _open(out)
    try:
        assert b.version == target
        groups = [("g-orders", "orders", q) for q in range(4)]
        if src_version.startswith("v5"):
            groups.append(("g-batch", "batchy", 0))
        for group, topic, q in groups:
            offset = a.query_offset(group, topic, q)
            assert offset >= 0 and b.query_offset(group, topic, q) == offset
            ra, rb = a.read_queue(topic, q, offset, 64), b.read_queue(topic, q, offset, 64)
            assert [m.queue_offset for m in ra.messages] == [m.queue_offset for m in rb.messages]
            assert [m.properties.get("UNIQ_KEY") for m in ra.messages] == [m.properties.get("UNIQ_KEY") for m in rb.messages]
            assert b.max_offset(topic, q) == a.max_offset(topic, q)
        assert b.delay_offset(3) == a.delay_offset(3) == 1
        assert b.min_offset(SCHEDULE_TOPIC, 2) == 0 and b.max_offset(SCHEDULE_TOPIC, 2) == a.max_offset(SCHEDULE_TOPIC, 2)
    finally:
        a.close()
        b.close()


def test_v5_batch_becomes_records_at_the_same_offsets(golden, tmp_path):
    out = str(tmp_path / "out")
    migrate(golden["v5"], out, _options("v5", "v4"))
    records = [decode_message(i.record)[0] for i in walk_log(out) if i.record is not None]
    batchy = [m for m in records if m.topic == "batchy" and m.queue_id == 0]
    assert [m.queue_offset for m in batchy] == list(range(len(batchy))) and len(batchy) == 15
    assert not any(m.sysflag & SYSFLAG_INNER_BATCH for m in records)
    # 4.x holds zlib bodies only: type bits 0 (legacy) or 0x300 (zlib, as 4.9.4+ clients set them)
    assert all(m.version == 1 and m.sysflag & 0x700 in (0, 0x300) for m in records)
    first = batchy[0]
    assert first.properties["KEYS"] == "b0-0" and first.properties["WAIT"] == "true"
    assert "INNER_NUM" not in first.properties
    topics = configs.parse_topics_json(open(os.path.join(out, "config", "topics.json"), "rb").read())
    assert "attributes" not in open(os.path.join(out, "config", "topics.json")).read()
    assert set(topics.topics) >= {"orders", "batchy"}


def test_dledger_to_dledger_keeps_indexes_terms_and_vote(tmp_path):
    builder = storebuilder()(str(tmp_path / "src"), version="v5-dledger", log_file_bytes=4096, term=3)
    for i in range(40):
        builder.add("orders", f"m{i}".encode() * 20, queue_id=i % 2)
    builder.save(offsets={("orders", "g"): {0: 5, 1: 20}})
    out = str(tmp_path / "out")
    migrate(builder.root, out, Options(target="v4-dledger"))
    assert verify(builder.root, out)["ok"]
    items = [i for i in walk_log(out)]
    assert [i.entry_index for i in items] == list(range(40)) and {i.entry_term for i in items} == {3}
    assert open(os.path.join(out, "dledger-n0", "currterm"), "rb").read() == \
        open(os.path.join(builder.root, "dledger-n0", "currterm"), "rb").read()
    assert dl.dledger_checkpoint(open(os.path.join(out, "dledger-n0", "checkpoint"), "rb").read()) == (39, 39)


def test_rocketmq_shaped_v4_store_with_queue_starting_late(tmp_path):
    builder = storebuilder()(str(tmp_path / "src"), version="v4", log_file_bytes=2048)
    builder.next_offsets[("TopicA", 1)] = 1000      # its older commitlog files were deleted (expired)
    for i in range(30):
        builder.add("TopicA", f"body-{i}".encode() * 10, queue_id=i % 3, properties={"TAGS": "t"})
    builder.save(offsets={("TopicA", "cg"): {0: 4, 1: 1004, 2: 0}}, delay_offsets={1: 0})
    out = str(tmp_path / "out")
    migrate(builder.root, out, Options(target="v5-dledger"))
    result = verify(builder.root, out)
    assert result["ok"], result["differences"]
    assert result["messages_compared"] == 30
    store = Store.open(out, commitlog_segment_bytes=2048, background_flush=False)
    try:
        assert (store.min_offset("TopicA", 1), store.max_offset("TopicA", 1)) == (1000, 1010)
        assert store.query_offset("cg", "TopicA", 1) == 1004
        assert store.read_queue("TopicA", 1, 1004, 1).messages[0].body == b"body-13" * 10
    finally:
        store.close()


def test_rollback_with_zstd_bodies_is_refused_with_what_blocks_it(golden, tmp_path):
    with pytest.raises(UserError) as exc:
        migrate(golden["v5"], str(tmp_path / "out"), Options(target="v4"))
    text = str(exc.value)
    assert "zstd_body: 12 x" in text and "--codec zlib" in text and "commitlog/" in text
    assert not os.path.exists(tmp_path / "out")
    with pytest.raises(UserError, match="only zlib"):
        migrate(golden["v5"], str(tmp_path / "out"), Options(target="v4", codec=parse_codec("lz4")))


def test_codec_recompresses_bodies_and_verify_compares_them_decompressed(golden, tmp_path):
    out = str(tmp_path / "out")
    migrate(golden["v4"], out, Options(target="v5", codec=parse_codec("zstd:3"), compress_over_bytes=200))
    records = [decode_message(i.record)[0] for i in walk_log(out) if i.record is not None]
    orders = [m for m in records if m.topic == "orders" and len(m.body) > 0]
    assert all((m.sysflag & 0x701) == 0x201 for m in orders if m.properties.get("KEYS", "").startswith("k"))
    assert verify(golden["v4"], out)["ok"]


def test_verify_reports_differences(golden, tmp_path):
    out = str(tmp_path / "out")
    migrate(golden["v4"], out, Options(target="v5"))
    path = os.path.join(out, "config", "consumerOffset.json")
    doc = configs.parse_consumer_offsets_json(open(path, "rb").read())
    doc.offsets[("orders", "g-orders")][2] += 1
    open(path, "w").write(configs.dump_consumer_offsets_json(doc, "v5"))
    result = verify(golden["v4"], out)
    assert not result["ok"] and "consumer offset g-orders orders/2" in result["differences"][0]
    # a message missing at the end of DST's log
    out2 = str(tmp_path / "out2")
    trimmed = str(tmp_path / "trimmed")
    builder = storebuilder()(trimmed, version="v4", log_file_bytes=4096)
    for i in range(5):
        builder.add("T", f"x{i}".encode())
    builder.save()
    migrate(trimmed, out2, Options(target="v4"))
    builder2 = storebuilder()(str(tmp_path / "more"), version="v4", log_file_bytes=4096)
    for i in range(6):
        builder2.add("T", f"x{i}".encode())
    builder2.save()
    result = verify(builder2.root, out2)
    assert not result["ok"] and any("missing in DST" in d for d in result["differences"])


def test_corrupt_source_record_is_reported_with_file_and_offset(golden, tmp_path):
    src = str(tmp_path / "src")
    shutil.copytree(golden["v4"], src)
    seg = os.path.join(src, "commitlog", "00000000000000000000")
    data = bytearray(open(seg, "rb").read())
    first_size = int.from_bytes(data[0:4], "big")
    second_body = first_size + 84 + 4 + 10     # inside the second record's body
    data[second_body] ^= 0xFF
    open(seg, "wb").write(data)
    with pytest.raises(CorruptDataError) as exc:
        migrate(src, str(tmp_path / "out"), Options(target="v5"))
    assert exc.value.where == "commitlog/00000000000000000000" and exc.value.offset == first_size
    assert "CRC" in str(exc.value)
    runner = CliRunner()
    res = runner.invoke(cli_main, ["migrate", src, "--to", "v5", "--out", str(tmp_path / "out2")])
    assert res.exit_code == 2 and f"commitlog/00000000000000000000 at offset {first_size}" in res.output


def test_torn_tail_and_bad_topic_are_refused(tmp_path):
    builder = storebuilder()(str(tmp_path / "src"), version="v4", log_file_bytes=4096)
    builder.add("T", b"ok")
    builder.add("..%2Fx", b"bad topic")
    builder.save()
    seg = os.path.join(builder.root, "commitlog", "00000000000000000000")
    with pytest.raises(CorruptDataError, match="topic has characters no broker writes") as exc:
        migrate(builder.root, str(tmp_path / "out"), Options(target="v5"))
    assert exc.value.where == "commitlog/00000000000000000000" and exc.value.offset == builder.written[1].physical_offset
    builder = storebuilder()(str(tmp_path / "src2"), version="v4", log_file_bytes=4096)
    builder.add("T", b"ok")
    builder.save()
    seg = os.path.join(builder.root, "commitlog", "00000000000000000000")
    data = bytearray(open(seg, "rb").read())
    end = builder.write_pos
    data[end + 100] = 7                      # garbage after the last record
    open(seg, "wb").write(data)
    with pytest.raises(CorruptDataError) as exc:
        migrate(builder.root, str(tmp_path / "out2"), Options(target="v5"))
    assert exc.value.offset == end and "torn or corrupt" in str(exc.value)


def test_out_folder_rules(golden, tmp_path):
    with pytest.raises(UserError, match="outside the source"):
        migrate(golden["v4"], os.path.join(golden["v4"], "inner"), Options(target="v5"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        migrate(golden["v4"], str(busy), Options(target="v5"))
    with pytest.raises(UserError, match="no migration journal"):
        migrate(golden["v4"], str(busy), Options(target="v5"), resume=True)
    with pytest.raises(UserError, match="unknown target"):
        migrate(golden["v4"], str(tmp_path / "x"), Options(target="v6"))
    done = str(tmp_path / "done")
    migrate(golden["v4"], done, Options(target="v5"))
    with pytest.raises(UserError, match="finished migration"):
        migrate(golden["v4"], done, Options(target="v5"))
    with pytest.raises(UserError, match="another target version"):
        migrate(golden["v4"], done, Options(target="v4-dledger"), resume=True)
    with pytest.raises(UserError, match="another source"):
        migrate(golden["v5-dledger"], done, Options(target="v5"), resume=True)
    assert migrate(golden["v4"], done, Options(target="v5"), resume=True)["records_out"] == 151


def test_cli_dry_run_and_verify(golden, tmp_path):
    import json
    runner = CliRunner()
    res = runner.invoke(cli_main, ["migrate", golden["v5"], "--to", "v4", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["schema"] == "mqbench.migrate/1" and doc["records"] == 156 and doc["messages"] == 176
    assert doc["blockers"][0]["kind"] == "zstd_body" and doc["estimate"]["target_bytes"] > doc["source_log_bytes"] / 2
    assert not os.path.exists(tmp_path / "o")
    res = runner.invoke(cli_main, ["migrate", golden["v5"], "--to", "v4", "--dry-run", "--codec", "zlib"])
    assert res.exit_code == 0 and "156 records, 176 messages" in res.output and "blockers none" in res.output
    assert "topic batchy: attributes" in res.output, res.output
    res = runner.invoke(cli_main, ["migrate", golden["v5"], "--to", "v5-dledger", "--out", str(tmp_path / "o"), "--verify"])
    assert res.exit_code == 0 and "verify: OK: 176 messages" in res.output, res.output
    res = runner.invoke(cli_main, ["migrate", golden["v4"], "--to", "v5-dledger", "--out", str(tmp_path / "o"), "--verify"])
    assert res.exit_code == 1 and "DIFFERENCES" in res.output
    res = runner.invoke(cli_main, ["migrate", golden["v4"], "--to", "v7", "--out", str(tmp_path / "z")])
    assert res.exit_code == 2


def test_plan_counts_and_estimates(golden):
    plan = make_plan(golden["v5-dledger"], Options(target="v5"))
    assert (plan.records, plan.messages, plan.inner_batch_records) == (156, 176, 5)
    est = plan.estimate()
    assert est["target_log_bytes"] == plan.valid_log_bytes - 48 * 156 - 0


def test_upgraded_store_with_old_commitlog_below_dledger_data(tmp_path):
    root = str(tmp_path / "src")
    old = storebuilder()(root, version="v4", log_file_bytes=2048)
    for i in range(8):
        old.add("T", f"old-{i}".encode(), queue_id=0)
    old.save()
    new = storebuilder()(str(tmp_path / "dl"), version="v4-dledger", log_file_bytes=2048, term=2)
    for i in range(5):
        new.add("U", f"new-{i}".encode(), queue_id=1)
    new.save()
    shutil.move(os.path.join(new.root, "dledger-n0"), os.path.join(root, "dledger-n0"))
    plan = make_plan(root, Options(target="v5-dledger"))
    assert plan.mixed_log and not plan.keeps_raft_indexes and plan.records == 13
    out = str(tmp_path / "out")
    migrate(root, out, Options(target="v5-dledger"))
    items = list(walk_log(out))
    assert [i.entry_index for i in items] == list(range(13))     # one log now, numbered afresh
    result = verify(root, out)
    assert result["ok"], result["differences"]


def test_verify_checks_every_queue_unit(golden, tmp_path):
    out = str(tmp_path / "out")
    migrate(golden["v5"], out, Options(target="v5-dledger"))
    assert verify(golden["v5"], out)["ok"]
    cq = os.path.join(out, "consumequeue", "orders", "1", f"{0:020d}")
    data = bytearray(open(cq, "rb").read())
    data[20 * 3 + 7] ^= 1                       # unit 3 points elsewhere
    open(cq, "wb").write(data)
    bcq = os.path.join(out, "batchconsumequeue", "batchy", "0", f"{0:020d}")
    data = bytearray(open(bcq, "rb").read())
    data[46 + 8 + 3] ^= 2                        # the second batch unit's size (bytes 8..12)
    open(bcq, "wb").write(data)
    os.makedirs(os.path.join(out, "consumequeue", "ghost", "0"))
    result = verify(golden["v5"], out)
    text = "\n".join(result["differences"])
    assert not result["ok"] and result["difference_count"] == 3, text
    assert "consumequeue/orders/1" in text and "offset 3" in text
    assert "batchconsumequeue/batchy/0" in text and "unit 1" in text
    assert "consumequeue/ghost/0: a queue without records" in text


def test_inner_batch_on_a_topic_not_configured_batchcq_is_named(golden, tmp_path):
    src = str(tmp_path / "src")
    shutil.copytree(golden["v5-dledger"], src)
    path = os.path.join(src, "config", "topics.json")
    topics = configs.parse_topics_json(open(path, "rb").read())
    topics.topics["batchy"].attributes = {}
    open(path, "w").write(configs.dump_topics_json(topics, "v5"))
    if os.path.exists(path + ".bak"):
        os.remove(path + ".bak")
    with pytest.raises(CorruptDataError, match="does not configure as BatchCQ") as exc:
        migrate(src, str(tmp_path / "out"), Options(target="v4-dledger", codec=parse_codec("zlib")))
    assert exc.value.where == "dledger-n0/data/00000000000000000000"
    # with the config right, the batch topic is expanded and the entries numbered afresh
    out = str(tmp_path / "ok")
    migrate(golden["v5-dledger"], out, Options(target="v4-dledger", codec=parse_codec("zlib")))
    assert verify(golden["v5-dledger"], out)["ok"]


def test_verify_counts_user_messages_only_and_names_the_first_difference(tmp_path):
    """No-op and metadata entries of a DLedger log are not messages: a DLedger and a plain target
    of one source compare the same number of messages (10,315 vs 10,313 before)."""
    builder = storebuilder()(str(tmp_path / "src"), version="v5-dledger", log_file_bytes=4096)
    for term in (1, 2):
        builder.noop(term)
        for i in range(5):
            builder.add("T", b"m" * 100, queue_id=i % 2, properties={"KEYS": f"k{term}-{i}"})
    builder.noop(3, body=b"mqbench-meta", magic=dl.DLEDGER_MAGIC)
    builder.save()
    counts = {}
    for target in ("v5", "v4-dledger"):
        out = str(tmp_path / target)
        migrate(builder.root, out, Options(target=target))
        result = verify(builder.root, out)
        assert result["ok"], result["differences"]
        counts[target] = result["messages_compared"]
    assert counts == {"v5": 10, "v4-dledger": 10}
    # a changed property in DST: the first difference is named, in the result and by the CLI
    seg = os.path.join(tmp_path, "v5", "commitlog", "0" * 20)
    data = bytearray(open(seg, "rb").read())
    data[data.index(b"k1-3") + 1] = ord("9")
    open(seg, "wb").write(data)
    result = verify(builder.root, str(tmp_path / "v5"))
    assert not result["ok"] and result["first_difference"] == result["differences"][0]
    assert "('T', 1, 1)" in result["first_difference"] and "properties" in result["first_difference"]
    res = CliRunner().invoke(cli_main, ["migrate", builder.root, "--to", "v5", "--out", str(tmp_path / "v5"),
                                        "--verify"])
    assert res.exit_code == 1 and "first difference: " in res.output
