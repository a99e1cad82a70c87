"""The consume-queue tags code of a replicated record, computed by ``_record_check.place_fields``
in C (a follower places every record through it) against ``record_check.place_fields_py``, the
reference: the schedule topic's due time from DELAY, TAGS given more than once, non-ASCII tags.
These used to be handed to the Python function (a property decode per delayed message: a fifth of
an orders workload); now the C code computes them and hands over only the cases its contract
names (a DELAY that is not a sign and up to 18 ASCII digits, a due time past int64)."""
from __future__ import annotations

import importlib
import re

import pytest
from hypothesis import given, settings, strategies as st

from mqbench.broker.formats import record_check as rc
from mqbench.broker.formats.record import Message, encode_messages_like
from mqbench.broker.formats.tags import _DEFAULT_LEVELS_MS
from mqbench.broker.formats.topics import SCHEDULE_TOPIC

try:
    _native = importlib.import_module("mqbench.broker.formats._record_check")
except ImportError:          # not built (no compiler): only the Python path exists
    _native = None
needs_c = pytest.mark.skipif(_native is None, reason="the _record_check accelerator is not built")

INT64_MAX = 2**63 - 1
_PLAIN_LEVEL = re.compile(rb"[+-]?[0-9]{1,18}")


class Counted:
    """The Python place_fields as the C function's fallback, counting the records handed to it."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def __call__(self, buf):
        self.calls.append(bytes(buf))
        return rc.place_fields_py(buf)


@pytest.fixture
def counted():
    fallback = Counted()
    _native.set_fallback(fallback, _DEFAULT_LEVELS_MS)
    try:
        yield fallback
    finally:
        _native.set_fallback(rc.place_fields_py, _DEFAULT_LEVELS_MS)


def record(topic: str, props: bytes, store_ms: int = 1_700_000_000_123, body: bytes = b"body") -> bytes:
    template = Message(topic=topic, body=b"", queue_id=3, queue_offset=7, store_timestamp_ms=store_ms,
                       born_timestamp_ms=1, store_host=("127.0.0.1", 10911), born_host=("10.0.0.1", 5))
    return encode_messages_like(template, [(body, props, 0)])[0]


def handed_over(props: bytes, topic: str, store_ms: int) -> bool:
    """Whether the contract lets the C function hand this record to the Python one."""
    if topic != SCHEDULE_TOPIC:
        return False
    delay = None
    for segment in props.split(b"\x02"):
        sep = segment.find(b"\x01")
        if 0 < sep < len(segment) - 1 and segment[:sep] == b"DELAY":
            delay = segment[sep + 1:]
    if delay is None:
        return False
    if not _PLAIN_LEVEL.fullmatch(delay):
        return True
    level = min(int(delay), len(_DEFAULT_LEVELS_MS))
    return not -2**63 <= store_ms + (_DEFAULT_LEVELS_MS[level - 1] if level > 0 else 1000) <= INT64_MAX


DELAYS = [b"1", b"3", b"16", b"18", b"19", b"0", b"-1", b"+2", b"007", b"999999999999999999", b"-999999999999999999"]
TABLE = (
    [(SCHEDULE_TOPIC, b"DELAY\x01" + d + b"\x02REAL_TOPIC\x01T\x02REAL_QID\x010\x02", ms)
     for d in DELAYS for ms in (0, 1_700_000_000_123, -5)]
    + [(SCHEDULE_TOPIC, b"TAGS\x01a\x02DELAY\x013\x02TAGS\x01b\x02DELAY\x0117", 1),
       (SCHEDULE_TOPIC, b"DELAY\x013\x02DELAY\x01\x02", 1),           # an empty later value keeps the earlier
       (SCHEDULE_TOPIC, b"TAGS\x01only\x02", 1),                       # no DELAY: the tags' hash
       (SCHEDULE_TOPIC, b"XDELAY\x014\x02", 1),
       (SCHEDULE_TOPIC, b"DELAY\x014\x01x\x02", 1),                      # the value holds \x01: int() refuses
       ("T", b"TAGS\x01a\x02TAGS\x01b\x02", 1), ("T", b"TAGS\x01a\x02TAGS\x01\x02", 1),
       ("T", b"TAGS\x01t\xc3\xa9g\x02", 1), ("T", b"TAGS\x01\xf0\x9f\x98\x80x\x02", 1),
       ("T", b"TAGS\x01\xe4\xb8\xad\xe6\x96\x87\x02KEYS\x01k\x02", 1), ("T", b"K\x01TAGS\x01v\x02TAGS\x01w\x02", 1),
       ("T", b"DELAY\x013\x02", 1), ("T\u00e9", b"TAGS\x01a\x01b", 1)]
)


@needs_c
@pytest.mark.parametrize("topic, props, store_ms", TABLE)
def test_c_computes_the_tags_code_the_python_code_does(counted, topic, props, store_ms):
    buf = record(topic, props, store_ms)
    assert _native.place_fields(buf) == rc.place_fields_py(buf)
    assert bool(counted.calls) == handed_over(props, topic, store_ms)


@needs_c
def test_the_due_time_of_each_default_level_without_the_python_code(counted):
    for level, delay_ms in enumerate(_DEFAULT_LEVELS_MS, start=1):
        buf = record(SCHEDULE_TOPIC, b"DELAY\x01%d\x02" % level, 1000)
        assert _native.place_fields(buf)[4] == 1000 + delay_ms
    assert _native.place_fields(record(SCHEDULE_TOPIC, b"DELAY\x0199\x02", 0))[4] == _DEFAULT_LEVELS_MS[-1]
    assert _native.place_fields(record(SCHEDULE_TOPIC, b"DELAY\x010\x02", 0))[4] == 1000
    assert counted.calls == []


@needs_c
def test_odd_delay_texts_and_int64_overflow_are_left_to_the_python_code(counted):
    for delay, ms in [(b" 3", 1), (b"1_6", 1), (b"\xd9\xa3", 1), (b"x", 1), (b"1234567890123456789", 1),
                      (b"18", INT64_MAX - 1000)]:
        buf = record(SCHEDULE_TOPIC, b"DELAY\x01" + delay + b"\x02", ms)
        assert _native.place_fields(buf) == rc.place_fields_py(buf)
    assert len(counted.calls) == 6


_props_text = st.text(st.characters(min_codepoint=1, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)),
                      max_size=30)
_delay = st.one_of(st.integers(-30, 30).map(str), st.sampled_from(["", " 1", "1_0", "+0", "-0", "x", "\u0663"]),
                   st.integers(-2**70, 2**70).map(str))


@needs_c
@settings(max_examples=40, deadline=None)
@given(st.sampled_from([SCHEDULE_TOPIC, "T"]), st.lists(st.tuples(
    st.sampled_from(["TAGS", "DELAY", "KEYS", "XTAGS", "TAGSX", ""]),
    st.one_of(_delay, st.text(st.characters(min_codepoint=1, max_codepoint=0x10FFFF, blacklist_categories=("Cs",),
                                            blacklist_characters="\x02"), max_size=8))), max_size=5),
       st.integers(-2**63, INT64_MAX), st.booleans(), _props_text)
def test_c_matches_python_on_random_properties_and_store_times(topic, pairs, store_ms, raw, noise):
    if raw:      # any text at all as the property string (separators anywhere)
        props = noise.encode("utf-8")
    else:
        props = b"".join(f"{k}\x01{v}\x02".encode("utf-8") for k, v in pairs)
    if len(props) > 32767:
        return
    buf = record(topic, props, store_ms)
    fallback = Counted()
    _native.set_fallback(fallback, _DEFAULT_LEVELS_MS)
    try:
        assert _native.place_fields(buf) == rc.place_fields_py(buf)
    finally:
        _native.set_fallback(rc.place_fields_py, _DEFAULT_LEVELS_MS)
    assert bool(fallback.calls) == handed_over(props, topic, store_ms)


@needs_c
@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=40), st.integers(-2**63, INT64_MAX), st.data())
def test_c_matches_python_on_random_property_bytes_and_damage(props, store_ms, data):
    """Bytes that need not be UTF-8, then a few bytes of the whole record changed."""
    buf = record(SCHEDULE_TOPIC if data.draw(st.booleans()) else "T", props, store_ms)
    assert _native.place_fields(buf) == rc.place_fields_py(buf)
    raw = bytearray(buf)
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    assert _native.place_fields(bytes(raw)) == rc.place_fields_py(bytes(raw))


@needs_c
def test_set_fallback_wants_the_delay_levels():
    with pytest.raises(TypeError):
        _native.set_fallback(rc.place_fields_py)
    with pytest.raises(ValueError):
        _native.set_fallback(rc.place_fields_py, ())
    with pytest.raises(OverflowError):
        _native.set_fallback(rc.place_fields_py, (2**64,))
    _native.set_fallback(rc.place_fields_py, _DEFAULT_LEVELS_MS)
    buf = record(SCHEDULE_TOPIC, b"DELAY\x012\x02", 10)
    assert _native.place_fields(buf)[4] == 10 + _DEFAULT_LEVELS_MS[1]


# -- place_fields_run: a follower's round of entries in one call ----------------------------------

def _entries(data) -> list:
    good = [record("T", b"TAGS\x01a\x02"), record(SCHEDULE_TOPIC, b"DELAY\x013\x02"), record("U", b"")]
    bad = bytearray(good[0])
    bad[-3] ^= 0x80                       # properties no longer UTF-8: place_fields does not take it
    kinds = st.sampled_from(["good", "good", "good", "bad", "meta", "magic0", "bytearray", "list", "short", "bool"])
    out = []
    for _ in range(data.draw(st.integers(0, 12))):
        kind, term = data.draw(kinds), data.draw(st.sampled_from([1, 1, 1, 2, 2**70]))
        body = data.draw(st.sampled_from(good))
        out.append({"good": (term, body, 1), "bad": (term, bytes(bad), 1), "meta": (term, b"\x00" * 90, 1),
                    "magic0": (term, body, 0), "bytearray": (term, bytearray(body), 1), "list": [term, body, 1],
                    "short": (term, body), "bool": (term, body, True)}[kind])
    return out


@needs_c
@settings(max_examples=30, deadline=None)
@given(st.data())
def test_place_fields_run_in_c_is_the_python_loop(data):
    items = _entries(data)
    # records this replica built (fields of its own, here marked by queue id -1), a stale entry
    # (another object with the same bytes: not used), and an entry that is not a pair
    built = {}
    for item in items:
        if type(item) is tuple and len(item) == 3 and data.draw(st.booleans()):
            body = item[1]
            built[id(body)] = (body, ("built", -1, 0, 0, 0, 0, len(body)))
            if data.draw(st.booleans()):
                built[id(body)] = (bytes(bytearray(body)), ("stale", -1, 0, 0, 0, 0, 0))
            elif data.draw(st.booleans()):
                built[id(body)] = "not a pair"
    for start in range(-1, len(items) + 2):
        for given_built in (None, {}, built):
            c_built = dict(given_built) if given_built is not None else None
            py_built = dict(given_built) if given_built is not None else None
            c_run, c_term, c_next = _native.place_fields_run(items, start, c_built)
            py_run, py_term, py_next = rc.place_fields_run_py(items, start, py_built)
            assert (c_run, c_term, c_next) == (py_run, py_term, py_next)
            assert c_built == py_built                                   # the same entries popped
            assert all(a[0] is b[0] for a, b in zip(c_run, py_run))      # the bodies themselves, not copies
            left = dict(given_built or {})
            for body, fields in c_run:      # the same body twice: its built fields serve once
                mine = left.pop(id(body), None)
                if type(mine) is tuple and mine[0] is body:
                    assert fields == mine[1]
                else:
                    assert fields == rc.place_fields_py(body)


def test_place_fields_run_stops_at_what_the_caller_must_handle():
    one, two = record("T", b"TAGS\x01a\x02"), record("T", b"TAGS\x01b\x02")
    items = [(1, one, 1), (1, two, 1), (2, one, 1), (2, b"\x00" * 90, 1), (2, two, 1)]
    for run_of in filter(None, (rc.place_fields_run_py, _native and _native.place_fields_run)):
        run, term, after = run_of(items, 0)
        assert ([body for body, _ in run], term, after) == ([one, two], 1, 2)
        assert run_of(items, 2)[1:] == (2, 3)
        assert run_of(items, 3) == ([], None, 3)
        assert run_of(items, 4)[1:] == (2, 5)
        assert run_of(items, 9) == ([], None, 9)
    for run_of in filter(None, (rc.place_fields_run_py, _native and _native.place_fields_run)):
        with pytest.raises(TypeError):
            run_of((1, one, 1), 0)
        with pytest.raises(TypeError):
            run_of(items, 0, [])
        assert run_of([(1, b"\x00" * 100, 1)], 0) == ([], None, 0)      # no record magic
