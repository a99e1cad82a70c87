"""One registry of codecs: none, zlib, zstd (levels, trained dictionaries), lz4 (frame), snappy.

A codec is named by a spec string parsed in one place, ``parse_codec``: ``none``, ``zlib``,
``zlib:5``, ``zstd``, ``zstd:3``, ``zstd:-1``, ``lz4``, ``lz4:9``, ``snappy``. A zstd dictionary is
passed alongside the spec (``parse_codec("zstd:3", dictionary=...)``).

Compression-type ids are the values of RocketMQ's sysflag bits 8–10 (formats spec §3.3/§3.4):
LZ4 = 1, ZSTD = 2, ZLIB = 3; 0 is legacy and means ZLIB. RocketMQ has no snappy; mqbench stores
snappy with the otherwise unused id 4, which a RocketMQ broker or client rejects, so
``rocketmq_readable`` is False for it.

Contract of ``Codec.decompress(data, size_max)``: returns the original bytes, or raises
``CodecError`` naming the codec when the input is corrupt, truncated, carries trailing bytes, or
would decompress to more than ``size_max`` bytes. It never allocates much more than ``size_max``
(a zip bomb is refused, not expanded), never hangs and never crashes the interpreter.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable

import lz4.frame
import snappy
import zstandard

from mqbench.errors import CodecError, InvariantViolation, UserError

#: RocketMQ's default body size limit (``maxMessageSize``), also our default decompression bound.
BODY_SIZE_MAX_BYTES = 4 * 1024 * 1024

#: sysflag compression-type ids (bits 8–10). 0 (legacy) is read as ZLIB.
TYPE_ID_LZ4 = 1
TYPE_ID_ZSTD = 2
TYPE_ID_ZLIB = 3
TYPE_ID_SNAPPY = 4  # mqbench only; RocketMQ rejects it

# Input step for zstd frames without a content size: a zstd block turns a few bytes into at most
# 128 KiB, so feeding 256 bytes at a time bounds the overshoot past size_max to a few MiB.
_ZSTD_STREAM_STEP_BYTES = 256
# Below this compressed size a streaming object is the cheaper way to detect trailing bytes; above
# it, walking the block headers and decompressing in one shot is (measured with codecs bench).
_ZSTD_WALK_FROM_BYTES = 4096


Compress = Callable[[bytes], bytes]
Decompress = Callable[[bytes, int], bytes]  # (data, size_max) -> plain bytes


def _not_built(data: bytes, size_max: int = 0) -> bytes:
    raise InvariantViolation("a Codec is made by parse_codec, which binds its library functions")


@dataclass(frozen=True)
class CodecInfo:
    """What the registry knows about one codec family."""

    name: str
    type_id: int | None
    rocketmq_readable: bool
    level_default: int | None
    level_min: int | None
    level_max: int | None
    summary: str


CODECS: dict[str, CodecInfo] = {
    info.name: info
    for info in (
        CodecInfo("none", None, True, None, None, None, "no compression"),
        CodecInfo("zlib", TYPE_ID_ZLIB, True, 5, 0, 9, "zlib format (RFC 1950), RocketMQ's default at level 5"),
        CodecInfo("zstd", TYPE_ID_ZSTD, True, 3, -7, 22, "zstd frame; optional trained dictionary"),
        CodecInfo("lz4", TYPE_ID_LZ4, True, 0, 0, 16, "LZ4 frame format"),
        CodecInfo("snappy", TYPE_ID_SNAPPY, False, None, None, None, "raw snappy block (mqbench only)"),
    )
}


@dataclass(frozen=True)
class Codec:
    """A configured codec: family, level and (zstd only) dictionary.

    ``compress`` and ``decompress`` are bound once to the library's compressor objects, so calling
    through the registry costs no more than calling the library directly.
    """

    name: str
    level: int | None = None
    dictionary: bytes | None = field(default=None, repr=False)
    _compress: Compress = field(default=_not_built, repr=False, compare=False)
    _decompress: Decompress = field(default=_not_built, repr=False, compare=False)

    @property
    def info(self) -> CodecInfo:
        return CODECS[self.name]

    @property
    def type_id(self) -> int | None:
        """The sysflag compression-type id (bits 8–10), or None for ``none``."""
        return self.info.type_id

    @property
    def spec(self) -> str:
        """The canonical spec string, e.g. ``zstd:3``; ``+dict`` marks a dictionary."""
        text = self.name if self.level is None else f"{self.name}:{self.level}"
        return text + ("+dict" if self.dictionary else "")

    @property
    def is_none(self) -> bool:
        return self.name == "none"

    def compress(self, data: bytes) -> bytes:
        """Compress ``data``; never fails for bytes input."""
        return self._compress(data)

    def decompress(self, data: bytes, size_max: int = BODY_SIZE_MAX_BYTES) -> bytes:
        """Decompress ``data`` into at most ``size_max`` bytes, or raise ``CodecError``."""
        return self._decompress(data, size_max)

    def __reduce__(self) -> tuple[Callable[..., "Codec"], tuple[str, int | None, bytes | None]]:
        """A codec travels as itself (to a worker process, through pickle): rebuilt from its family,
        level and dictionary with fresh library contexts, never re-parsed from its spec text."""
        return _build, (self.name, self.level, self.dictionary)


def parse_codec(spec: str, dictionary: bytes | None = None) -> Codec:
    """Parse a codec spec string such as ``zstd:3`` into a ready ``Codec``.

    Raises ``UserError`` naming the problem for an unknown codec, a bad or out-of-range level, or
    a dictionary given to a codec other than zstd.
    """
    text = spec.strip().lower()
    name, _, level_text = text.partition(":")
    info = CODECS.get(name)
    if info is None:
        raise UserError(f"unknown codec {spec!r}; known codecs: {', '.join(CODECS)}")
    level: int | None = None
    if level_text:
        if info.level_default is None:
            raise UserError(f"codec {name!r} takes no level (got {spec!r})")
        try:
            level = int(level_text)
        except ValueError:
            raise UserError(f"codec level in {spec!r} is not an integer") from None
        if info.level_min is None or info.level_max is None or not info.level_min <= level <= info.level_max:
            raise UserError(f"{name} level must be in [{info.level_min}, {info.level_max}], got {level}")
    elif info.level_default is not None:
        level = info.level_default
    if dictionary is not None and name != "zstd":
        raise UserError(f"a dictionary is only supported by zstd, not {name!r}")
    return _build(name, level, dictionary)


def _build(name: str, level: int | None, dictionary: bytes | None) -> Codec:
    """A ready ``Codec`` of a checked family, level and dictionary (``parse_codec`` checks them)."""
    compress, decompress = _BUILDERS[name](level, dictionary)
    return Codec(name, level, dictionary, compress, decompress)


def parse_codec_list(text: str) -> list[Codec]:
    """Parse a comma-separated list of specs (``none,zstd:3,lz4``)."""
    specs = [part for part in (p.strip() for p in text.split(",")) if part]
    if not specs:
        raise UserError("empty codec list")
    return [parse_codec(spec) for spec in specs]


def codec_for_type_id(type_id: int) -> Codec:
    """The codec RocketMQ means by sysflag compression-type ``type_id`` (0 = legacy ZLIB)."""
    name = {0: "zlib", TYPE_ID_ZLIB: "zlib", TYPE_ID_LZ4: "lz4", TYPE_ID_ZSTD: "zstd", TYPE_ID_SNAPPY: "snappy"}.get(type_id)
    if name is None:
        raise CodecError("sysflag", f"unknown compression type id {type_id}")
    return parse_codec(name)


# --- per-family builders: each returns (compress, decompress) bound to library objects -------------


def _level(level: int | None, name: str) -> int:
    """The level of a family that has one (``parse_codec`` always sets it for those)."""
    if level is None:
        raise InvariantViolation(f"{name} codec built without a level")
    return level


def _build_none(level: int | None, dictionary: bytes | None) -> tuple[Compress, Decompress]:
    def decompress(data: bytes, size_max: int) -> bytes:
        if len(data) > size_max:
            raise CodecError("none", f"{len(data)} bytes exceed the size limit of {size_max}")
        return bytes(data)

    return bytes, decompress


def _build_zlib(level: int | None, dictionary: bytes | None) -> tuple[Compress, Decompress]:
    zlib_level = _level(level, "zlib")

    def compress(data: bytes) -> bytes:
        return zlib.compress(data, zlib_level)

    def decompress(data: bytes, size_max: int) -> bytes:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, size_max + 1)
        except zlib.error as exc:
            raise CodecError("zlib", f"corrupt input: {exc}") from None
        if len(out) > size_max:
            raise CodecError("zlib", f"output exceeds the size limit of {size_max} bytes")
        if not inflater.eof:
            raise CodecError("zlib", "truncated input")
        if inflater.unused_data:
            raise CodecError("zlib", f"{len(inflater.unused_data)} trailing bytes after the stream")
        return out

    return compress, decompress


def _build_zstd(level: int | None, dictionary: bytes | None) -> tuple[Compress, Decompress]:
    dict_data = zstandard.ZstdCompressionDict(dictionary) if dictionary else None
    cctx = zstandard.ZstdCompressor(level=_level(level, "zstd"), dict_data=dict_data)
    dctx = zstandard.ZstdDecompressor(dict_data=dict_data)

    def decompress(data: bytes, size_max: int) -> bytes:
        try:
            content_size = zstandard.frame_content_size(data)
        except zstandard.ZstdError as exc:
            raise CodecError("zstd", f"corrupt frame header: {exc}") from None
        if content_size == -1:
            return _zstd_decompress_unsized(dctx, data, size_max)
        if content_size > size_max:
            raise CodecError("zstd", f"frame declares {content_size} bytes, over the size limit of {size_max}")
        if len(data) < _ZSTD_WALK_FROM_BYTES:
            return _zstd_decompress_small(dctx, data, content_size)
        end = _zstd_frame_end(data)
        if end != len(data):
            raise CodecError("zstd", f"{len(data) - end} trailing bytes after the frame")
        try:
            # One-shot decompression checks the output against the declared content size itself.
            out: bytes = dctx.decompress(data)
            return out
        except zstandard.ZstdError as exc:
            raise CodecError("zstd", f"corrupt input: {exc}") from None

    return cctx.compress, decompress


def _zstd_decompress_small(dctx: zstandard.ZstdDecompressor, data: bytes, content_size: int) -> bytes:
    """Small frames: a streaming object reports trailing bytes itself, cheaper than walking blocks."""
    stream = dctx.decompressobj()
    try:
        out: bytes = stream.decompress(data)
    except zstandard.ZstdError as exc:
        raise CodecError("zstd", f"corrupt input: {exc}") from None
    if not stream.eof or len(out) != content_size:
        raise CodecError("zstd", "truncated input")
    if stream.unused_data:
        raise CodecError("zstd", f"{len(stream.unused_data)} trailing bytes after the frame")
    return out


def _zstd_frame_end(data: bytes) -> int:
    """Where the first zstd frame in ``data`` ends, found by walking its block headers.

    zstandard's one-shot ``decompress`` ignores bytes after the first frame; walking the 3-byte
    block headers (at most one per 128 KiB of output) finds the frame's end without decompressing.
    Raises ``CodecError`` when the frame is cut short.
    """
    try:
        position = zstandard.frame_header_size(data)
    except zstandard.ZstdError as exc:
        raise CodecError("zstd", f"corrupt frame header: {exc}") from None
    has_checksum = data[4] & 0x04
    total = len(data)
    while True:
        if position + 3 > total:
            raise CodecError("zstd", "truncated input")
        header = data[position] | data[position + 1] << 8 | data[position + 2] << 16
        block_type = (header >> 1) & 0x3
        if block_type == 3:
            raise CodecError("zstd", "corrupt input: reserved block type")
        position += 3 + (1 if block_type == 1 else header >> 3)  # an RLE block stores one byte
        if header & 1:
            break
    position += 4 if has_checksum else 0
    if position > total:
        raise CodecError("zstd", "truncated input")
    return position


def _zstd_decompress_unsized(dctx: zstandard.ZstdDecompressor, data: bytes, size_max: int) -> bytes:
    """Frames without a content size (Java's ZstdOutputStream writes these): feed small steps."""
    stream = dctx.decompressobj()
    parts: list[bytes] = []
    produced = 0
    for start in range(0, len(data), _ZSTD_STREAM_STEP_BYTES):
        chunk = stream.decompress(data[start : start + _ZSTD_STREAM_STEP_BYTES])
        produced += len(chunk)
        if produced > size_max:
            raise CodecError("zstd", f"output exceeds the size limit of {size_max} bytes")
        parts.append(chunk)
        if stream.eof:
            break
    if not stream.eof:
        raise CodecError("zstd", "truncated input")
    if stream.unused_data:
        raise CodecError("zstd", f"{len(stream.unused_data)} trailing bytes after the frame")
    return b"".join(parts)


# LZ4 frame header (little-endian): magic 0x184D2204, FLG, BD, then an optional 8-byte content
# size when FLG bit 3 is set (lz4.frame.compress sets it by default).
_LZ4_HEADER = struct.Struct("<IBB")
_LZ4_CONTENT_SIZE = struct.Struct("<Q")
_LZ4_MAGIC = 0x184D2204


def _build_lz4(level: int | None, dictionary: bytes | None) -> tuple[Compress, Decompress]:
    lz4_level = _level(level, "lz4")

    def compress(data: bytes) -> bytes:
        out: bytes = lz4.frame.compress(data, compression_level=lz4_level)
        return out

    def decompress(data: bytes, size_max: int) -> bytes:
        if len(data) < 7:
            raise CodecError("lz4", "truncated frame header")
        magic, flags, _bd = _LZ4_HEADER.unpack_from(data, 0)
        if magic != _LZ4_MAGIC:
            raise CodecError("lz4", f"bad frame magic 0x{magic:08x}")
        if not flags & 0x08 or len(data) < 14:
            return _lz4_decompress_unsized(data, size_max)
        (content_size,) = _LZ4_CONTENT_SIZE.unpack_from(data, 6)
        if content_size > size_max:
            raise CodecError("lz4", f"frame declares {content_size} bytes, over the size limit of {size_max}")
        out: bytes
        used: int
        try:
            out, used = lz4.frame.decompress(data, return_bytes_read=True)
        except RuntimeError as exc:
            raise CodecError("lz4", f"corrupt or truncated input: {exc}") from None
        if len(out) != content_size:
            raise CodecError("lz4", "corrupt input: content size does not match the header")
        if used != len(data):
            raise CodecError("lz4", f"{len(data) - used} trailing bytes after the frame")
        return out

    return compress, decompress


def _lz4_decompress_unsized(data: bytes, size_max: int) -> bytes:
    """Frames without a content size: a streaming decoder with an output bound."""
    decoder = lz4.frame.LZ4FrameDecompressor()
    try:
        out: bytes = decoder.decompress(data, max_length=size_max + 1)
    except RuntimeError as exc:
        raise CodecError("lz4", f"corrupt input: {exc}") from None
    if len(out) > size_max:
        raise CodecError("lz4", f"output exceeds the size limit of {size_max} bytes")
    if not decoder.eof:
        raise CodecError("lz4", "truncated input")
    if decoder.unused_data:
        raise CodecError("lz4", f"{len(decoder.unused_data)} trailing bytes after the frame")
    return out


def _snappy_declared_length(data: bytes) -> int:
    """The uncompressed length a raw snappy block declares in its varint preamble."""
    value = 0
    for shift, byte in zip(range(0, 35, 7), data[:5]):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
    raise CodecError("snappy", "corrupt or truncated length preamble")


def _build_snappy(level: int | None, dictionary: bytes | None) -> tuple[Compress, Decompress]:
    def decompress(data: bytes, size_max: int) -> bytes:
        declared = _snappy_declared_length(data)
        if declared > size_max:
            raise CodecError("snappy", f"block declares {declared} bytes, over the size limit of {size_max}")
        try:
            out: bytes = snappy.uncompress(data)
        except Exception as exc:  # python-snappy raises its own UncompressError or cramjam errors
            raise CodecError("snappy", f"corrupt input: {exc or type(exc).__name__}") from None
        if len(out) != declared:
            raise CodecError("snappy", "corrupt input: length does not match the preamble")
        return out

    return snappy.compress, decompress


_BUILDERS: dict[str, Callable[[int | None, bytes | None], tuple[Compress, Decompress]]] = {"none": _build_none, "zlib": _build_zlib, "zstd": _build_zstd, "lz4": _build_lz4, "snappy": _build_snappy}
