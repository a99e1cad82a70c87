"""``canonical_batch_count``: a client batch body an inner-batch record may store as sent is exactly
``encode_batch(decode_batch(body))``; anything else (or anything ``decode_batch`` refuses) is None,
so the broker decodes it as before."""
import struct

from hypothesis import given, settings, strategies as st

from mqbench.broker.formats.batch import BatchItem, canonical_batch_count, decode_batch, encode_batch
from mqbench.errors import CorruptDataError

TEXT = st.text(alphabet=st.sampled_from("aK_\x01\x02é "), max_size=6)


@st.composite
def bodies(draw):
    items = []
    for _ in range(draw(st.integers(1, 5))):
        wire = draw(st.one_of(
            st.dictionaries(st.text(alphabet="aKé_", min_size=1, max_size=4), st.text(alphabet="xé ", min_size=1,
                                                                                    max_size=4), max_size=3)
            .map(lambda d: "".join(f"{k}\x01{v}\x02" for k, v in d.items())),
            st.lists(TEXT, max_size=3).map("".join)))
        items.append((draw(st.binary(max_size=8)), wire.encode(), draw(st.integers(-3, 3))))
    body = b"".join(struct.pack(">iiiii", 22 + len(b) + len(p), 0, 0, f, len(b)) + b + struct.pack(">h", len(p)) + p
                    for b, p, f in items)
    if draw(st.booleans()):     # a damaged field, a stray byte or a torn end
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1:]
    return body + draw(st.sampled_from([b"", b"\0"]))


@settings(max_examples=200)
@given(bodies())
def test_as_sent_only_when_it_is_what_the_decoding_path_stores(body):
    count = canonical_batch_count(body)
    try:
        items = decode_batch(body)
    except CorruptDataError:
        assert count is None
        return
    if count is not None:
        assert count == len(items) and encode_batch(items) == body


def test_what_the_clients_send_is_stored_as_sent_and_the_rest_is_not():
    items = [BatchItem(b"x" * 50, {"UNIQ_KEY": f"{i:032X}", "WAIT": "true", "TAGS": "t"}) for i in range(64)]
    body = encode_batch(items)
    assert canonical_batch_count(body) == 64
    assert canonical_batch_count(body, items_max=63) is None
    assert canonical_batch_count(encode_batch([BatchItem(b"", {"K": "ü"})] * 2)) == 2
    assert canonical_batch_count(encode_batch([BatchItem(b"x")])) == 1          # no properties
    assert canonical_batch_count(b"") is None
    magic = bytearray(body)
    magic[4:8] = b"\0\0\0\1"                  # MAGICCODE the encoder would write as 0
    assert canonical_batch_count(bytes(magic)) is None
    empty_value = _item(b"x", b"A\x01\x02B\x01c\x02")
    assert decode_batch(empty_value)[0].properties == {"B": "c"} and canonical_batch_count(empty_value) is None
    dup = _item(b"x", b"A\x01b\x02A\x01c\x02")
    assert decode_batch(dup)[0].properties == {"A": "c"} and canonical_batch_count(dup) is None
    ok, other = _item(b"x", b"A\x01b\x02B\x01c\x02"), _item(b"", b"B\x01b\x02A\x01c\x02")
    assert canonical_batch_count(ok + other + ok) == 3
    assert canonical_batch_count(ok + dup + ok) is None and canonical_batch_count(ok + _item(b"y", b"") + dup) is None
    assert canonical_batch_count(_item(b"", b"A\x01b\x02") + _item(b"", b"C\x01d")) is None     # no last \x02
    assert canonical_batch_count(_item(b"x", b"A\x01b\x01c\x02")) is None        # a value holding \x01
    refused = frozenset({b"DELAY", b"TIMER_DELIVER_MS"})
    assert canonical_batch_count(ok + other, names_refused=refused) == 2
    assert canonical_batch_count(ok + _item(b"", b"A\x01b\x02DELAY\x013\x02"), names_refused=refused) is None
    assert canonical_batch_count(ok + _item(b"", b"DELAY\x013\x02"), names_refused=refused) is None
    assert canonical_batch_count(_item(b"DELAY\x013\x02", b"A\x01b\x02"), names_refused=refused) == 1   # a body
    assert canonical_batch_count(ok + other, properties_bytes_max=8) == 2
    assert canonical_batch_count(ok + other, properties_bytes_max=7) is None
    bad = _item(b"x", b"A\x01\xff\x02")
    assert canonical_batch_count(bad) is None              # not UTF-8: decode_batch names it


def _item(body: bytes, wire: bytes) -> bytes:
    return struct.pack(">iiiii", 22 + len(body) + len(wire), 0, 0, 0, len(body)) + body + struct.pack(">h", len(wire)) + wire
