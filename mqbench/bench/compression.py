"""``mqbench bench compression``: per-message versus whole-batch compression on the built-in profiles.

For each profile, ``messages`` realistic bodies (``workloads.bodies``) with the properties a
producer sends (KEYS, TAGS, UNIQ_KEY, WAIT) go through the very code the client and broker run
(``mqbench.broker.formats.compression``), in these modes:

* ``none``: one plain record per message, RocketMQ without compression (the baseline);
* ``per-message >=4096`` and ``>=0``: RocketMQ's rule (``compress_body``) with its threshold and
  with every body compressed; consumer side ``decompress_body``;
* ``batch N``: the client batch body of N messages compressed whole (``encode_client_batch``),
  stored as ONE inner-batch record; consumer side ``inner_batch_items``; ``none`` here is
  consolidation alone (one uncompressed inner-batch record per N messages).

Figures per cell:

* ``commitlog_bytes_per_msg``: commitlog bytes (``record.record_size`` of what would be stored,
  record header, topic and properties included) divided by the messages; ``stored_bytes_per_msg``
  adds the consume-queue unit (20 bytes per message, or 46 per inner-batch record);
* ``ratio``: the baseline's stored bytes divided by this cell's (higher is better);
* ``compress_mb_per_s`` / ``decompress_mb_per_s``: plain body megabytes (10^6) per second through
  the producer path (compress and frame) and the consumer path (decompress and split), one core,
  each repeated until ``min_time_ms`` has passed; ``compress_cpu_us_per_msg`` and
  ``decompress_cpu_us_per_msg`` are this process's CPU per message on those paths;
* ``compressed_fraction``: share of messages whose body was compressed (RocketMQ's 4 KiB rule
  compresses none of a profile whose bodies are all smaller);
* ``compress_vs_raw`` / ``decompress_vs_raw``: the cell's speed divided by the raw library speed of
  the same codec on the same profile at batch 256 measured by ``mqbench.limits.measure_codecs`` in
  the same run (how much of the machine's codec speed the path keeps).

Every cell's output is checked against its input once. Bounded: each of the cells runs for about
``min_time_ms`` twice, plus the codec limits' budget per profile.
"""
from __future__ import annotations

import hashlib
import random
import time
from typing import Callable, Sequence

from mqbench.broker.formats import compression as comp
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.record import Message, record_size
from mqbench.codecs.registry import Codec, parse_codec
from mqbench.bench.common import bench_document, fmt
from mqbench.errors import InvariantViolation, UserError
from mqbench.limits import measure_codecs
from mqbench.output import table
from mqbench.workloads.bodies import generate_bodies
from mqbench.broker.formats.properties import (
    PROPERTY_INNER_BASE,
    PROPERTY_INNER_NUM,
    PROPERTY_KEYS,
    PROPERTY_TAGS,
    PROPERTY_UNIQ_KEY,
    PROPERTY_WAIT,
)

MB = 1_000_000
CQ_UNIT_BYTES = 20
BCQ_UNIT_BYTES = 46
TOPICS = {"orders": "Orders", "notifications": "Notifications", "iot": "IotTelemetry"}


def sample(profile: str, count: int, seed: int) -> list[BatchItem]:
    """``count`` messages of ``profile``: realistic bodies and the properties a producer sends."""
    rng = random.Random(seed)
    bodies = generate_bodies(profile, count, rng)
    items = []
    for i, body in enumerate(bodies):
        uniq = hashlib.blake2b(f"{seed}/{profile}/{i}".encode(), digest_size=16).hexdigest().upper()
        items.append(BatchItem(body, {PROPERTY_KEYS: f"{profile[:3]}-{rng.randrange(10**9):09d}",
                                      PROPERTY_TAGS: f"tag{rng.randrange(8)}", PROPERTY_UNIQ_KEY: uniq, PROPERTY_WAIT: "true"}))
    return items


def _repeat(function: Callable[[object], object], inputs: Sequence, min_time_ns: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) per pass of ``function`` over ``inputs``, repeated until
    ``min_time_ns`` has passed."""
    passes, start, cpu_start = 0, time.perf_counter_ns(), time.process_time_ns()
    while True:
        for item in inputs:
            function(item)
        passes += 1
        elapsed = time.perf_counter_ns() - start
        if elapsed >= min_time_ns:
            return elapsed / passes / 1e9, (time.process_time_ns() - cpu_start) / passes / 1e9


def _record_bytes(topic: str, body_len: int, properties: dict[str, str]) -> int:
    return record_size(Message(topic=topic, body=b"\0" * body_len, properties=properties))


def per_message_cell(topic: str, items: list[BatchItem], codec: Codec | None, over_bytes: int,
                     min_time_ns: int) -> dict:
    stored = [comp.compress_body(item.body, codec, over_bytes) for item in items]
    if [comp.decompress_body(body, bits) for body, bits in stored] != [item.body for item in items]:
        raise InvariantViolation(f"per-message round trip failed for {codec and codec.spec}")
    commitlog = sum(_record_bytes(topic, len(body), item.properties) for (body, _), item in zip(stored, items))
    compress_s = _repeat(lambda item: comp.compress_body(item.body, codec, over_bytes), items, min_time_ns)
    decompress_s = _repeat(lambda pair: comp.decompress_body(*pair), stored, min_time_ns)
    return _cell(items, commitlog, len(items) * CQ_UNIT_BYTES, compress_s, decompress_s,
                 compressed=sum(1 for _, bits in stored if bits))


def batch_cell(topic: str, items: list[BatchItem], codec: Codec | None, batch_msgs: int, min_time_ns: int) -> dict:
    batches = [items[i:i + batch_msgs] for i in range(0, len(items), batch_msgs)]
    wires = [comp.encode_client_batch(group, codec) for group in batches]
    decoded = [comp.decode_client_batch(body, bits) for body, bits in wires]       # what the broker keeps
    stored = [(b.stored_body, 0xC0 | b.sysflag_bits) for b in decoded]
    if [m for body, flag in stored for m in comp.inner_batch_items(body, flag)] != items:
        raise InvariantViolation(f"batch round trip failed for {codec and codec.spec} at {batch_msgs}")
    commitlog = 0
    for group, (body, _) in zip(batches, stored):
        props = {PROPERTY_UNIQ_KEY: "0" * 32, PROPERTY_WAIT: "true", PROPERTY_INNER_NUM: str(len(group)), PROPERTY_INNER_BASE: "1000000"}
        commitlog += _record_bytes(topic, len(body), props)
    compress_s = _repeat(lambda group: comp.encode_client_batch(group, codec), batches, min_time_ns)
    decompress_s = _repeat(lambda pair: comp.inner_batch_items(*pair), stored, min_time_ns)
    return _cell(items, commitlog, len(batches) * BCQ_UNIT_BYTES, compress_s, decompress_s,
                 compressed=len(items) if codec is not None else 0)


def _cell(items, commitlog_bytes, queue_bytes, compress_s, decompress_s, compressed) -> dict:
    plain = sum(len(item.body) for item in items)
    n = len(items)
    return {"messages": n, "body_bytes_per_msg": plain / n, "commitlog_bytes_per_msg": commitlog_bytes / n,
            "stored_bytes_per_msg": (commitlog_bytes + queue_bytes) / n,
            "compress_mb_per_s": plain / MB / compress_s[0], "decompress_mb_per_s": plain / MB / decompress_s[0],
            "compress_cpu_us_per_msg": compress_s[1] * 1e6 / n, "decompress_cpu_us_per_msg": decompress_s[1] * 1e6 / n,
            "compressed_fraction": compressed / n}


def run(*, profiles: list[str], codec_specs: list[str], batch_sizes: list[int], messages: int, min_time_ms: int,
        limits_budget_ms: int | None, seed: int, progress=None) -> dict:
    """Every (profile, codec, mode) cell; returns the ``mqbench.bench-compression/1`` document.

    ``limits_budget_ms=None`` skips the raw codec speed (no ``*_vs_raw`` ratios). Raises
    ``UserError`` for an unknown profile or codec spec.
    """
    for profile in profiles:
        if profile not in TOPICS:
            raise UserError(f"unknown profile {profile!r}; one of {', '.join(TOPICS)}")
    codecs = [parse_codec(spec) for spec in codec_specs]  # UserError for an unknown spec
    labels = {c.spec: spec for c, spec in zip(codecs, codec_specs)}   # shown as the user wrote them
    min_time_ns = min_time_ms * 1_000_000
    cells, limits = [], []
    for profile in profiles:
        topic = TOPICS[profile]
        items = sample(profile, messages, seed)
        raw = {}
        if limits_budget_ms is not None:
            rows = measure_codecs(limits_budget_ms, profile=profile, batch_msgs=256, seed=seed)
            limits += rows
            raw = {parse_codec(row["codec"]).spec: row for row in rows}
        todo = [("none", "per-message", None, None)]
        todo += [(c.spec, f"per-message >={t}", c, ("pm", t)) for c in codecs for t in (4096, 0)]
        todo += [(c.spec if c else "none", f"batch {b}", c, ("batch", b)) for b in batch_sizes
                 for c in [None, *codecs]]
        baseline = None
        for codec_name, mode, codec, how in todo:
            if how is None or how[0] == "pm":
                cell = per_message_cell(topic, items, codec, how[1] if how else 0, min_time_ns)
            else:
                cell = batch_cell(topic, items, codec, how[1], min_time_ns)
            if baseline is None:
                baseline = cell["stored_bytes_per_msg"]
            cell = {"profile": profile, "codec": labels.get(codec_name, codec_name), "mode": mode,
                    "ratio": baseline / cell["stored_bytes_per_msg"], **cell}
            # a ratio to the raw codec only where the codec ran: RocketMQ's rule may compress nothing
            direct = raw.get(codec_name) if cell["compressed_fraction"] else None
            cell["compress_vs_raw"] = cell["compress_mb_per_s"] / direct["compress_mb_per_s"] if direct else None
            cell["decompress_vs_raw"] = cell["decompress_mb_per_s"] / direct["decompress_mb_per_s"] if direct else None
            cells.append(cell)
            if progress:
                progress(cell)
    return bench_document("compression", seed=seed, messages_per_profile=messages, min_time_ms=min_time_ms,
                          limits_codecs=limits, cells=cells)


def render(doc: dict) -> str:
    """The terminal table of a ``mqbench.bench-compression/1`` document."""
    return table([[c["profile"], c["codec"], c["mode"], fmt(c["body_bytes_per_msg"], ".0f"),
                   fmt(c["stored_bytes_per_msg"], ".1f"), fmt(c["ratio"], ".2f"), fmt(c["compressed_fraction"], ".2f"),
                   fmt(c["compress_mb_per_s"], ",.1f"), fmt(c["decompress_mb_per_s"], ",.1f"),
                   fmt(c["compress_cpu_us_per_msg"], ",.2f"), fmt(c["decompress_cpu_us_per_msg"], ",.2f"),
                   fmt(c["compress_vs_raw"], ".2f"), fmt(c["decompress_vs_raw"], ".2f")] for c in doc["cells"]],
                 ["profile", "codec", "mode", "body B/msg", "stored B/msg", "ratio", "compressed", "comp MB/s",
                  "decomp MB/s", "comp CPU µs/msg", "decomp CPU µs/msg", "comp/raw", "decomp/raw"])
