"""A sample of message bodies for a workload: a built-in profile name or a file of real payloads.

Used wherever figures must come from real payloads (``codecs bench``, ``codecs train-dict``,
``limits``). Contract of ``load_sample(source, count, seed)``:

* a built-in body model name (``orders``, ``notifications``, ``iot``, ``order_timeout``): ``count``
  bodies from that model, reproducible from ``seed`` (unchanged since before profiles existed, so
  earlier figures stay comparable);
* a profile ``*.toml`` file: the bodies of its first ``count`` generated messages (all its topics, in
  their shares), reproducible from ``seed``;
* ``*.parquet``: an ``mqbench.trace/1`` trace's bodies (validated as it is read), or the ``body``
  column of any other Parquet file (first ``count`` rows);
* ``*.jsonl``/``*.ndjson``: each non-empty line is one body, as exported (the JSON text itself);
* any other file: each non-empty line is one body.

Returns ``(bodies, payload_source)`` where ``payload_source`` says where they came from (results
carry it). Raises ``UserError`` for a missing, unreadable or empty source.
"""
from __future__ import annotations

import itertools
import random
from pathlib import Path

from mqbench.errors import UserError
from mqbench.workloads.bodies import BODY_MODELS, BODY_STREAMS, generate_bodies, iter_bodies
from mqbench.workloads.trace import is_trace, iter_trace_rows


def load_sample(source: str, count: int = 2000, seed: int = 1) -> tuple[list[bytes], str]:
    if source in BODY_MODELS:
        return generate_bodies(source, count, random.Random(seed)), f"model:{source}:seed={seed}"
    if source in BODY_STREAMS:
        bodies = list(itertools.islice(iter_bodies(source, random.Random(seed)), count))
        return bodies, f"model:{source}:seed={seed}"
    path = Path(source)
    if path.suffix == ".toml":
        from mqbench.workloads.generator import generate_messages
        from mqbench.workloads.profile import load_profile

        profile = load_profile(path)
        bodies = [message.body for message in generate_messages(profile, seed, count=count)]
        return bodies, f"profile:{path.name}:seed={seed}"
    if not path.exists():
        raise UserError(f"workload {source!r} is neither a built-in profile ({', '.join(BODY_MODELS)}) nor a file")
    if path.is_dir():
        raise UserError(f"workload {source!r} is a directory, not a file")
    if path.suffix == ".parquet" and is_trace(path):
        bodies = [message.body for message in itertools.islice(iter_trace_rows(path), count) if message.body]
    elif path.suffix == ".parquet":
        bodies = _parquet_bodies(path, count)
    else:
        with path.open("rb") as handle:
            bodies = []
            for line in handle:
                line = line.rstrip(b"\r\n")
                if line:
                    bodies.append(line)
                    if len(bodies) >= count:
                        break
    if not bodies:
        raise UserError(f"workload file {source!r} holds no message bodies")
    return bodies, f"file:{path.name}"


def _parquet_bodies(path: Path, count: int) -> list[bytes]:
    import pyarrow.parquet as pq  # deferred: pyarrow is slow to import and only needed here

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError variants
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from None
    if "body" not in parquet.schema_arrow.names:
        raise UserError(f"{path}: Parquet file has no 'body' column (columns: {', '.join(parquet.schema_arrow.names)})")
    bodies: list[bytes] = []
    for batch in parquet.iter_batches(columns=["body"], batch_size=min(count, 65536)):
        for value in batch.column(0).to_pylist():
            if value:
                bodies.append(value if isinstance(value, bytes) else str(value).encode())
                if len(bodies) >= count:
                    return bodies
    return bodies
