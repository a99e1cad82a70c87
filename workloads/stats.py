"""What a stream of messages looks like: rates, sizes, delays, keys, tags, and how well codecs shrink it.

``summarize(messages, codecs, batch_msgs)`` consumes an iterable of ``TraceMessage`` (a generated
sample or the rows of a trace) and returns a plain dict whose field names carry their units, the
body of ``mqbench workloads show --json``. Compression ratios are computed on the real bodies:
``ratio_per_message`` compresses each body on its own (as a RocketMQ producer does), ``ratio_batch``
compresses ``batch_msgs`` consecutive bodies of one topic together (as a batch topic could); each
topic also gets its own per-message ratio per codec (``compression_ratio_per_message``).
Ratio = uncompressed bytes / compressed bytes. Pure apart from the codecs' CPU time.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from mqbench.workloads.message import TraceMessage

#: RocketMQ compresses a body only above ``compressMsgBodyOverHowmuch`` (4 KiB by default).
ROCKETMQ_COMPRESS_OVER_BYTES = 4096
TOP_TAGS = 5


def percentile(sorted_values: list, fraction: float):
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, int(round(fraction * len(sorted_values) + 0.5)) - 1))
    return sorted_values[rank]


class _TopicTally:
    def __init__(self):
        self.messages = 0
        self.body_bytes = 0
        self.delayed = 0
        self.keys: Counter[str] = Counter()
        self.keyless = 0
        self.tags: Counter[str] = Counter()
        self.pending: list[bytes] = []  # bodies waiting to fill a compression batch
        self.compressed: Counter[str] = Counter()  # codec spec -> compressed bytes, one body at a time


def summarize(messages: Iterable[TraceMessage], codecs=(), batch_msgs: int = 32) -> dict:
    sizes: list[int] = []
    delays: list[int] = []
    levels: Counter[int] = Counter()
    topics: dict[str, _TopicTally] = {}
    raw_bytes = 0
    per_message = {codec.spec: 0 for codec in codecs}
    batched = {codec.spec: 0 for codec in codecs}
    batched_raw = 0
    first_us = last_us = None
    for message in messages:
        if first_us is None:
            first_us = message.send_offset_us
        last_us = message.send_offset_us
        size = len(message.body)
        sizes.append(size)
        raw_bytes += size
        tally = topics.get(message.topic)
        if tally is None:
            tally = topics[message.topic] = _TopicTally()
        tally.messages += 1
        tally.body_bytes += size
        if message.key:
            tally.keys[message.key] += 1
        else:
            tally.keyless += 1
        if message.tags:
            tally.tags[message.tags] += 1
        if message.delay_ms > 0:
            tally.delayed += 1
            delays.append(message.delay_ms)
            levels[message.delay_level] += 1
        for codec in codecs:
            compressed = len(codec.compress(message.body))
            per_message[codec.spec] += compressed
            tally.compressed[codec.spec] += compressed
        if codecs:
            tally.pending.append(message.body)
            if len(tally.pending) >= batch_msgs:
                batched_raw += _compress_batch(tally.pending, codecs, batched)
                tally.pending = []
    count = len(sizes)
    sizes.sort()
    delays.sort()
    duration_us = (last_us - first_us) if count > 1 else 0
    return {
        "messages": count,
        "duration_s": duration_us / 1e6,
        "observed_msgs_per_s": (count - 1) / (duration_us / 1e6) if duration_us > 0 else None,
        "body_bytes": {"avg": raw_bytes / count if count else None, "min": sizes[0] if sizes else None,
                       "p50": percentile(sizes, 0.50), "p90": percentile(sizes, 0.90),
                       "p99": percentile(sizes, 0.99), "max": sizes[-1] if sizes else None},
        "bodies_over_4kib_share": sum(1 for s in sizes if s > ROCKETMQ_COMPRESS_OVER_BYTES) / count if count else 0.0,
        "delay": {"delayed_share": len(delays) / count if count else 0.0,
                  "delay_ms_p50": percentile(delays, 0.50), "delay_ms_p99": percentile(delays, 0.99),
                  "delay_ms_max": delays[-1] if delays else None,
                  "by_level": {str(level): n for level, n in sorted(levels.items()) if level > 0},
                  "arbitrary": levels.get(0, 0)},
        "topics": [_topic_stats(name, tally, count) for name, tally in topics.items()],
        "compression": [{"codec": spec,
                         "ratio_per_message": raw_bytes / per_message[spec] if per_message[spec] else None,
                         "ratio_batch": batched_raw / batched[spec] if batched[spec] else None,
                         "batch_msgs": batch_msgs} for spec in per_message],
    }


def _compress_batch(bodies: list[bytes], codecs, totals: dict[str, int]) -> int:
    joined = b"".join(bodies)
    for codec in codecs:
        totals[codec.spec] += len(codec.compress(joined))
    return len(joined)


def _topic_stats(name: str, tally: _TopicTally, total: int) -> dict:
    top_key_count = tally.keys.most_common(1)[0][1] if tally.keys else 0
    return {
        "topic": name,
        "messages": tally.messages,
        "share": tally.messages / total if total else 0.0,
        "body_bytes_avg": tally.body_bytes / tally.messages,
        "delayed_share": tally.delayed / tally.messages,
        "keys_distinct": len(tally.keys),
        "keyless_share": tally.keyless / tally.messages,
        "key_top_share": top_key_count / tally.messages,
        "tags_distinct": len(tally.tags),
        "tags_top": [{"tag": tag, "share": n / tally.messages} for tag, n in tally.tags.most_common(TOP_TAGS)],
        "compression_ratio_per_message": {spec: tally.body_bytes / size if size else None
                                          for spec, size in tally.compressed.items()},
    }
