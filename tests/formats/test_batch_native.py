"""The inner-batch accelerator (``broker/formats/_batch.c``) answers exactly as the Python
reference in ``batch.py`` / ``restamp.py`` on client batch bodies and replicated records, valid,
damaged or random (a client's body and a peer's record are untrusted)."""
from __future__ import annotations

import importlib
import struct

import pytest
from hypothesis import given, settings, strategies as st

from mqbench.broker.formats import batch as batch_mod

try:
    _c = importlib.import_module("mqbench.broker.formats._batch")
except ImportError:     # not built (no compiler): nothing to compare
    _c = None

pytestmark = pytest.mark.skipif(_c is None, reason="the _batch accelerator is not built")

# names and values from an alphabet with separators, non-ASCII and bytes that are not UTF-8
# (a lone continuation byte, a surrogate, an overlong NUL, a code point above U+10FFFF)
_PIECES = [b"a", b"K", b"_", b"\x01", b"\x02", "é".encode(), "😀".encode(), b"\xff", b"\x80", b"\xed\xa0\x80",
           b"\xc0\x80", b"\xf4\x90\x80\x80", b"DELAY", b"TAGS", b"\xe2\x82"]
_REFUSED = [frozenset(), frozenset({b"DELAY", b"TIMER_DELIVER_MS"}), frozenset({b"a", "a", 1}), {b"K", b"aa"}]


@st.composite
def _wire(draw) -> bytes:
    if draw(st.booleans()):     # plain segments, sometimes many (the sorted path) and duplicated
        names = draw(st.lists(st.sampled_from([b"a", b"K", b"TAGS", b"DELAY", "é".encode(), b"aa", b"Ka"]),
                              max_size=12))
        if draw(st.booleans()):
            names = list(dict.fromkeys(names))
        return b"".join(n + b"\x01" + draw(st.sampled_from([b"v", b"true", "ü".encode(), b"x y"])) + b"\x02"
                        for n in names)
    return b"".join(draw(st.lists(st.sampled_from(_PIECES), max_size=10)))


@st.composite
def bodies(draw) -> bytes:
    items = []
    for _ in range(draw(st.integers(0, 6))):
        body, wire = draw(st.binary(max_size=8)), draw(_wire())
        magic, crc = draw(st.sampled_from([(0, 0), (0, 0), (0, 0), (1, 0), (0, -1)]))
        items.append(struct.pack(">iiiii", 22 + len(body) + len(wire), magic, crc, draw(st.integers(-3, 3)),
                                 len(body)) + body + struct.pack(">h", len(wire)) + wire)
    out = b"".join(items)
    for _ in range(draw(st.integers(0, 2))):      # damaged bytes: lengths, magics, separators
        if out:
            at = draw(st.integers(0, len(out) - 1))
            out = out[:at] + bytes([draw(st.integers(0, 255))]) + out[at + 1:]
    if out and draw(st.booleans()):
        out = out[:draw(st.integers(0, len(out)))]       # a torn end
    return out + draw(st.sampled_from([b"", b"\0", b"\x02"]))


def _both(body, items_max, refused, props_max):
    python = batch_mod._canonical_batch_count(body, items_max, refused, props_max)
    return python, _c.canonical_batch_count(body, items_max, refused, props_max)


@settings(max_examples=250, deadline=None)
@given(st.one_of(bodies(), st.binary(max_size=80)), st.sampled_from([None, 0, 1, 3, 1024, -1, 2**70]),
       st.sampled_from(_REFUSED), st.sampled_from([0x7FFF, 0, 5, 12, -1, 2**70, -2**70]))
def test_canonical_count_is_the_reference_on_any_body(body, items_max, refused, props_max):
    python, native = _both(body, items_max, refused, props_max)
    assert native == python


def test_canonical_count_boundaries():
    item = struct.pack(">iiiii", 22 + 1 + 4, 0, 0, 0, 1) + b"x" + struct.pack(">h", 4) + b"A\x01b\x02"
    many = b"".join(struct.pack(">iiiii", 22 + len(w), 0, 0, 0, 0) + struct.pack(">h", len(w)) + w
                    for w in [b"".join(b"n%d\x01v\x02" % j for j in range(40)),
                              b"".join(b"n%d\x01v\x02" % (j % 39) for j in range(40))])
    for body in (item, item * 64, b"", item[:-1], item + b"\0", bytearray(item), memoryview(item), "text",
                 many, many[:len(many) // 2 + 11], struct.pack(">iiiii", 2**31 - 1, 0, 0, 0, 2**31 - 23)):
        for items_max in (None, 1, 64):
            assert _both(body, items_max, frozenset(), 0x7FFF) == (
                batch_mod._canonical_batch_count(body, items_max, frozenset(), 0x7FFF),) * 2
    assert _c.canonical_batch_count(item * 64, None, frozenset(), 0x7FFF) == 64
    assert _c.canonical_batch_count(many, None, frozenset(), 0x7FFF) is None      # a duplicate name among 40
    with pytest.raises(TypeError):
        _c.canonical_batch_count(item, "1", frozenset(), 0x7FFF)


# -- restamp_inner_batch: the follower's INNER_BASE rewrite --------------------------------------

_SEGMENTS = [b"INNER_NUM\x013\x02", b"INNER_NUM\x01 +6_4 \x02", "INNER_NUM\x01٣\x02".encode(), b"INNER_NUM\x010\x02",
             b"INNER_NUM\x0132768\x02", b"INNER_NUM\x01x\x02", b"INNER_BASE\x010\x02", b"INNER_BASE\x01123456\x02",
             b"INNER_BASE\x01\x02", b"K\x01v\x01w\x02", "é\x01ü\x02".encode(), b"K\x01\xff\x02", b"\x02",
             b"\x01a\x02", b"ab", b"UNIQ_KEY\x01" + b"A" * 32 + b"\x02", b"WAIT\x01true\x02"]


def _record_with(wire: bytes, host: tuple[str, int], version: int) -> bytes:
    from mqbench.broker.formats.record import Message, encode_message
    from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH
    from mqbench.broker.formats.record_peek import _tail_positions

    record = encode_message(Message(topic="BatchT", body=b"\0" * 30, properties={"X": "y"}, born_host=host,
                                    store_host=host, version=version, sysflag=SYSFLAG_INNER_BATCH))
    _, _, props_at, _ = _tail_positions(record, 0)
    out = bytearray(record[:props_at - 2] + struct.pack(">h", len(wire)) + wire)
    out[0:4] = struct.pack(">i", len(out))
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_SEGMENTS), max_size=6), st.sampled_from([0, 1, 9, 10**12, 2**63 - 1]),
       st.sampled_from([("127.0.0.1", 1), ("::1", 2)]), st.sampled_from([1, 2]), st.integers(0, 3))
def test_restamp_inner_batch_is_the_reference_on_any_property_string(segments, queue_offset, host, version, cut):
    from mqbench.broker.formats import restamp

    wire = b"".join(segments)
    wire = wire[:len(wire) - cut] if cut < 3 else wire + b"Z" * 40_000     # torn, or past the bound
    record = _record_with(wire[:0x7FFF], host, version)
    native = restamp.restamp_inner_batch(record, queue_offset)
    saved, restamp._native = restamp._native, None
    try:
        python = restamp.restamp_inner_batch(record, queue_offset)
    finally:
        restamp._native = saved
    assert native == python
    if restamp._native is not None:
        assert restamp._native.restamp_inner_batch(memoryview(record), queue_offset, *_props(record)) == python


def _props(record: bytes) -> tuple[int, int]:
    from mqbench.broker.formats.record_peek import _tail_positions

    return _tail_positions(record, 0)[2:]


def test_restamp_inner_batch_native_refuses_what_the_caller_must_check():
    record = _record_with(b"INNER_NUM\x013\x02", ("127.0.0.1", 1), 1)
    props_at, props_len = _props(record)
    assert _c.restamp_inner_batch(record, 5, props_at, props_len)[1] == 3
    assert _c.restamp_inner_batch(record, 5, props_at, props_len - 1) is None
    for bad in ((record, 5, 29, len(record) - 29), (record, -1, props_at, props_len),
                (record, 5, len(record) + 1, -1)):
        with pytest.raises(ValueError):
            _c.restamp_inner_batch(*bad)


# -- decode_batch: the usual body decoded in C, anything else left to the Python code -------------

@settings(max_examples=250, deadline=None)
@given(st.one_of(bodies(), st.binary(max_size=80)), st.sampled_from([None, 0, 1, 3, 1024, -1, 2**70]))
def test_decode_batch_native_is_the_reference_or_leaves_the_body_to_it(body, items_max):
    from mqbench.errors import CorruptDataError

    native = _c.decode_batch_plain(body, items_max, batch_mod.BatchItem)
    saved, batch_mod._native = batch_mod._native, None
    try:
        python = batch_mod.decode_batch(body, items_max=items_max)
    except CorruptDataError:
        python = None
    finally:
        batch_mod._native = saved
    if native is not None:
        assert python is not None and native == python
        assert [(i.wire_properties, type(i.body)) for i in native] == [(i.wire_properties, bytes) for i in python]
    elif python is not None and all(i.wire_properties is not None and (not i.properties or b"\x01" not in
                                    b"".join(i.properties[k].encode() for k in i.properties)) for i in python):
        raise AssertionError(f"a plain body left to Python: {body!r}")


def test_decode_batch_native_on_what_clients_send():
    items = [batch_mod.BatchItem(b"x" * 50, {"UNIQ_KEY": f"{i:032X}", "WAIT": "true", "K": "é"}) for i in range(64)]
    body = batch_mod.encode_batch(items) + batch_mod.encode_batch([batch_mod.BatchItem(b"")])
    got = _c.decode_batch_plain(body, None, batch_mod.BatchItem)
    assert got == items + [batch_mod.BatchItem(b"")] and got[-1].wire_properties == b""
    assert _c.decode_batch_plain(body, 64, batch_mod.BatchItem) is None          # over the bound
    assert _c.decode_batch_plain(body[:-1], None, batch_mod.BatchItem) is None    # torn
    with pytest.raises(TypeError):
        _c.decode_batch_plain(body, None, None)                                   # not callable
