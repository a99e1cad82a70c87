"""The pure compression module: sysflag bits, per-message bodies, the whole-batch envelope.

The envelope is checked byte for byte against the spec's worked Example 5 (the client batch body of
two messages), fed whole, with trailing bytes, cut at every length, and fuzzed.
"""
import struct
import zlib

import lz4.frame
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from mqbench.broker.formats import compression as comp
from mqbench.broker.formats.batch import BatchItem, decode_batch, encode_batch
from mqbench.codecs.registry import parse_codec
from mqbench.errors import CorruptDataError, UserError

# Spec 15, Example 5: m1 = body "a", WAIT=true; m2 = body "bc", KEYS=k, WAIT=true (74 bytes).
EXAMPLE5_ITEMS = [BatchItem(b"a", {"WAIT": "true"}), BatchItem(b"bc", {"KEYS": "k", "WAIT": "true"})]
EXAMPLE5_HEX = ("00000021 00000000 00000000 00000000 00000001 61 000a 57414954017472756502"
                "00000029 00000000 00000000 00000000 00000002 6263 0011 4b455953016b02 57414954017472756502")
EXAMPLE5 = bytes.fromhex(EXAMPLE5_HEX.replace(" ", ""))
CODECS = ["zlib:5", "zstd:3", "lz4", "snappy"]


def test_sysflag_bits_zlib_is_the_legacy_flag_others_carry_their_type_id():
    assert comp.sysflag_bits(None) == 0
    assert comp.sysflag_bits(parse_codec("none")) == 0
    assert comp.sysflag_bits(parse_codec("zlib:9")) == 0x1       # RocketMQ 4.x / C++ client form
    assert comp.sysflag_bits(parse_codec("lz4")) == 0x101
    assert comp.sysflag_bits(parse_codec("zstd:3")) == 0x201
    assert comp.sysflag_bits(parse_codec("snappy")) == 0x401
    # the 4.9.4+ Java client's zlib form (a real 4.9.8 store holds it; migrate writes it)
    assert comp.sysflag_bits(parse_codec("zlib"), zlib_type_bits=True) == 0x301
    assert comp.compress_body(b"a" * 10, parse_codec("zlib"), 4, zlib_type_bits=True)[1] == 0x301
    assert comp.sysflag_bits(parse_codec("zstd:3"), zlib_type_bits=True) == 0x201


@pytest.mark.parametrize("sysflag,name", [(0x1, "zlib"), (0x301, "zlib"), (0x101, "lz4"), (0x201, "zstd"),
                                           (0x401, "snappy"), (0xC1 | 0x201, "zstd")])
def test_codec_of_reads_the_type_bits_and_legacy_zero_as_zlib(sysflag, name):
    assert comp.codec_of(sysflag).name == name


def test_codec_of_uncompressed_and_unknown_types():
    assert comp.codec_of(0x300) is None            # type bits without COMPRESSED: not compressed
    assert comp.compression_type_id(0x300) is None
    with pytest.raises(CorruptDataError, match=r"commitlog at offset 96: unknown compression type 5"):
        comp.codec_of(0x501, where="commitlog", offset=96)
    with pytest.raises(CorruptDataError, match="unknown compression type 7"):
        comp.decompress_body(b"x", 0x701)


def test_compress_body_follows_rocketmqs_threshold_and_zlib_bytes():
    codec = parse_codec("zlib:5")
    below, at = b"x" * 4095, b"x" * 4096
    assert comp.compress_body(below, codec) == (below, 0)
    body, bits = comp.compress_body(at, codec)
    assert bits == 0x1 and body == zlib.compress(at, 5)   # what a zlib level-5 producer sends
    assert comp.compress_body(b"y", codec, over_bytes=0) == (zlib.compress(b"y", 5), 0x1)
    assert comp.compress_body(at, None) == (at, 0)
    assert comp.compress_body(at, parse_codec("none")) == (at, 0)


@pytest.mark.parametrize("spec", CODECS)
def test_decompress_body_round_trip_for_every_codec(spec):
    codec = parse_codec(spec)
    plain = b"order-42 paid " * 500
    body, bits = comp.compress_body(plain, codec, over_bytes=0)
    assert body != plain
    assert comp.decompress_body(body, bits) == plain
    assert comp.decompress_body(plain, 0) == plain


@pytest.mark.parametrize("spec", CODECS)
def test_decompression_bombs_and_garbage_are_refused_with_the_place(spec):
    codec = parse_codec(spec)
    bomb = codec.compress(b"\0" * (1 << 20))
    bits = comp.sysflag_bits(codec)
    with pytest.raises(CorruptDataError, match=r"pull body at offset 7: compressed body: .*limit"):
        comp.decompress_body(bomb, bits, size_max=64 * 1024, where="pull body", offset=7)
    with pytest.raises(CorruptDataError, match=r"pull body at offset 7: compressed body"):
        comp.decompress_body(b"\x01\x02garbage", bits, where="pull body", offset=7)


def test_envelope_of_spec_example5_byte_for_byte():
    assert encode_batch(EXAMPLE5_ITEMS) == EXAMPLE5 and len(EXAMPLE5) == 74
    body, bits = comp.encode_client_batch(EXAMPLE5_ITEMS, parse_codec("zlib:5"))
    assert bits == 0x1
    assert body[:20] == bytes.fromhex("ffffffff" "4d514243" "0000004a" "00000002" "ffffffff")
    assert body[20:] == zlib.compress(EXAMPLE5, 5)
    body, bits = comp.encode_client_batch(EXAMPLE5_ITEMS, parse_codec("zstd:3"))
    assert bits == 0x201 and zstandard.ZstdDecompressor().decompress(body[20:]) == EXAMPLE5
    body, bits = comp.encode_client_batch(EXAMPLE5_ITEMS, parse_codec("lz4"))
    assert bits == 0x101 and lz4.frame.decompress(body[20:]) == EXAMPLE5
    # without a codec the body is the plain client batch body of spec 4.1
    assert comp.encode_client_batch(EXAMPLE5_ITEMS, None) == (EXAMPLE5, 0)


@pytest.mark.parametrize("spec", CODECS)
def test_decode_client_batch_whole(spec):
    codec = parse_codec(spec)
    body, bits = comp.encode_client_batch(EXAMPLE5_ITEMS, codec)
    batch = comp.decode_client_batch(body, bits)
    assert batch.items == EXAMPLE5_ITEMS and batch.count == 2 and batch.plain_bytes == 74
    assert batch.stored_body == body[20:] and batch.sysflag_bits == bits
    # what the store keeps reads back through the inner-batch reader
    assert comp.inner_batch_items(batch.stored_body, 0xC0 | bits) == EXAMPLE5_ITEMS


def test_decode_client_batch_plain():
    batch = comp.decode_client_batch(EXAMPLE5, 0)
    assert batch.items == EXAMPLE5_ITEMS and batch.stored_body == EXAMPLE5 and batch.sysflag_bits == 0
    with pytest.raises(CorruptDataError, match="empty batch"):
        comp.decode_client_batch(b"", 0)
    with pytest.raises(CorruptDataError, match="exceeds 10"):
        comp.decode_client_batch(EXAMPLE5, 0, size_max=10)


def test_an_unaware_batch_decoder_refuses_the_envelope():
    """The negative TOTALSIZE/BODYLENGTH slots make a plain batch walker fail instead of storing."""
    body, _ = comp.encode_client_batch(EXAMPLE5_ITEMS, parse_codec("zstd:3"))
    with pytest.raises(CorruptDataError):
        decode_batch(body)
    total, _magic, _crc, _flag, body_len = struct.unpack_from(">iiiii", body)
    assert total < 0 and body_len < 0   # RocketMQ's countInnerMsgNum / batch encoder throw on these


@pytest.mark.parametrize("spec", CODECS)
def test_decode_client_batch_refuses_trailing_bytes(spec):
    body, bits = comp.encode_client_batch(EXAMPLE5_ITEMS, parse_codec(spec))
    with pytest.raises(CorruptDataError, match="batch body at offset 20: compressed batch stream"):
        comp.decode_client_batch(body + b"\0", bits)


@pytest.mark.parametrize("spec", CODECS)
def test_decode_client_batch_refuses_every_cut(spec):
    """Fed a byte at a time: every proper prefix is refused with CorruptDataError."""
    body, bits = comp.encode_client_batch(EXAMPLE5_ITEMS * 3, parse_codec(spec))
    for cut in range(len(body)):
        with pytest.raises(CorruptDataError):
            comp.decode_client_batch(body[:cut], bits)


def test_decode_client_batch_checks_each_header_field():
    codec = parse_codec("zlib:5")
    body, bits = comp.encode_client_batch(EXAMPLE5_ITEMS, codec)

    def patched(index, value):
        fields = list(struct.unpack_from(">iiiii", body))
        fields[index] = value
        return struct.pack(">iiiii", *fields) + body[20:]

    with pytest.raises(CorruptDataError, match="not a compressed batch header"):
        comp.decode_client_batch(patched(1, 0x12345678), bits)
    with pytest.raises(CorruptDataError, match="not a compressed batch header"):
        comp.decode_client_batch(patched(0, 74), bits)
    with pytest.raises(CorruptDataError, match="not a compressed batch header"):
        comp.decode_client_batch(patched(4, 0), bits)
    with pytest.raises(CorruptDataError, match=r"offset 8: .*declares 0 plain bytes"):
        comp.decode_client_batch(patched(2, 0), bits)
    with pytest.raises(CorruptDataError, match=r"offset 8: .*outside 1..4194304"):
        comp.decode_client_batch(patched(2, 5 << 20), bits)
    with pytest.raises(CorruptDataError, match=r"offset 20: .*limit of 73 bytes"):
        comp.decode_client_batch(patched(2, 73), bits)     # declared too small: refused, never expanded
    with pytest.raises(CorruptDataError, match=r"holds 74 bytes, the header says 75"):
        comp.decode_client_batch(patched(2, 75), bits)
    with pytest.raises(CorruptDataError, match=r"offset 12: .*holds 2 messages, the header says 3"):
        comp.decode_client_batch(patched(3, 3), bits)
    with pytest.raises(CorruptDataError, match=r"offset 12: .*declares 0 messages"):
        comp.decode_client_batch(patched(3, 0), bits)
    with pytest.raises(CorruptDataError, match=r"^batch body: unknown compression type 6 in sysflag 0x601"):
        comp.decode_client_batch(body, 0x601)
    with pytest.raises(CorruptDataError, match=r"offset 20: compressed batch stream: lz4"):
        comp.decode_client_batch(body, 0x101)              # a zlib stream announced as lz4


def test_a_stream_that_decompresses_to_a_damaged_batch_is_refused():
    plain = EXAMPLE5[:-1]  # the last item is one byte short
    body = struct.pack(">iiiii", -1, comp.ENVELOPE_MAGIC, len(plain), 2, -1) + zlib.compress(plain, 5)
    with pytest.raises(CorruptDataError, match=r"offset 20: decompressed batch body at byte 33"):
        comp.decode_client_batch(body, 0x1)


def test_decompression_bomb_in_a_batch_is_refused_before_expanding():
    bomb = zlib.compress(b"\0" * (8 << 20), 9)  # 8 MiB of zeros in ~8 KiB, over the 4 MiB bound
    body = struct.pack(">iiiii", -1, comp.ENVELOPE_MAGIC, 1 << 20, 1, -1) + bomb
    with pytest.raises(CorruptDataError, match="size limit"):
        comp.decode_client_batch(body, 0x1)
    with pytest.raises(CorruptDataError, match=r"commitlog at offset 5: compressed body: .*size limit"):
        comp.inner_batch_items(bomb, 0xC1, where="commitlog", offset=5)


def test_encode_client_batch_refuses_bad_batches():
    with pytest.raises(UserError, match="empty batch"):
        comp.encode_client_batch([], parse_codec("zlib"))
    with pytest.raises(UserError, match="exceeds 50"):
        comp.encode_client_batch(EXAMPLE5_ITEMS, parse_codec("zlib"), size_max=50)
    many = [BatchItem(b"x")] * 32768
    with pytest.raises(UserError, match="compressed batch holds at most 32767"):
        comp.encode_client_batch(many, parse_codec("zlib"))
    body, bits = comp.encode_client_batch(many, None)     # plain: stored one record per message
    assert bits == 0 and comp.decode_client_batch(body, 0).count == 32768


def test_inner_batch_items_names_the_place_of_a_damaged_plain_body():
    with pytest.raises(CorruptDataError, match=r"commitlog at offset 9: batch body at byte 33"):
        comp.inner_batch_items(EXAMPLE5[:-1], 0xC0, where="commitlog", offset=9)


items_strategy = st.lists(
    st.builds(BatchItem, st.binary(min_size=1, max_size=300),
              st.dictionaries(st.text("abcdefgh", min_size=1, max_size=6), st.text("xyz01 ", min_size=1, max_size=8),
                              max_size=3),
              st.integers(-2**31, 2**31 - 1)),
    min_size=1, max_size=12)


@given(items=items_strategy, spec=st.sampled_from(CODECS + ["none"]))
def test_round_trip_any_batch_any_codec(items, spec):
    codec = parse_codec(spec)
    body, bits = comp.encode_client_batch(items, codec)
    batch = comp.decode_client_batch(body, bits)
    assert batch.items == items
    assert comp.inner_batch_items(batch.stored_body, 0xC0 | batch.sysflag_bits) == items


@given(data=st.binary(max_size=400), sysflag=st.integers(0, 0x7FF))
def test_fuzz_random_bodies_raise_only_corrupt_data(data, sysflag):
    for call in (lambda: comp.decode_client_batch(data, sysflag), lambda: comp.inner_batch_items(data, sysflag),
                 lambda: comp.decompress_body(data, sysflag)):
        try:
            call()
        except CorruptDataError:
            pass


@given(spec=st.sampled_from(CODECS), position=st.integers(0, 10_000), value=st.integers(0, 255),
       tail=st.binary(max_size=4))
def test_fuzz_damaged_envelopes_never_yield_wrong_messages(spec, position, value, tail):
    body, bits = comp.encode_client_batch(EXAMPLE5_ITEMS * 2, parse_codec(spec))
    damaged = bytearray(body)
    damaged[position % len(body)] = value
    damaged = bytes(damaged) + tail
    try:
        batch = comp.decode_client_batch(damaged, bits)
    except CorruptDataError:
        return
    # accepted only when the bytes still hold a well-formed batch of exactly the declared size
    # and count (a codec without a checksum may let a changed literal byte through)
    assert batch.count == struct.unpack_from(">i", damaged, 12)[0]
    assert batch.plain_bytes == struct.unpack_from(">i", damaged, 8)[0]
    assert comp.inner_batch_items(batch.stored_body, bits) == batch.items


def test_the_compression_rules_have_one_owner():
    """Only compression.py reads or writes the sysflag's compression-type bits (record_layout.py
    defines them); migrate's reframe, the client and the broker call its functions instead of restating them."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    owners = {"broker/formats/compression.py", "broker/formats/record_layout.py"}
    found = sorted(str(p.relative_to(root)) for folder in ("broker", "mqbench", "migrate", "workloads", "codecs")
                   for p in (root / folder).rglob("*.py")
                   if str(p.relative_to(root)) not in owners
                   and any(name in p.read_text() for name in ("SYSFLAG_COMPRESSION_SHIFT", "SYSFLAG_COMPRESSION_MASK")))
    assert found == []
