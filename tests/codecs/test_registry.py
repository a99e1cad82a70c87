"""The codec registry's contract: round trips, corrupt/truncated input, bounded decompression."""
import os
import random
import zlib

import pytest
from hypothesis import given, strategies as st

from mqbench.codecs.registry import CODECS, BODY_SIZE_MAX_BYTES, codec_for_type_id, parse_codec, parse_codec_list
from mqbench.errors import CodecError, UserError
from mqbench.workloads.bodies import generate_bodies

SPECS = ["none", "zlib", "zlib:1", "zlib:9", "zstd", "zstd:1", "zstd:19", "zstd:-5", "lz4", "lz4:9", "snappy"]
COMPRESSING = [s for s in SPECS if s != "none"]

INPUTS = {
    "empty": b"",
    "one_byte": b"x",
    "four_mib": b"".join(generate_bodies("orders", 200, random.Random(3))) * 33,  # ~4 MiB of real JSON
    "incompressible": os.urandom(256 * 1024),
    "highly_compressible": b"\x00" * (1024 * 1024),
}


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_round_trip(spec, name):
    codec = parse_codec(spec)
    data = INPUTS[name]
    assert codec.decompress(codec.compress(data), max(len(data), 1)) == data


@pytest.mark.parametrize("spec", ["zlib", "zstd", "lz4", "snappy"])
@given(data=st.binary(max_size=4096))
def test_round_trip_property(spec, data):
    codec = parse_codec(spec)
    assert codec.decompress(codec.compress(data), 4096) == data


def _sample() -> bytes:
    return b"".join(generate_bodies("notifications", 64, random.Random(5)))


@pytest.mark.parametrize("spec", COMPRESSING)
def test_truncated_input_raises_codec_error_for_every_cut(spec):
    codec = parse_codec(spec)
    packed = codec.compress(_sample())
    for cut in range(0, len(packed), max(1, len(packed) // 97)):
        with pytest.raises(CodecError) as info:
            codec.decompress(packed[:cut], BODY_SIZE_MAX_BYTES)
        assert codec.name in str(info.value)


@pytest.mark.parametrize("spec", COMPRESSING)
def test_trailing_bytes_raise(spec):
    codec = parse_codec(spec)
    packed = codec.compress(_sample())
    with pytest.raises(CodecError, match=codec.name):
        codec.decompress(packed + b"garbage!", BODY_SIZE_MAX_BYTES)


@pytest.mark.parametrize("spec", COMPRESSING)
def test_corrupt_input_never_escapes_as_another_error(spec):
    """Random bit flips either decode to *something* within the limit or raise CodecError."""
    codec = parse_codec(spec)
    original = _sample()
    packed = bytearray(codec.compress(original))
    rng = random.Random(11)
    raised = 0
    for _ in range(300):
        mutated = bytearray(packed)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        try:
            out = codec.decompress(bytes(mutated), len(original))
        except CodecError:
            raised += 1
        else:
            assert len(out) <= len(original)
    # Formats without checksums (snappy, lz4 without content checksum) may decode some flips to
    # other bytes; but most flips must be caught, or the checks are not working.
    assert raised > 50


@pytest.mark.parametrize("spec", COMPRESSING + ["none"])
def test_random_garbage_raises_codec_error(spec):
    codec = parse_codec(spec)
    rng = random.Random(2)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        try:
            out = codec.decompress(data, 1024)
        except CodecError:
            continue
        assert len(out) <= 1024


@pytest.mark.parametrize("spec", COMPRESSING + ["none"])
def test_size_limit_holds(spec):
    codec = parse_codec(spec)
    data = b"a" * 100_000
    packed = codec.compress(data)
    assert codec.decompress(packed, 100_000) == data
    with pytest.raises(CodecError, match="limit"):
        codec.decompress(packed, 99_999)


def test_zip_bomb_is_refused_without_expanding():
    """1 GiB of zeros declared or streamed must be refused under a 4 MiB limit, cheaply."""
    import zstandard

    bomb_sized = zstandard.ZstdCompressor(level=1).compress(b"\0" * (64 << 20))
    with pytest.raises(CodecError, match="over the size limit"):
        parse_codec("zstd").decompress(bomb_sized, 4 << 20)
    stream = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(b"\0" * (64 << 20))
    with pytest.raises(CodecError, match="limit"):
        parse_codec("zstd").decompress(stream, 4 << 20)
    zbomb = zlib.compress(b"\0" * (64 << 20))
    with pytest.raises(CodecError, match="limit"):
        parse_codec("zlib").decompress(zbomb, 4 << 20)


def test_zstd_frame_without_content_size_decodes():
    """Java's ZstdOutputStream writes frames without a content size; they must still decode."""
    import zstandard

    data = _sample()
    packed = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    assert parse_codec("zstd").decompress(packed, len(data)) == data


def test_lz4_frame_without_content_size_decodes():
    import lz4.frame

    data = _sample()
    packed = lz4.frame.compress(data, store_size=False)
    assert parse_codec("lz4").decompress(packed, len(data)) == data
    with pytest.raises(CodecError, match="limit"):
        parse_codec("lz4").decompress(packed, len(data) - 1)


def test_zstd_dictionary_round_trip_and_mismatch():
    from mqbench.codecs.bench import train_dictionary

    samples = generate_bodies("iot", 2000, random.Random(9))
    dictionary = train_dictionary(samples, 16 * 1024)
    with_dict = parse_codec("zstd:3", dictionary=dictionary)
    body = generate_bodies("iot", 1, random.Random(77))[0]
    packed = with_dict.compress(body)
    assert with_dict.decompress(packed, 4096) == body
    assert len(packed) < len(parse_codec("zstd:3").compress(body))
    with pytest.raises(CodecError):
        parse_codec("zstd:3").decompress(packed, 4096)


def test_rocketmq_type_ids_match_the_spec():
    assert parse_codec("lz4").type_id == 1
    assert parse_codec("zstd").type_id == 2
    assert parse_codec("zlib").type_id == 3
    assert parse_codec("none").type_id is None
    assert codec_for_type_id(0).name == "zlib"  # legacy: before 4.9.4 every compressed body is zlib
    assert not CODECS["snappy"].rocketmq_readable
    with pytest.raises(CodecError):
        codec_for_type_id(7)


@pytest.mark.parametrize("spec, message", [
    ("gzip", "unknown codec"), ("zstd:abc", "not an integer"), ("zlib:10", "level must be"),
    ("snappy:3", "takes no level"), ("lz4:-1", "level must be"),
])
def test_bad_specs_are_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        parse_codec(spec)


def test_spec_parsing_in_one_place():
    assert parse_codec(" ZSTD:3 ").spec == "zstd:3"
    assert parse_codec("zlib").spec == "zlib:5"
    assert [c.spec for c in parse_codec_list("none, lz4 ,snappy")] == ["none", "lz4:0", "snappy"]
    with pytest.raises(UserError):
        parse_codec_list(" , ")
    with pytest.raises(UserError, match="only supported by zstd"):
        parse_codec("lz4", dictionary=b"x")


@pytest.mark.parametrize("checksum", [False, True])
def test_zstd_large_frames_block_walk(checksum):
    """Frames over the small-frame threshold: raw, RLE and compressed blocks, with and without checksum."""
    import zstandard

    data = os.urandom(300_000) + b"\0" * 500_000 + b"".join(generate_bodies("orders", 300, random.Random(8)))
    packed = zstandard.ZstdCompressor(level=3, write_checksum=checksum).compress(data)
    assert len(packed) > 4096
    codec = parse_codec("zstd")
    assert codec.decompress(packed, len(data)) == data
    for cut in (len(packed) - 1, len(packed) - 4, len(packed) // 2, 5000):
        with pytest.raises(CodecError, match="zstd"):
            codec.decompress(packed[:cut], len(data))
    with pytest.raises(CodecError, match="trailing"):
        codec.decompress(packed + b"\x00", len(data))
    with pytest.raises(CodecError, match="trailing"):
        codec.decompress(packed + packed, len(data))  # a second frame is not silently ignored
