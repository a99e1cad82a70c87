"""record_check.property_value, the one finder of a property in stored bytes (place_fields' TAGS,
migrate.scan's TAGS/UNIQ_KEY/KEYS, migrate/_scan.c), returns what decode_properties keeps for that
name: the last segment with a non-empty value, in both property-string forms."""
from __future__ import annotations

from hypothesis import given, strategies as st

from mqbench.broker.formats.record import decode_properties
from mqbench.broker.formats.record_check import property_value

_pieces = st.sampled_from(["TAGS", "KEYS", "UNIQ_KEY", "XTAGS", "TAG", "a", "b c", " ", "\x01", "\x02", "\x02\x02",
                           "TAGS\x01", "\x02TAGS\x01", "KEYS\x01", "\x02KEYS\x01", "é", ""])
_props = st.lists(_pieces, max_size=12).map(lambda parts: "".join(parts).encode("utf-8"))


@given(props=_props, name=st.sampled_from([b"TAGS", b"KEYS", b"UNIQ_KEY", b"a"]))
def test_property_value_is_what_decoding_keeps(props: bytes, name: bytes) -> None:
    expected = decode_properties(props).get(name.decode())
    assert property_value(props, name) == (expected.encode("utf-8") if expected is not None else None)


def test_an_empty_later_value_does_not_hide_an_earlier_one() -> None:
    # scan._value returned b"" here (the last TAGS segment, empty), so the fast path gave tags code
    # 0 where the per-record path (decode_properties) gives hash("a")
    assert property_value(b"TAGS\x01a\x02TAGS\x01\x02", b"TAGS") == b"a"
    assert property_value(b"KEYS\x01k1 k2\x02TAGS\x01t\x02KEYS\x01", b"KEYS") == b"k1 k2"
    assert property_value(b"XTAGS\x01a", b"TAGS") is None
    assert property_value(b"TAGS\x01a\x01b", b"TAGS") == b"a\x01b"
