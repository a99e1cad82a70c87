import random

from mqbench.codecs.bench import bench_cell, make_batches
from mqbench.codecs.registry import parse_codec
from mqbench.workloads.bodies import BODY_MODELS, generate_bodies


def test_make_batches_concatenates_consecutive_bodies():
    assert make_batches([b"a", b"b", b"c"], 2) == [b"ab", b"c"]
    assert make_batches([b"a", b"b"], 1) == [b"a", b"b"]


def test_bench_cell_counts_bytes_and_ratio():
    bodies = generate_bodies("orders", 64, random.Random(1))
    cell = bench_cell(parse_codec("zstd:3"), bodies, 16, min_time_ms=1)
    assert cell.raw_bytes == sum(map(len, bodies))
    assert cell.compression_ratio == cell.raw_bytes / cell.compressed_bytes
    assert cell.compression_ratio > 2  # batches of realistic JSON compress well
    assert cell.compress_mb_per_s > 0 and cell.decompress_msgs_per_s > 0
    none = bench_cell(parse_codec("none"), bodies, 1, min_time_ms=1)
    assert none.compression_ratio == 1.0


def test_body_models_are_realistic_and_reproducible():
    for profile in BODY_MODELS:
        first = generate_bodies(profile, 300, random.Random(4))
        assert first == generate_bodies(profile, 300, random.Random(4))
        assert first != generate_bodies(profile, 300, random.Random(5))
        assert len(set(first)) == len(first)  # no repeated records
        import json

        records = [json.loads(b) for b in first]
        common = set.intersection(*(set(r) for r in records))
        assert len(common) >= 6, (profile, common)  # the same field names repeat in every record
        # per-message compression is modest, whole-batch compression large, as on real topics
        per_message = bench_cell(parse_codec("zlib:5"), first, 1, min_time_ms=1).compression_ratio
        batched = bench_cell(parse_codec("zlib:5"), first, 64, min_time_ms=1).compression_ratio
        assert 1.05 < per_message < 3.0
        assert batched > 2 * per_message
