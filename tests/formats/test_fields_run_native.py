"""record_fields.decode_fields_run (one C call for a pull body's usual records, _sendpath.c) against
record_fields.decode_fields, the reference, on the same bytes: random records (both magics, IPv4 and IPv6
hosts, every field's range), damaged and truncated bodies, and every bound. Whatever the C call
takes must be what decode_fields returns (values, types, the shared host tuples); what it leaves is
decoded (or refused) by decode_fields. Without the accelerator it takes nothing."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqbench.broker.formats import record_fields as r
from mqbench.broker.formats.record import Message, encode_message
from mqbench.client import messages as client_messages
from mqbench.errors import CorruptDataError

from record_strategies import messages

# the tests that need the C run (the others hold with MQBENCH_NATIVE=0 too)
needs_c = pytest.mark.skipif(r._sendpath is None, reason="the _sendpath accelerator is off or not built")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

def _messages():
    return messages(body_size_max=80, properties_max=3, text_size_max=8,
                    hosts=("127.0.0.1", "10.1.2.3", "::1", "255.255.255.255"))


def _typed(fields) -> tuple:
    return type(fields), tuple((type(v), v) for v in fields)


def _check_run(buf: bytes, pos: int, end: int, check_crc: bool) -> tuple[list, int]:
    """The C run from ``pos``, each record of it compared with decode_fields at its place."""
    run, after = r.decode_fields_run(buf, pos, end, check_crc)
    at = pos
    for fields in run:
        want = r.decode_fields(buf, at, end, check_crc)
        assert _typed(fields) == _typed(want)
        assert fields.born_host is want.born_host and fields.store_host is want.store_host
        at += want.size
    assert after == at
    return run, after


@needs_c
@SETTINGS
@given(st.lists(_messages(), min_size=1, max_size=5), st.binary(max_size=6), st.booleans())
def test_the_c_run_gives_what_decode_fields_gives(msgs, trailing, check_crc):
    body = b"".join(encode_message(m) for m in msgs)
    buf = b"\0" * 3 + body + trailing
    for m in msgs:       # every host seen once: the run then takes every IPv4 record
        r.decode_fields(encode_message(m), 0, len(encode_message(m)))
    _, after = _check_run(buf, 3, 3 + len(body), check_crc)
    pos = 3
    for m in msgs:
        if ":" in m.born_host[0] or ":" in m.store_host[0]:
            break
        pos += len(encode_message(m))
    assert after == pos     # it stopped at the first IPv6 record (decode_fields' general parser) or the end


@SETTINGS
@given(st.lists(_messages(), min_size=1, max_size=3), st.data())
def test_a_damaged_body_is_left_to_decode_fields_at_the_damage(msgs, data):
    raw = bytearray(b"".join(encode_message(m) for m in msgs))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    buf = bytes(raw)
    check_crc = data.draw(st.booleans())
    end = data.draw(st.integers(0, len(buf) + 8))
    for m in msgs:
        r.decode_fields(encode_message(m), 0, len(encode_message(m)))
    _check_run(buf, 0, end, check_crc)


@given(st.binary(max_size=300), st.integers(-5, 310), st.integers(-5, 320), st.booleans())
def test_random_bytes_and_bounds_never_crash(buf, pos, end, check_crc):
    run, after = r.decode_fields_run(buf, pos, end, check_crc)
    if not run:
        assert after == pos
    else:
        _check_run(buf, pos, end, check_crc)


@needs_c
def test_every_cut_of_a_body_stops_before_the_cut_record():
    msgs = [Message("T", bytes([i]) * i, properties={"k": str(i)}, born_host=("10.0.0.1", 1), store_host=("10.0.0.2", 2))
            for i in range(4)]
    records = [encode_message(m) for m in msgs]
    body = b"".join(records)
    r.decode_fields(body, 0, len(body))
    r.decode_fields(body, len(records[0]), len(body))
    for cut in range(len(body) + 1):
        run, after = _check_run(body, 0, cut, True)
        assert after <= cut
        assert len(run) == sum(1 for i in range(4) if sum(map(len, records[:i + 1])) <= cut)
        run, after = _check_run(body[:cut], 0, len(body), True)   # end past the buffer
        assert after <= cut


@needs_c
def test_a_host_not_seen_yet_is_left_to_decode_fields_and_taken_after_it():
    record = encode_message(Message("T", b"x", born_host=("10.200.7.9", 41), store_host=("10.200.7.9", 42)))
    r._IPV4_HOSTS.pop((0x0AC80709 << 32) | 41, None)
    assert r.decode_fields_run(record * 2, 0, 2 * len(record)) == ([], 0)
    r.decode_fields(record, 0, len(record))
    run, after = r.decode_fields_run(record * 2, 0, 2 * len(record))
    assert (len(run), after) == (2, 2 * len(record))


def test_without_the_accelerator_the_run_takes_nothing_and_pulls_decode_the_same(monkeypatch):
    msgs = [Message("T", b"b%d" % i, properties={"UNIQ_KEY": "ID%d" % i, "TAGS": "a"}, queue_offset=i,
                    born_host=("10.0.0.1", 1), store_host=("10.0.0.2", 2)) for i in range(5)]
    body = b"".join(encode_message(m) for m in msgs)
    fast = client_messages.decode_pulled(body, "b")
    monkeypatch.setattr(r, "_sendpath", None)
    assert r.decode_fields_run(body, 0, len(body)) == ([], 0)
    slow = client_messages.decode_pulled(body, "b")
    assert [vars(m) for m in fast] == [vars(m) for m in slow]
    assert [m.msg_id for m in fast] == ["ID%d" % i for i in range(5)]


@SETTINGS
@given(st.lists(_messages(), min_size=1, max_size=3), st.data())
def test_pulled_bodies_decode_the_same_with_and_without_the_accelerator(msgs, data):
    raw = bytearray(b"".join(encode_message(m) for m in msgs))
    if data.draw(st.booleans()):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))

    def outcome():
        try:
            got = client_messages.decode_pulled(bytes(raw), "b")
            return [(m.properties, m.msg_id, sorted(vars(m).items())) for m in got]
        except CorruptDataError as exc:
            return str(exc)
        except Exception as exc:       # noqa: BLE001 - a codec error: the same either way
            return type(exc).__name__

    fast = outcome()
    saved = r._sendpath
    r._sendpath = None
    try:
        assert outcome() == fast
    finally:
        r._sendpath = saved
