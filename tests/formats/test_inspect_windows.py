"""``mqbench inspect`` reads the log by windows through the scan (``inspect_store``'s default):
its document must be exactly the record-by-record walk's (``scan=None``, the reference), with the
compiled scanner and with the Python one (``MQBENCH_NATIVE=0``'s), on the store a real RocketMQ
4.9.8 broker wrote and on stores with damaged and cut records, where the damage still names the
file and the byte offset in it."""
from __future__ import annotations

import os
import shutil
import struct
from types import SimpleNamespace

import pytest

from formats_storebuild import StoreBuilder
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.record_layout import SYSFLAG_TX_PREPARED
from mqbench.inspection.report import inspect_store, iter_messages
from mqbench.migrate import scan

PY_SCAN = SimpleNamespace(hop=scan.hop_py,
                          summarize=lambda buf, *a, relaxed=False: scan.summarize_py(bytes(buf), *a, relaxed=relaxed))
REAL_STORES = os.environ.get("MQBENCH_REAL_STORES", os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
    "shared", "data", "real-stores"))


def same(root) -> dict:
    """The document, after checking that all three walks give it."""
    want = inspect_store(str(root), scan=None)
    assert inspect_store(str(root)) == want
    assert inspect_store(str(root), scan=PY_SCAN) == want
    messages = list(iter_messages(str(root), scan=None))            # --messages, --key without index
    assert list(iter_messages(str(root))) == messages == list(iter_messages(str(root), scan=PY_SCAN))
    assert list(iter_messages(str(root), 7)) == messages[:7]
    return want


def _build(tmp_path, version: str) -> StoreBuilder:
    b = StoreBuilder(str(tmp_path / version), version=version, log_file_bytes=4096,
                     batch_topics={"B"} if version.startswith("v5") else set())
    for i in range(40):
        if i % 13 == 5 and b.dledger:
            b.noop(b.term + 1)
        b.add("TopicTest", b"x" * (40 + i * 7 % 90), queue_id=i % 3, properties={"TAGS": "TagA", "KEYS": f"k{i}"})
        if i % 11 == 3 and version.startswith("v5"):
            b.add("B", items=[BatchItem(b"a%d" % i, {"KEYS": f"b{i}"}), BatchItem(b"b")])
    b.add("TopicTest", b"half", queue_id=0, sysflag=SYSFLAG_TX_PREPARED)
    b.add("Other", b"late", queue_id=1, cq=False)
    return b


def _log_file(b: StoreBuilder, address: int) -> str:
    return os.path.join(b.root, b.log_folder, f"{address - address % b.log_file_bytes:020d}")


@pytest.mark.parametrize("version", ["v4", "v5", "v4-dledger", "v5-dledger"])
def test_windows_equal_the_walk_clean_and_damaged(tmp_path, version):
    b = _build(tmp_path, version)
    b.save()
    doc = same(b.root)
    assert doc["damage_counts"] == {"cq_missing_entry": 1}
    # a flipped body byte (crc_mismatch), a consume-queue unit pointing elsewhere, a cut record
    w = b.written[9]
    with open(_log_file(b, w.physical_offset), "r+b") as f:
        f.seek(w.physical_offset % b.log_file_bytes + w.size - 3 - len("TAGS\x01TagA\x02KEYS\x01k8\x02") - 40)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x55]))
    cq = os.path.join(b.root, "consumequeue", "TopicTest", "1", "0" * 20)
    with open(cq, "r+b") as f:
        f.seek(20 * 4)
        f.write(struct.pack(">q", b.written[2].physical_offset))
    last = b.written[-3]
    with open(_log_file(b, last.physical_offset), "r+b") as f:
        f.seek(last.physical_offset % b.log_file_bytes + 30)
        f.write(bytes(last.size - 30) + b"\x07")
    doc = same(b.root)
    kinds = doc["damage_counts"]
    assert kinds.get("cq_mismatch") and (kinds.get("torn_tail") or kinds.get("corrupt_record"))
    assert kinds.get("crc_mismatch") or kinds.get("bad_entry_body")
    # the cut record is named by its file and an offset in it (where its entry or record starts,
    # or where the valid data ends after it)
    file = f"{b.log_folder}/{last.physical_offset - last.physical_offset % b.log_file_bytes:020d}"
    at = last.physical_offset % b.log_file_bytes
    assert any(d.get("file") == file and at - 48 <= d.get("offset", -1) <= at + last.size for d in doc["damage"])


def test_windows_equal_the_walk_with_index_damage(tmp_path):
    b = _build(tmp_path, "v5-dledger")
    b.save()
    idx = os.path.join(b.root, "dledger-n0", "index", "0" * 20)
    with open(idx, "r+b") as f:
        f.seek(32 * 7 + 4)
        f.write(struct.pack(">q", 12345))
    shutil.rmtree(os.path.join(b.root, "consumequeue", "TopicTest", "2"))
    doc = same(b.root)
    assert doc["damage_counts"]["dledger_index_mismatch"] == 1 and doc["damage_counts"]["cq_missing_entry"] > 10


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> str:
    import tarfile

    tar_path = os.path.join(REAL_STORES, "rmq498-plain.tar.gz")
    if not os.path.isfile(tar_path):
        pytest.skip(f"no real RocketMQ stores at {REAL_STORES}")
    into = tmp_path_factory.mktemp("real-inspect")
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(into)
    return os.path.join(into, "rmq498-plain")


def test_the_real_store_is_the_same_read_by_windows(real):
    doc = same(real)
    assert doc["damage"] == [] and sum(log["records"] for log in doc["logs"]) > 3000


def test_a_damaged_real_store_names_file_and_offset(real, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(real, copy)
    log = copy / "commitlog"
    first = sorted(os.listdir(log))[0]
    path = log / first
    raw = bytearray(path.read_bytes())
    # walk the records by their size fields to pick two in the middle
    at, starts = 0, []
    while at + 8 <= len(raw) and int.from_bytes(raw[at + 4:at + 8], "big") in (0xDAA320A7, 0xDAA320AB):
        starts.append(at)
        at += int.from_bytes(raw[at:at + 4], "big")
    middle, cut = starts[len(starts) // 3], starts[2 * len(starts) // 3]
    raw[middle + 100] ^= 0xFF                           # a body byte: crc_mismatch
    raw[cut + 4:cut + 8] = b"\x00\x00\x00\x01"           # a record whose magic is gone
    path.write_bytes(bytes(raw))
    doc = same(copy)
    crc = next(d for d in doc["damage"] if d["kind"] == "crc_mismatch")
    assert (crc["file"], crc["offset"]) == (f"commitlog/{first}", middle)
    end = next(d for d in doc["damage"] if d["kind"] in ("torn_tail", "corrupt_record"))
    assert (end["file"], end["offset"]) == (f"commitlog/{first}", cut)
