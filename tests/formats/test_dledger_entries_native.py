"""``dledger.build_record_entries``: the C accelerator (``_dledger.c``) returns what the Python
reference returns (writes and their types, index units, placed records and whether each is the
record object itself) for the same records, offsets and positions, segment ends included, and
raises the same error classes for inputs it refuses."""
from __future__ import annotations

import importlib
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqbench.broker.formats import dledger
from mqbench.errors import UserError

try:
    _c = importlib.import_module("mqbench.broker.formats._dledger").build_record_entries
except ImportError:          # not built (no compiler): only the Python path exists
    _c = None

py = dledger.build_record_entries_py
needs_c = pytest.mark.skipif(_c is None, reason="the _dledger accelerator is not built")


def _shape(result):
    writes, units, placed = result
    return ([(at, type(buf).__name__, bytes(buf)) for at, buf in writes], type(units).__name__, bytes(units),
            [(index, pos, bytes(stored)) for index, pos, stored in placed])


def _same(records, offsets, *args):
    expected, got = py(records, offsets, *args), _c(records, offsets, *args)
    assert _shape(got) == _shape(expected)
    for (_, _, want), (_, _, have), record in zip(expected[2], got[2], records):
        assert (have is record) == (want is record)
    return expected


records_st = st.lists(st.binary(min_size=36, max_size=300), min_size=0, max_size=12)


@needs_c
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=records_st, data=st.data(), term=st.integers(0, 2**63 - 1), index=st.integers(0, 2**40),
       segment_bytes=st.integers(400, 2000))
def test_c_matches_python(records, data, term, index, segment_bytes):
    offsets = data.draw(st.lists(st.integers(0, 2**63 - 1), min_size=len(records), max_size=len(records) + 1))
    end_pos = data.draw(st.integers(0, 3 * segment_bytes))
    if segment_bytes - end_pos % segment_bytes < 8:
        end_pos += segment_bytes - end_pos % segment_bytes       # a log never ends closer than 8 bytes
    expected = _same(records, offsets, term, index, end_pos, segment_bytes)
    # a follower given the stored bytes: the same objects come back, nothing is copied
    stored = [s for _, _, s in expected[2]]
    again = _same(stored, offsets, term, index, end_pos, segment_bytes)
    assert all(s is r for (_, _, s), r in zip(again[2], stored))


@needs_c
def test_c_refuses_what_python_refuses():
    good = bytes(60)
    for records, offsets, end_pos, segment_bytes in (
            ([good, bytes(35)], [0, 1], 0, 4096),             # too short for the offsets
            ([good], [2**63], 0, 4096),                        # offset beyond int64
            ([good], ["x"], 0, 4096),                          # not an integer
            ([good], [0], 4092, 4096),                         # a blank with 4 bytes left
            ([good, 5], [0, 1], 0, 4096)):                     # not a buffer
        errors = []
        for fn in (py, _c):
            with pytest.raises((struct.error, UserError, TypeError)) as info:
                fn(records, offsets, 1, 0, end_pos, segment_bytes)
            errors.append(info.type)
        assert errors[0] is errors[1], (records, offsets, errors)
    for fn in (py, _c):
        with pytest.raises(ValueError):
            fn([good], [0], 1, 0, 0, 0)


@needs_c
def test_c_keeps_no_references():
    import sys
    record = bytes(range(64)) * 2
    before = sys.getrefcount(record)
    for _ in range(1000):
        _c([record, record], [7, 8], 3, 10, 0, 1 << 20)
        _c([record], [struct.unpack_from(">q", record, 20)[0]], 3, 10,
           struct.unpack_from(">q", record, 28)[0] - 48, 1 << 30)
    assert sys.getrefcount(record) == before
