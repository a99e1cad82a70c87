"""Codec speed and ratio on real message bodies, per batch size.

A *cell* is one codec at one batch size. Bodies are grouped into batches of ``batch_msgs``
consecutive messages; each batch is the bodies concatenated (what a whole-batch codec sees, less
RocketMQ's ~20 bytes of per-message framing) and is compressed as one unit. Batch 1 is per-message
compression, which is what RocketMQ does (and only for bodies of 4 KiB or more).

Figures follow lzbench's conventions: MB/s is always counted on the *uncompressed* bytes, for both
directions; ratio = uncompressed bytes / compressed bytes. Each direction is repeated over the whole
sample until ``min_time_ms`` has passed, so short samples still give stable figures.

``direct_functions`` gives the same codec's library called directly (no registry); ``mqbench limits``
reports those as the machine's raw codec speed and ``bench_cell(..., vs_direct=True)`` reports the
registry's speed as a ratio to them, interleaved so both see the same machine state.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import lz4.frame
import snappy
import zstandard

from mqbench.codecs.registry import Codec

MB = 1_000_000


@dataclass(frozen=True)
class BenchCell:
    """One codec at one batch size, measured on one sample of bodies."""

    codec: str
    batch_msgs: int
    messages: int
    raw_bytes: int
    compressed_bytes: int
    compression_ratio: float
    compress_mb_per_s: float
    decompress_mb_per_s: float
    compress_msgs_per_s: float
    decompress_msgs_per_s: float
    compress_vs_direct_ratio: float | None = None
    decompress_vs_direct_ratio: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def make_batches(bodies: Sequence[bytes], batch_msgs: int) -> list[bytes]:
    """Consecutive bodies concatenated in groups of ``batch_msgs`` (the last group may be short)."""
    if batch_msgs == 1:
        return list(bodies)
    return [b"".join(bodies[i : i + batch_msgs]) for i in range(0, len(bodies), batch_msgs)]


def direct_functions(codec: Codec) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """The codec's library called directly, same settings, no limit checks: the speed reference."""
    level = codec.level
    if codec.name == "none":
        return bytes, bytes
    if codec.name == "zlib":
        return (lambda data: zlib.compress(data, level)), zlib.decompress
    if codec.name == "zstd":
        dict_data = zstandard.ZstdCompressionDict(codec.dictionary) if codec.dictionary else None
        return (zstandard.ZstdCompressor(level=level, dict_data=dict_data).compress,
                zstandard.ZstdDecompressor(dict_data=dict_data).decompress)
    if codec.name == "lz4":
        return (lambda data: lz4.frame.compress(data, compression_level=level)), lz4.frame.decompress
    if codec.name == "snappy":
        return snappy.compress, snappy.uncompress
    raise ValueError(f"no direct functions for codec {codec.name!r}")


def _repeat_ns(function: Callable[[bytes], bytes], inputs: Sequence[bytes], min_time_ns: int,
               clock_ns: Callable[[], int]) -> tuple[int, int]:
    """Apply ``function`` to every input, over and over, until ``min_time_ns``; (passes, elapsed_ns)."""
    passes = 0
    start = clock_ns()
    elapsed = 0
    while passes == 0 or elapsed < min_time_ns:
        for item in inputs:
            function(item)
        passes += 1
        elapsed = clock_ns() - start
    return passes, max(elapsed, 1)


def bench_cell(codec: Codec, bodies: Sequence[bytes], batch_msgs: int, *, min_time_ms: int = 300,
               vs_direct: bool = False, clock_ns: Callable[[], int] = time.perf_counter_ns) -> BenchCell:
    """Measure ``codec`` on ``bodies`` grouped into batches of ``batch_msgs``.

    Decompression goes through the registry's bounded ``decompress`` with a limit of the largest
    batch, as the store and consumer will call it. Output is checked against the input once.
    """
    batches = make_batches(bodies, batch_msgs)
    raw_bytes = sum(len(b) for b in batches)
    compressed = [codec.compress(b) for b in batches]
    compressed_bytes = sum(len(c) for c in compressed)
    limit = max((len(b) for b in batches), default=0)
    for original, packed in zip(batches, compressed):
        if codec.decompress(packed, limit) != original:
            raise RuntimeError(f"{codec.spec} did not round-trip a batch")  # a library bug, not input
    min_time_ns = min_time_ms * 1_000_000
    decompress = lambda data: codec.decompress(data, limit)  # noqa: E731
    c_passes, c_ns = _repeat_ns(codec.compress, batches, min_time_ns, clock_ns)
    d_passes, d_ns = _repeat_ns(decompress, compressed, min_time_ns, clock_ns)
    compress_vs = decompress_vs = None
    if vs_direct:
        direct_c, direct_d = direct_functions(codec)
        dc_passes, dc_ns = _repeat_ns(direct_c, batches, min_time_ns, clock_ns)
        dd_passes, dd_ns = _repeat_ns(direct_d, compressed, min_time_ns, clock_ns)
        # Measure the registry once more after the direct calls and keep its better run, so that
        # warm-up or a noisy neighbour does not count against either side only.
        c2_passes, c2_ns = _repeat_ns(codec.compress, batches, min_time_ns, clock_ns)
        d2_passes, d2_ns = _repeat_ns(decompress, compressed, min_time_ns, clock_ns)
        c_passes, c_ns = max((c_passes, c_ns), (c2_passes, c2_ns), key=lambda p: p[0] / p[1])
        d_passes, d_ns = max((d_passes, d_ns), (d2_passes, d2_ns), key=lambda p: p[0] / p[1])
        compress_vs = (c_passes / c_ns) / (dc_passes / dc_ns)
        decompress_vs = (d_passes / d_ns) / (dd_passes / dd_ns)
    messages = len(bodies)
    return BenchCell(
        codec=codec.spec,
        batch_msgs=batch_msgs,
        messages=messages,
        raw_bytes=raw_bytes,
        compressed_bytes=compressed_bytes,
        compression_ratio=raw_bytes / compressed_bytes if compressed_bytes else 0.0,
        compress_mb_per_s=raw_bytes * c_passes / MB / (c_ns / 1e9),
        decompress_mb_per_s=raw_bytes * d_passes / MB / (d_ns / 1e9),
        compress_msgs_per_s=messages * c_passes / (c_ns / 1e9),
        decompress_msgs_per_s=messages * d_passes / (d_ns / 1e9),
        compress_vs_direct_ratio=compress_vs,
        decompress_vs_direct_ratio=decompress_vs,
    )


def train_dictionary(samples: Sequence[bytes], dict_size_bytes: int = 112_640) -> bytes:
    """A zstd dictionary trained on ``samples`` (zstd's default size, 110 KiB).

    Dictionaries help small messages compressed one by one; a sample of a few thousand messages
    is enough. Raises ValueError when the sample is too small to train on.
    """
    if len(samples) < 8:
        raise ValueError(f"need at least 8 samples to train a dictionary, got {len(samples)}")
    try:
        return zstandard.train_dictionary(dict_size_bytes, list(samples)).as_bytes()
    except zstandard.ZstdError as exc:
        raise ValueError(f"zstd could not train a dictionary on this sample: {exc}") from None
