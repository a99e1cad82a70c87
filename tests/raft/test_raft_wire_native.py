"""The Raft wire's per-entry loops in C (``broker/raft/_wire.c``) against the Python reference in
``wire.py``: the same entries (type, values, data as bytes) and bytes left for any frame bytes,
bytes or bytearray, whole, cut or damaged (a peer is untrusted), the same PeerError messages, and
the same encoded bytes and struct.error refusals when encoding."""
from __future__ import annotations

import importlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.broker.raft import wire
from mqbench.broker.raft.types import Entry, EntryKind
from mqbench.errors import PeerError

try:
    _c = importlib.import_module("mqbench.broker.raft._wire")
except ImportError:          # not built (no compiler): only the Python path exists
    _c = None
needs_c = pytest.mark.skipif(_c is None, reason="the _wire accelerator is not built")

entries_st = st.lists(st.builds(Entry, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=40),
                                st.sampled_from(list(EntryKind))), max_size=5)


def _decode(fn, body, start, pos, end, count):
    try:
        entries, left = fn(body, start, pos, end, count, Entry, wire._KIND_OF)
    except PeerError as exc:
        return "refused", str(exc)
    assert all(type(e) is Entry and type(e.data) is bytes for e in entries)
    return entries, left


@needs_c
@settings(max_examples=200, deadline=None)
@given(entries_st, st.binary(max_size=6), st.binary(max_size=6), st.data())
def test_decode_matches_python_on_any_bytes(entries, before, after, data):
    raw = bytearray(before + wire.encode_entries_py(entries) + after)
    for _ in range(data.draw(st.integers(0, 3))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    start = data.draw(st.integers(0, len(before)))
    pos = len(before)
    end = data.draw(st.integers(pos, len(raw)))
    count = data.draw(st.integers(0, len(entries) + 1))
    for body in (bytes(raw), raw):
        assert _decode(_c.decode_entries, body, start, pos, end, count) == \
            _decode(wire.decode_entries_py, body, start, pos, end, count)


@needs_c
@settings(max_examples=100, deadline=None)
@given(entries_st)
def test_encode_matches_python(entries):
    assert _c.encode_entries(entries) == wire.encode_entries_py(entries)
    assert _c.encode_entries(tuple(entries)) == wire.encode_entries_py(tuple(entries))


@needs_c
def test_encode_refuses_what_python_refuses():
    for bad in ([Entry(-1, 0, b"", EntryKind.NORMAL)], [Entry(0, 2**64, b"", EntryKind.NORMAL)],
                [Entry(0, 0, b"", 256)], [Entry(0, 0.5, b"", 0)]):
        with pytest.raises(struct.error):
            wire.encode_entries_py(bad)
        with pytest.raises(struct.error):
            _c.encode_entries(bad)


@needs_c
def test_no_references_kept():
    import sys
    data = b"x" * 50
    entries = [Entry(1, 2, data, EntryKind.NORMAL)] * 3
    frame = _c.encode_entries(entries)
    before = sys.getrefcount(data), sys.getrefcount(frame), sys.getrefcount(EntryKind.NORMAL)
    for _ in range(2000):
        _c.encode_entries(entries)
        _c.decode_entries(frame, 0, 0, len(frame), 3, Entry, wire._KIND_OF)
        with pytest.raises(PeerError):
            _c.decode_entries(frame, 0, 0, len(frame) - 1, 3, Entry, wire._KIND_OF)
    assert (sys.getrefcount(data), sys.getrefcount(frame), sys.getrefcount(EntryKind.NORMAL)) == before
