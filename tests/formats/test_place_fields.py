"""``place_fields``: a follower's one-pass read of what placing a replicated record needs. It must
take exactly the records ``peek_record`` takes at their own size and return the same fields (the
ones ``ReplicatedCommitLog`` placed and dispatched by before); for everything else it returns None
and the caller runs ``peek_record``, so a bad record is refused with the same error as before."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mqbench.broker.formats import record_check as rc
from mqbench.broker.formats.record import Message, encode_message, encode_messages_like
from mqbench.broker.formats.record_layout import SYSFLAG_INNER_BATCH, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK
from mqbench.broker.formats.tags import _DEFAULT_LEVELS_MS
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.errors import CorruptDataError

HOSTS = [("127.0.0.1", 10911), ("::1", 10912), ("2001:db8::7", 1)]
TOPICS = ["T", "TopicTest", "Topic\u00e9\u4e2d", SCHEDULE_TOPIC, "L" * 130]
PROPERTIES = [
    b"", b"TAGS\x01TagA\x02", b"KEYS\x01k1 k2\x02TAGS\x01t\xc3\xa9g\x02UNIQ_KEY\x01AB\x02",
    b"XTAGS\x01v\x02", b"K\x01TAGS\x01v\x02", b"TAGS\x01\x02", b"TAGS\x01a\x02TAGS\x01b\x02", b"TAGS\x01a",
    b"\x02TAGS\x01x\x02", b"TAGS\x01a\x01b\x02", b"DELAY\x013\x02TAGS\x01x\x02", b"DELAY\x01zz\x02",
    b"INNER_NUM\x012\x02INNER_BASE\x010\x02", b"TAGS\x01\xe4\xb8\xad\x02KEYS\x01\xf0\x9f\x98\x80\x02",
]


def old_fields(buf: bytes):
    """What placing a replicated record took before ``place_fields``: its fields, or the refusal."""
    try:
        peek = rc.peek_record(buf, where="replicated entry")
    except CorruptDataError as exc:
        return ("refused", str(exc))
    if peek.size != len(buf):
        return ("refused", "size")
    return (peek.topic, peek.queue_id, peek.queue_offset, peek.sysflag, rc.peek_tags_code(peek),
            peek.store_timestamp_ms, peek.size)


def table() -> list[bytes]:
    out = []
    for i, props in enumerate(PROPERTIES):
        for j, topic in enumerate(TOPICS):
            born, store = HOSTS[(i + j) % 3], HOSTS[(i + 2 * j) % 3]
            sysflag = [0, SYSFLAG_INNER_BATCH, SYSFLAG_TX_PREPARED, SYSFLAG_TX_ROLLBACK, 0x8][(i * j) % 5]
            template = Message(topic=topic, body=b"", queue_id=i, queue_offset=j * 1000, physical_offset=48 + j,
                               sysflag=sysflag, born_timestamp_ms=1_700_000_000_000, born_host=born,
                               store_timestamp_ms=1_700_000_000_001 + i, store_host=store,
                               version=0 if len(topic) > 127 else 1 + (i + j) % 2)
            out.extend(encode_messages_like(template, [(b"body \xff" * j, props, i)]))
    out.append(encode_message(Message(topic="Crc", body=b"x", properties={"TAGS": "a"}), append_prop_crc=True))
    return out


def test_every_table_record_is_taken_with_the_fields_placing_used_before():
    for buf in table():
        assert rc.place_fields(buf) == old_fields(buf)


def test_every_byte_changed_truncated_or_extended_is_taken_or_left_as_before():
    taken = left = 0
    for buf in table():
        cases = [buf[:n] for n in range(0, len(buf), 7)] + [buf + b"\0", buf + b"x" * 9]
        for at in range(len(buf)):
            for value in {0, 0xFF, 0x80, buf[at] ^ 1}:
                raw = bytearray(buf)
                raw[at] = value
                cases.append(bytes(raw))
        for case in cases:
            new, old = rc.place_fields(case), old_fields(case)
            if new is None:
                left += 1          # the caller runs peek_record: the same fields or refusal by construction
            else:
                assert new == old, case.hex()
                taken += 1
    assert taken and left      # both ways were exercised


_text = st.text(st.characters(min_codepoint=1, max_codepoint=0x10FFFF, blacklist_categories=("Cs",),
                              blacklist_characters="\x01\x02"), max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TOPICS), st.dictionaries(st.sampled_from(["TAGS", "KEYS", "DELAY", "XTAGS", "A"]), _text,
                                                 max_size=4),
       st.sampled_from(HOSTS), st.sampled_from(HOSTS), st.binary(max_size=64), st.data())
def test_any_record_and_any_damage_to_it(topic, properties, born, store, body, data):
    msg = Message(topic=topic, body=body, properties=properties, born_host=born, store_host=store,
                  store_timestamp_ms=data.draw(st.integers(0, 2**40)), queue_id=data.draw(st.integers(0, 9)))
    buf = encode_message(msg)
    assert rc.place_fields(buf) == old_fields(buf)
    raw = bytearray(buf)
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    new = rc.place_fields(bytes(raw))
    assert new is None or new == old_fields(bytes(raw))


def test_a_refused_record_is_refused_with_the_same_error_by_the_store(tmp_path):
    """Through the follower's placing path: a record that does not check out is refused with
    peek_record's error, and the entries before it stay written."""
    from mqbench.broker.store.store import Store
    good = encode_message(Message(topic="T", body=b"ok", properties={"TAGS": "a"}, store_timestamp_ms=5))
    bad = bytearray(good)
    bad[88] ^= 1             # the body's first byte: BODYCRC no longer matches
    with Store.open(tmp_path / "s", "v5-dledger", create=True, raft_mode=True, background_flush=False) as store:
        with pytest.raises(CorruptDataError, match="body CRC mismatch") as caught:
            store.replicated.append_replicated_batch([(1, good, 1), (1, bytes(bad), 1)])
        assert str(caught.value) == old_fields(bytes(bad))[1]
        assert store.dledger.last_index == 0


# -- the C accelerator (_record_check.c) against the Python reference ---------------------------

try:
    import importlib
    _native = importlib.import_module("mqbench.broker.formats._record_check")
    _native.set_fallback(rc.place_fields_py, _DEFAULT_LEVELS_MS)
except ImportError:          # not built (no compiler): only the Python path exists
    _native = None
needs_c = pytest.mark.skipif(_native is None, reason="the _record_check accelerator is not built")


@needs_c
def test_c_matches_python_on_every_table_record_and_every_damage_to_it():
    for buf in table():
        cases = [buf, buf[:-1], buf + b"\0", bytearray(buf), memoryview(buf)]
        for at in range(0, len(buf), 3):
            for value in (0, 0xFF, 0x80, buf[at] ^ 1):
                raw = bytearray(buf)
                raw[at] = value
                cases.append(bytes(raw))
        for case in cases:
            assert _native.place_fields(case) == rc.place_fields_py(case), bytes(case).hex()
    for bad in (5, None):
        with pytest.raises(TypeError):
            rc.place_fields_py(bad)
        with pytest.raises(TypeError):
            _native.place_fields(bad)


@needs_c
@settings(max_examples=120, deadline=None)
@given(st.sampled_from(TOPICS + ["T\x00", "\u00e9"]), st.dictionaries(
    st.sampled_from(["TAGS", "KEYS", "DELAY", "XTAGS", "A"]), _text, max_size=4),
       st.sampled_from(HOSTS), st.sampled_from(HOSTS), st.binary(max_size=64), st.integers(0, 255), st.data())
def test_c_matches_python_on_any_record_and_random_bytes(topic, properties, born, store, body, sysflag, data):
    msg = Message(topic=topic, body=body, properties=properties, born_host=born, store_host=store, sysflag=sysflag
                  & ~0x30, store_timestamp_ms=data.draw(st.integers(0, 2**40)),
                  queue_id=data.draw(st.integers(0, 2**31 - 1)), queue_offset=data.draw(st.integers(0, 2**63 - 1)))
    buf = encode_message(msg)
    assert _native.place_fields(buf) == rc.place_fields_py(buf)
    raw = bytearray(buf)
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    assert _native.place_fields(bytes(raw)) == rc.place_fields_py(bytes(raw))
    noise = data.draw(st.binary(min_size=0, max_size=200))
    assert _native.place_fields(noise) == rc.place_fields_py(noise)
