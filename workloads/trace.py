"""Recorded traces: one Parquet file, one row per message, written and read in streaming row groups.

Format ``mqbench.trace/1`` (a trace may be bigger than memory; nothing here holds more than one row
group):

=================  =========================  ===============================================================
column             Arrow type (not null)      meaning
=================  =========================  ===============================================================
``send_offset_us``  int64                     intended send time, microseconds since the trace start;
                                              non-decreasing from row to row, first row >= 0
``topic``           string                    RocketMQ topic
``key``             string                    message keys (RocketMQ ``KEYS``), ``""`` = none
``tags``            string                    message tag, ``""`` = none
``properties``      map<string, string>       user properties (never RocketMQ's reserved ones)
``delay_ms``        int64                     delivery delay relative to the send time, 0 = not delayed
                                              (relative, not a deliver-at offset: a replayer started
                                              late still delays each message by what was recorded)
``delay_level``     int8                      RocketMQ 4.x delay level 1..18 giving ``delay_ms``, or 0 for
                                              an arbitrary delay (5.x timer) or no delay
``body``            binary                    payload bytes as sent
=================  =========================  ===============================================================

File (schema) metadata, UTF-8:

* ``mqbench.schema``: ``mqbench.trace/1``; readers refuse other versions;
* ``mqbench.trace``: a JSON object: ``source`` (``generated``, ``imported`` or ``recorded``),
  ``source_detail`` (input file, cluster and topic, ...), ``profile`` (name or null),
  ``profile_document`` (the profile's TOML as a JSON object, or null), ``seed`` (or null),
  ``generator_version``, ``tool_version``.

Row groups hold at most 16,384 rows or about 16 MiB of bodies; Parquet pages are zstd-compressed,
and the topic, tags, key and property columns are dictionary-encoded. Writing or reading a trace of
any size takes about 100-200 MB of memory (a slow test holds it to that on a 312 MiB trace).
``TraceWriter`` writes to ``NAME.partial`` and renames on ``close()``, so a crash never leaves a
truncated file under the final name. ``iter_trace_rows(path)`` yields ``TraceMessage`` objects lazily
and raises ``CorruptDataError`` naming the file and row for anything that breaks the format.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mqbench import __version__
from mqbench.errors import CorruptDataError, InvariantViolation, UserError
from mqbench.workloads.message import TraceMessage

TRACE_SCHEMA = "mqbench.trace/1"
SCHEMA_KEY = b"mqbench.schema"
INFO_KEY = b"mqbench.trace"
SOURCES = ("generated", "imported", "recorded")
ROW_GROUP_ROWS = 16_384
ROW_GROUP_BODY_BYTES = 16 * 1024 * 1024
DICTIONARY_COLUMNS = ("topic", "tags", "key", "properties.key_value.key", "properties.key_value.value")
COLUMNS = ("send_offset_us", "topic", "key", "tags", "properties", "delay_ms", "delay_level", "body")


def arrow_schema(metadata: dict[bytes, bytes] | None = None):
    import pyarrow as pa  # deferred: pyarrow is slow to import

    return pa.schema([
        pa.field("send_offset_us", pa.int64(), nullable=False),
        pa.field("topic", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("tags", pa.string(), nullable=False),
        pa.field("properties", pa.map_(pa.string(), pa.string()), nullable=False),
        pa.field("delay_ms", pa.int64(), nullable=False),
        pa.field("delay_level", pa.int8(), nullable=False),
        pa.field("body", pa.binary(), nullable=False),
    ], metadata=metadata)


@dataclass(frozen=True)
class TraceInfo:
    """What a trace file says about itself (its footer), without reading its rows."""

    path: str
    messages: int
    row_groups: int
    source: str
    source_detail: str
    profile: str | None
    profile_document: dict | None
    seed: int | None
    generator_version: str
    tool_version: str


class TraceWriter:
    """Append messages in send order; ``close()`` makes the file appear under its name.

    Use as a context manager: leaving it by an exception removes the partial file.
    """

    def __init__(self, path: str | Path, *, source: str, source_detail: str = "", profile: str | None = None,
                 profile_document: dict | None = None, seed: int | None = None, generator_version: str = "",
                 row_group_rows: int = ROW_GROUP_ROWS, row_group_body_bytes: int = ROW_GROUP_BODY_BYTES):
        import pyarrow.parquet as pq

        if source not in SOURCES:
            raise InvariantViolation(f"trace source {source!r} is not one of {SOURCES}")
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        info = {"source": source, "source_detail": source_detail, "profile": profile,
                "profile_document": profile_document, "seed": seed, "generator_version": generator_version,
                "tool_version": __version__}
        metadata = {SCHEMA_KEY: TRACE_SCHEMA.encode(), INFO_KEY: json.dumps(info, sort_keys=True).encode()}
        self._schema = arrow_schema(metadata)
        # Dictionary-encode the short, repeating columns only: bodies are nearly all distinct, and
        # trying a dictionary on them costs memory and time for nothing (zstd still sees them).
        self._writer = pq.ParquetWriter(self.partial_path, self._schema, compression="zstd",
                                        use_dictionary=list(DICTIONARY_COLUMNS))
        self._row_group_rows = row_group_rows
        self._row_group_body_bytes = row_group_body_bytes
        self._columns: dict[str, list] = {name: [] for name in COLUMNS}
        self._body_bytes = 0
        self._last_offset_us = 0
        self.messages = 0
        self.body_bytes = 0

    def write(self, message: TraceMessage) -> None:
        if message.send_offset_us < self._last_offset_us:
            raise InvariantViolation(f"trace rows out of order: {message.send_offset_us} us after "
                                     f"{self._last_offset_us} us")
        if message.delay_ms < 0 or not 0 <= message.delay_level <= 18:
            raise InvariantViolation(f"bad delay {message.delay_ms} ms / level {message.delay_level}")
        self._last_offset_us = message.send_offset_us
        columns = self._columns
        columns["send_offset_us"].append(message.send_offset_us)
        columns["topic"].append(message.topic)
        columns["key"].append(message.key)
        columns["tags"].append(message.tags)
        columns["properties"].append(list(message.properties.items()))
        columns["delay_ms"].append(message.delay_ms)
        columns["delay_level"].append(message.delay_level)
        columns["body"].append(message.body)
        self._body_bytes += len(message.body)
        self.messages += 1
        self.body_bytes += len(message.body)
        if len(columns["body"]) >= self._row_group_rows or self._body_bytes >= self._row_group_body_bytes:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._columns["body"]:
            return
        table = pa.Table.from_pydict(self._columns, schema=self._schema)
        self._writer.write_table(table, row_group_size=len(self._columns["body"]))
        self._columns = {name: [] for name in COLUMNS}
        self._body_bytes = 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
        os.replace(self.partial_path, self.path)

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.partial_path.unlink(missing_ok=True)

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _open(path: str | Path):
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_dir():
        raise UserError(f"trace {path} is a directory, not a Parquet file")
    if not path.exists():
        raise UserError(f"trace file {path} does not exist")
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError variants for non-Parquet bytes
        raise CorruptDataError(f"not a readable Parquet file ({exc})", where=str(path)) from None


def is_trace(path: str | Path) -> bool:
    """True when ``path`` is a Parquet file carrying mqbench trace metadata (any version)."""
    try:
        metadata = _open(path).schema_arrow.metadata or {}
    except UserError:
        return False
    return SCHEMA_KEY in metadata


def read_trace_info(path: str | Path) -> TraceInfo:
    """The footer of a trace; raises ``CorruptDataError`` if it is not an ``mqbench.trace/1`` file."""
    parquet = _open(path)
    _check_schema(parquet, str(path))
    info = _info(parquet, str(path))
    return TraceInfo(path=str(path), messages=parquet.metadata.num_rows, row_groups=parquet.num_row_groups,
                     source=info.get("source", ""), source_detail=info.get("source_detail", ""),
                     profile=info.get("profile"), profile_document=info.get("profile_document"),
                     seed=info.get("seed"), generator_version=info.get("generator_version", ""),
                     tool_version=info.get("tool_version", ""))


def _check_schema(parquet, where: str) -> None:
    metadata = parquet.schema_arrow.metadata or {}
    version = metadata.get(SCHEMA_KEY)
    if version is None:
        raise CorruptDataError("not an mqbench trace (no mqbench.schema metadata); "
                               "convert an export with `mqbench workloads import`", where=where)
    if version != TRACE_SCHEMA.encode():
        raise CorruptDataError(f"trace schema {version.decode(errors='replace')!r}; this mqbench reads "
                               f"{TRACE_SCHEMA}", where=where)
    expected = arrow_schema()
    actual = parquet.schema_arrow
    for wanted in expected:
        if wanted.name not in actual.names:
            raise CorruptDataError(f"trace has no {wanted.name!r} column", where=where)
        if not actual.field(wanted.name).type.equals(wanted.type):
            raise CorruptDataError(f"column {wanted.name!r} is {actual.field(wanted.name).type}, "
                                   f"expected {wanted.type}", where=where)


def _info(parquet, where: str) -> dict:
    raw = (parquet.schema_arrow.metadata or {}).get(INFO_KEY, b"{}")
    try:
        info = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise CorruptDataError("mqbench.trace metadata is not JSON", where=where) from None
    if not isinstance(info, dict):
        raise CorruptDataError("mqbench.trace metadata is not a JSON object", where=where)
    return info


def iter_trace_rows(path: str | Path, batch_rows: int = 2048) -> Iterator[TraceMessage]:
    """The messages of a trace in file order (= send order), lazily, one row group batch at a time."""
    import pyarrow as pa

    parquet = _open(path)
    where = str(path)
    _check_schema(parquet, where)
    row = 0
    last_offset_us = 0
    # One thread: decoding columns in parallel buys little here and holds more buffers at once.
    batches = parquet.iter_batches(batch_size=batch_rows, columns=list(COLUMNS), use_threads=False)
    while True:
        try:
            batch = next(batches)
            columns = {name: batch.column(name).to_pylist() for name in COLUMNS}
        except StopIteration:
            return
        except (OSError, ValueError, pa.ArrowException) as exc:  # damaged pages, bad UTF-8 in a string column
            raise CorruptDataError(f"unreadable row group data ({exc})", where=f"{where} after row {row}") from None
        for index in range(batch.num_rows):
            offset_us = columns["send_offset_us"][index]
            topic = columns["topic"][index]
            body = columns["body"][index]
            delay_ms = columns["delay_ms"][index]
            delay_level = columns["delay_level"][index]
            properties = columns["properties"][index]
            if offset_us is None or topic is None or body is None or delay_ms is None or delay_level is None:
                raise CorruptDataError("null in a required column", where=f"{where} row {row}")
            if offset_us < last_offset_us:
                raise CorruptDataError(f"send_offset_us {offset_us} goes back from {last_offset_us}",
                                       where=f"{where} row {row}")
            if delay_ms < 0 or not 0 <= delay_level <= 18:
                raise CorruptDataError(f"bad delay: delay_ms {delay_ms}, delay_level {delay_level}",
                                       where=f"{where} row {row}")
            last_offset_us = offset_us
            yield TraceMessage(send_offset_us=offset_us, topic=topic, body=body, key=columns["key"][index] or "",
                               tags=columns["tags"][index] or "", properties=dict(properties or ()),
                               delay_ms=delay_ms, delay_level=delay_level)
            row += 1
