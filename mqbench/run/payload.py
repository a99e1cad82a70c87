"""The compression ratio of a run's own payloads under a cell's codec, measured, not assumed.

``measure_payload(source, seed, codec, compress_over_bytes, batch_msgs, sample_msgs)`` reads
the first ``sample_msgs`` messages of the workload (the same seed, so the same bodies a
one-producer run sends; with several producers at a rate each sends its own part, drawn from the
same body models) and reports:

* ``compression_ratio_per_msg``: raw bytes / compressed bytes with the codec applied to every body;
* ``compression_ratio_as_sent``: raw / wire bytes under the producer's rule (only bodies of at least
  ``compress_over_bytes`` are compressed, batches never: what the broker really receives);
* ``compression_ratio_batch``: raw / compressed with the bodies of each batch of ``batch_msgs``
  concatenated and compressed together (what batch compression would give; null for batch 1);
* ``compressed_share``: share of bodies at or over the threshold.
"""
from __future__ import annotations

import itertools

from mqbench.codecs.registry import Codec
from mqbench.workloads.source import open_workload

SAMPLE_MSGS = 2000


def measure_payload(source: str, seed: int, codec: Codec, compress_over_bytes: int, batch_msgs: int = 1,
                    sample_msgs: int = SAMPLE_MSGS) -> dict:
    workload = open_workload(source, seed)
    bodies = [m.body for m in itertools.islice(workload.messages, sample_msgs)]
    raw = sum(len(b) for b in bodies)
    out = {"source": workload.payload_source, "sample_msgs": len(bodies), "codec": codec.spec,
           "compress_over_bytes": compress_over_bytes, "body_bytes_mean": raw / len(bodies) if bodies else None,
           "compression_ratio_per_msg": None, "compression_ratio_as_sent": None, "compression_ratio_batch": None,
           "compressed_share": 0.0}
    if not bodies:
        return out
    if codec.is_none:
        out.update(compression_ratio_per_msg=1.0, compression_ratio_as_sent=1.0,
                   compression_ratio_batch=1.0 if batch_msgs > 1 else None)
        return out
    packed = [len(codec.compress(b)) for b in bodies]
    over = [len(b) >= compress_over_bytes for b in bodies]
    wire = sum(p if o else len(b) for b, p, o in zip(bodies, packed, over))
    out["compression_ratio_per_msg"] = raw / sum(packed)
    out["compression_ratio_as_sent"] = raw / wire
    out["compressed_share"] = sum(over) / len(bodies)
    if batch_msgs > 1:
        chunks = [b"".join(bodies[i:i + batch_msgs]) for i in range(0, len(bodies), batch_msgs)]
        out["compression_ratio_batch"] = raw / sum(len(codec.compress(c)) for c in chunks)
    return out
