"""``inspect`` and ``migrate`` on a store a real RocketMQ 4.9.8 broker wrote (plain CommitLog,
batches, zlib bodies, pending level-18 delays, a 120-character topic, consumer offsets): every
message of the manifest and the ledger, in every target version and back to v4."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from mqbench.inspection.report import inspect_store, iter_messages
from mqbench.cli import cli as cli_main
from mqbench.errors import UserError
from mqbench.migrate.plan import Options
from mqbench.migrate.run import migrate
from mqbench.migrate.verify import verify

from real_store_data import PLAIN, check_inspect, check_messages, extract

TARGETS = ("v4", "v5", "v4-dledger", "v5-dledger")


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> str:
    return extract(PLAIN, str(tmp_path_factory.mktemp("real")))


@pytest.fixture(scope="module")
def migrated(real, tmp_path_factory) -> dict[str, str]:
    """The real store migrated to every version (through the CLI, with --verify)."""
    base = tmp_path_factory.mktemp("out")
    out = {}
    for target in TARGETS:
        dst = str(base / target)
        res = CliRunner().invoke(cli_main, ["migrate", real, "--to", target, "--out", dst, "--verify"])
        assert res.exit_code == 0, res.output
        assert "verify: OK" in res.output
        out[target] = dst
    return out


def test_the_real_store_reads_whole(real):
    check_messages(real)
    check_inspect(inspect_store(real))
    assert sum(1 for _ in iter_messages(real)) == 3180


@pytest.mark.parametrize("target", TARGETS)
def test_migrated_copy_holds_every_message_and_inspects_clean(migrated, real, target):
    dst = migrated[target]
    check_messages(dst)
    doc = inspect_store(dst)
    check_inspect(doc)
    assert doc["version"] == target
    listed = list(iter_messages(dst))
    assert len(listed) == 3180 and all(m["crc_ok"] and "error" not in m for m in listed)
    result = verify(real, dst)
    assert result["ok"] and result["messages_compared"] == 3180, result["differences"]


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "v4"])
def test_back_to_v4_gives_the_same_messages(migrated, real, tmp_path, target):
    back = str(tmp_path / "back")
    migrate(migrated[target], back, Options(target="v4"))
    check_messages(back)
    check_inspect(inspect_store(back))
    assert verify(migrated[target], back)["ok"]
    assert verify(real, back)["ok"]


def test_v4_copy_back_to_v4_is_refused_as_a_copy(migrated, tmp_path):
    with pytest.raises(UserError, match="same version"):
        migrate(migrated["v4"], str(tmp_path / "again"), Options(target="v4"))
    assert not os.path.exists(tmp_path / "again")


def test_a_4_9_8_record_keeps_its_property_string_in_4x_targets(migrated, real):
    """Records are copied as the broker wrote them: a v4 target keeps the 4.9.8 form (no trailing
    \\x02), so the copy is byte-for-byte what a 4.9.8 broker stores."""
    from mqbench.migrate.source import walk_log
    src = [i.record for i in walk_log(real) if i.record is not None]
    for target in ("v4", "v4-dledger"):
        out = [i.record for i in walk_log(migrated[target]) if i.record is not None]
        assert len(out) == len(src)
        assert all(a[36:] == b[36:] and a[:28] == b[:28] for a, b in zip(src, out))
        assert not any(r.endswith(b"\x02") for r in out)


def test_progress_total_is_the_data_not_the_files(real):
    from mqbench.migrate.source import data_bytes
    assert data_bytes(real) == 2 * 1048576 + 944549     # the manifest's used bytes of the last file


def test_rebuilt_key_index_is_the_real_brokers(real, migrated):
    """The v4 copy keeps every physical offset, so its rebuilt index/ holds the very bytes the
    4.9.8 broker wrote (only the file names differ: the broker names a file by its clock when it
    creates it, mqbench by the first record's store time)."""
    from mqbench.broker.store.index_files import index_files
    ours = index_files(os.path.join(migrated["v4"], "index"))
    theirs = index_files(os.path.join(real, "index"))
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        assert a.read_bytes() == b.read_bytes(), (a.name, b.name)


@pytest.mark.parametrize("target", (None,) + TARGETS)
def test_every_key_is_found_through_the_index(real, migrated, target):
    from mqbench.inspection.keys import find_by_key
    from real_store_data import SCHEDULE_TOPIC, ledger
    root = real if target is None else migrated[target]
    lines = ledger()
    # every 9th message, and every one of the small topics (compressed, delayed, the long topic)
    for line in [x for i, x in enumerate(lines) if i % 9 == 0 or x["topic"] not in ("BulkT", "OrdersT")]:
        topic = SCHEDULE_TOPIC if line["delayLevel"] else line["topic"]
        qid = line["delayLevel"] - 1 if line["delayLevel"] else line["queueId"]
        for key in (line["keys"], line["uniqMsgId"]):
            hits = [(m["queue_id"], m["queue_offset"], m["found_by"]) for m in find_by_key(root, key, topic)]
            assert (qid, line["queueOffset"], "index") in hits, (key, hits)
    res = CliRunner().invoke(cli_main, ["inspect", root, "--key", "o-5"])
    assert res.exit_code == 0 and "OrdersT" in res.output and "index" in res.output
