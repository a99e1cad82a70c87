"""migrate/_scan.c against migrate/scan.py, the reference: hop and summarize give the same results
on the same windows (valid v4/v5 records, plain and in DLedger entries, both property-string forms,
IPv6 hosts, batches and transaction flags, special topics, corrupt bytes, truncated windows)."""
from __future__ import annotations

import importlib
import os
import struct
import tarfile
import zlib

import pytest
from hypothesis import given, settings, strategies as st

from mqbench.broker.formats import dledger as dl
from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_layout
from mqbench.broker.formats.compression import TYPE_ID_ZLIB
from mqbench.broker.formats.properties import PROPERTY_CRC32
from mqbench.broker.formats.record import Message, encode_blank, encode_message
from mqbench.broker.formats.topics import SCHEDULE_TOPIC, TIMER_TOPIC, TRANS_HALF_TOPIC
from mqbench.migrate import scan
from mqbench.broker.formats.record_check import record_verdict

try:
    _scan = importlib.import_module("mqbench.migrate._scan")
except ImportError:      # not built (no compiler): test_native_built says so where one exists
    _scan = None

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.skipif(_scan is None, reason="mqbench.migrate._scan is not built")

_topics = st.sampled_from(["orders-0"] * 4 + ["orders-1", "%RETRY%g", "a|b", "T" * 120, "tö", "bad topic",
                           SCHEDULE_TOPIC, TIMER_TOPIC, TRANS_HALF_TOPIC])
_pieces = st.sampled_from(["TAGS\x01", "KEYS\x01", "UNIQ_KEY\x01", "\x02", "\x01", "paid", "k1 k2", " ", "x", "é",
                           "\x00", PROPERTY_CRC32 + "\x01", "0123456789"])
_pairs = st.lists(st.tuples(st.sampled_from(["TAGS", "KEYS", "UNIQ_KEY", "WAIT", "a"]),
                            st.sampled_from(["", "paid", "k1", "q", "k1 k2", " k3  k q ", "x" * 30])), max_size=5)
# both property-string forms (with and without the final \x02), and raw strings of odd pieces
_props = st.one_of(
    st.tuples(_pairs, st.booleans()).map(
        lambda p: ("\x02".join(f"{k}\x01{v}" for k, v in p[0]) + ("\x02" if p[1] and p[0] else "")).encode()),
    st.lists(_pieces, max_size=10).map(lambda parts: "".join(parts).encode("utf-8")))
_sysflags = st.sampled_from([0] * 8 + [record_layout.SYSFLAG_COMPRESSED, record_layout.SYSFLAG_COMPRESSED | (TYPE_ID_ZLIB << 8),
                             record_layout.SYSFLAG_COMPRESSED | (2 << 8), record_layout.SYSFLAG_TX_PREPARED, record_layout.SYSFLAG_TX_COMMIT,
                             record_layout.SYSFLAG_INNER_BATCH, record_layout.SYSFLAG_NEED_UNWRAP, record_layout.SYSFLAG_MULTI_TAGS])


@st.composite
def _record(draw) -> bytes:
    """A whole record with a raw property string (either form, duplicates, odd bytes)."""
    v6 = draw(st.booleans())
    msg = Message(topic=draw(_topics), body=draw(st.binary(max_size=40)), queue_id=draw(st.integers(0, 3)),
                  queue_offset=draw(st.integers(0, 1 << 40)), sysflag=draw(_sysflags),
                  store_timestamp_ms=draw(st.integers(0, 1 << 42)), version=draw(st.sampled_from([0, 1, 2])),
                  born_host=("::1", 9) if v6 and draw(st.booleans()) else ("127.0.0.1", 1),
                  store_host=("::2", 9) if v6 and draw(st.booleans()) else ("127.0.0.1", 2))
    if len(msg.topic.encode()) > 127:
        msg.version = 2
    record = encode_message(msg)          # no properties: PROPERTIESLENGTH 0 ends it
    props = draw(_props)
    record = record[:-2] + struct.pack(">h", len(props)) + props
    return struct.pack(">i", len(record)) + record[4:]


@st.composite
def _window(draw):
    """(bytes, length, base, src_dl): items laid out from address ``base``, then damaged."""
    src_dl = draw(st.booleans())
    base = draw(st.integers(0, 1 << 33))
    out = bytearray()
    index = draw(st.integers(0, 5))
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["record"] * 6 + ["blank", "garbage", "noop"]))
        pos = base + len(out)
        if kind == "garbage":
            out += draw(st.binary(min_size=1, max_size=200))
            continue
        if kind == "blank":
            out += dl.encode_entry_blank(8) if src_dl else encode_blank(draw(st.integers(8, 40)))
            continue
        if src_dl:
            body = b"" if kind == "noop" else bytes(draw(_record()))
            if body:
                body = rec.set_physical_offset(body, pos + dl.ENTRY_HEADER_BYTES +
                                               draw(st.sampled_from([0, 0, 0, 1])))
            crc = draw(st.sampled_from(["right", "none", "wrong"]))
            value = {"right": dl.body_crc(body), "none": 0, "wrong": dl.body_crc(body) ^ 1}[crc]
            out += dl.encode_entry(index, draw(st.integers(0, 3)), pos, body, crc=value)
            index += draw(st.sampled_from([1, 1, 1, 2]))
        elif kind == "record":
            body = draw(_record())
            out += rec.set_physical_offset(body, pos + draw(st.sampled_from([0, 0, 0, -1])))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 3]))):      # corrupt bytes
        if out:
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    length = draw(st.integers(0, len(out))) if draw(st.booleans()) else len(out)     # truncated windows
    return bytes(out), length, base, src_dl


def _same(buf: bytes, length, base, src_dl, v4, committed) -> None:
    assert _scan.hop(buf, length, src_dl) == scan.hop_py(buf, length, src_dl)
    want = scan.summarize_py(buf, length, base, src_dl, v4, committed)
    got = _scan.summarize(buf, length, base, src_dl, v4, committed)
    assert got == (want.rows, want.topics, want.keys)
    # any buffer (the workers pass their shared window, an mmap) gives the same
    assert _scan.summarize(memoryview(bytearray(buf)), length, base, src_dl, v4, committed) == got
    # packed (for the compiled copy loop): scan.pack's int64 arrays, made in C
    packed = scan.pack(want)
    rows, topics, keys = _scan.summarize(buf, length, base, src_dl, v4, committed, True)
    assert (rows, topics, keys) == (packed.rows.tobytes(), packed.topics, packed.keys.tobytes())


@settings(max_examples=150, deadline=None)
@given(window=_window(), v4=st.booleans(), committed=st.one_of(st.none(), st.integers(0, 8)))
def test_c_and_python_agree_on_windows(window, v4, committed) -> None:
    buf, length, base, src_dl = window
    _same(buf, length, base, src_dl, v4, committed)


@settings(max_examples=40, deadline=None)
@given(window=_window())
def test_relaxed_rows_are_the_readers_undamaged_records(window) -> None:
    # relaxed (run.stored's figures): C and Python agree, and an ok row is exactly a record the one
    # log reader yields undamaged (delay topics, batches, transactions and __CRC32# included)
    buf, length, base, src_dl = window
    relaxed = scan.summarize_py(buf, length, base, src_dl, False, None, relaxed=True)
    assert _scan.summarize(buf, length, base, src_dl, False, None, False, True) == \
        (relaxed.rows, relaxed.topics, relaxed.keys)
    strict = scan.summarize_py(buf, length, base, src_dl, False, None)
    assert all(r[2] for r, s in zip(relaxed.rows, strict.rows) if s[2])       # ok stays ok
    for row in relaxed.rows:
        if row[2]:
            at, rat, total = row[0] - base, row[3], row[4]
            if src_dl:
                assert dl.entry_verdict(buf, at, length, row[0]) == (row[1] - row[0], None)
            assert record_verdict(buf, rat, rat + total, address=row[0] + (dl.ENTRY_HEADER_BYTES if src_dl else 0)) \
                == (total, None, None)


@settings(max_examples=100, deadline=None)
@given(buf=st.binary(max_size=400), src_dl=st.booleans(), v4=st.booleans())
def test_c_and_python_agree_on_random_bytes(buf, src_dl, v4) -> None:
    _same(buf, len(buf), 0, src_dl, v4, None)


@pytest.fixture(scope="module")
def real_store_commitlog() -> bytes:
    """The first 4 MiB of the real 4.9.8 store's commit log (../shared/data/real-stores)."""
    path = os.environ.get("MQBENCH_REAL_STORES", os.path.join(os.path.dirname(REPO), "shared", "data", "real-stores"))
    tar_path = os.path.join(path, "rmq498-plain.tar.gz")
    if not os.path.isfile(tar_path):
        pytest.skip(f"no real RocketMQ store at {path}")
    with tarfile.open(tar_path) as tar:
        member = next(m for m in tar.getmembers() if "/commitlog/" in m.name and m.isfile())
        return tar.extractfile(member).read(4 << 20)


def test_real_store_windows_agree(real_store_commitlog) -> None:
    data = real_store_commitlog
    end, _ = scan.hop_py(data, len(data), False)
    for v4 in (False, True):
        _same(data, end, 0, False, v4, None)
    want = scan.summarize_py(data, end, 0, False, True, None)
    assert sum(row[2] for row in want.rows) > 100       # the comparison covered taken records


def test_c_constants_are_the_formats() -> None:
    c = _scan.CONSTANTS
    assert (c["MIN_RECORD_BYTES"], c["ENTRY_HEADER_BYTES"], c["DLEDGER_BLANK_BYTES"], c["BLANK_MIN_BYTES"]) == \
        (scan.MIN_RECORD_BYTES, dl.ENTRY_HEADER_BYTES, dl.DLEDGER_BLANK_BYTES, record_layout.BLANK_MIN_BYTES)
    assert (c["DLEDGER_MAGIC"], c["MAGIC_V1"], c["MAGIC_V2"]) == (dl.DLEDGER_MAGIC, record_layout.MAGIC_V1, record_layout.MAGIC_V2)
    assert (c["SYSFLAG_COMPRESSED"], c["SYSFLAG_TX_MASK"], c["SYSFLAG_BORNHOST_V6"], c["SYSFLAG_STOREHOST_V6"],
            c["SYSFLAG_NEED_UNWRAP"], c["SYSFLAG_INNER_BATCH"], c["TYPE_ID_ZLIB"]) == \
        (record_layout.SYSFLAG_COMPRESSED, record_layout.SYSFLAG_TX_MASK, record_layout.SYSFLAG_BORNHOST_V6, record_layout.SYSFLAG_STOREHOST_V6,
         record_layout.SYSFLAG_NEED_UNWRAP, record_layout.SYSFLAG_INNER_BATCH, TYPE_ID_ZLIB)
    assert c["CRC_TAIL"] == PROPERTY_CRC32.encode() + b"\x01"
    assert set(c["SPECIAL_TOPICS"]) == {SCHEDULE_TOPIC, TIMER_TOPIC, TRANS_HALF_TOPIC}


def test_a_length_past_the_buffer_is_refused() -> None:
    with pytest.raises(ValueError):
        _scan.summarize(b"\x00" * 8, 9, 0, False, False, None)
    with pytest.raises(ValueError):
        _scan.hop(b"", 1, True)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=700), skip=st.integers(0, 15), crc=st.integers(0, 0xFFFFFFFF))
def test_mq_crc32_is_zlibs(data, skip, crc) -> None:
    """broker/formats/mq_crc32.h as the accelerators build it (the table loop, and on x86-64 with
    PCLMULQDQ the folding of runs of 64 bytes and more) gives zlib.crc32's values, at any
    alignment and continuing any running CRC."""
    view = memoryview(data)[min(skip, len(data)):]
    assert _scan.crc32(view, crc) == zlib.crc32(view, crc)
    assert _scan.crc32(data) == zlib.crc32(data)


def test_many_topics_in_one_window() -> None:
    """More topics than the C table's first size (it grows), repeated in a new order."""
    out = bytearray()
    for i in list(range(300)) + list(range(299, -1, -7)):
        record = encode_message(Message(topic=f"t-{i}", body=b"b" * (i % 5), properties={"TAGS": f"x{i}",
                                                                                       "KEYS": f"k{i} j"}))
        out += rec.set_physical_offset(record, len(out))
    _same(bytes(out), len(out), 0, False, False, None)
    assert len(scan.summarize_py(bytes(out), len(out), 0, False, False, None).topics) == 300
