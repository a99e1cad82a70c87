"""Turn a user's export of real traffic (JSON Lines, CSV or Parquet) into an ``mqbench.trace/1`` file.

Columns are found by name; ``ImportOptions`` renames them. Per row:

* time (required, default column ``timestamp``): epoch seconds, milliseconds or microseconds (a
  number or a numeric string; ``auto`` tells them apart by magnitude, which is unambiguous for dates
  after 1973), ISO-8601 text (``2025-11-24T08:00:00.123Z``; no zone = UTC), or a Parquet timestamp.
  ``send_offset_us`` is the time minus the earliest time of the file.
* body (required, default ``body``): text is stored as UTF-8 (or decoded with ``body_encoding``
  ``base64``/``hex``); in JSON Lines an object or array body is stored as compact JSON; Parquet
  binary is stored as is.
* topic (required unless ``topic`` gives one for every row), key, tags, properties (a JSON object,
  or a map/struct in JSON Lines and Parquet), delay_ms: optional columns; a column that was renamed
  explicitly must exist.
* RocketMQ's own properties in an export (``UNIQ_KEY``, ``WAIT``, ...) are dropped: the producer of a
  replay sets them. ``KEYS``, ``TAGS`` and ``DELAY`` fill key, tags and delay level when those columns
  are absent.

Exports from several producers are rarely in exact time order: rows are reordered within
``reorder_window_ms`` (held in memory, so memory grows with rate x window); a row earlier than that
behind the latest is a bad row. A bad row raises ``UserError`` naming the file and line (row for
Parquet), or with ``skip_bad`` is skipped and reported in ``ImportResult.skipped``.
"""
from __future__ import annotations

import base64
import binascii
import csv
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from mqbench.errors import UserError
from mqbench.workloads.message import TraceMessage
from mqbench.workloads.profile import DELAY_LEVELS_MS, DELAY_MAX_MS, RESERVED_PROPERTIES, TOPIC_NAME_RE
from mqbench.workloads.reorder import RebasingWriter, ReorderBuffer
from mqbench.workloads.trace import TraceWriter
from mqbench.broker.formats.properties import PROPERTY_DELAY, PROPERTY_KEYS, PROPERTY_TAGS

FORMATS = ("jsonl", "csv", "parquet")
TIME_FORMATS = ("auto", "epoch-s", "epoch-ms", "epoch-us", "iso8601")
BODY_ENCODINGS = ("utf8", "base64", "hex")
SKIPPED_KEPT = 100  # how many skipped rows are kept with their reason
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIME_US_END = 253_402_300_800_000_000  # 10000-01-01T00:00:00Z: later times are typos, and overflow int64 offsets
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "csv",
                   ".parquet": "parquet"}


class BadRow(Exception):
    """One row that cannot be imported; the message says why."""


@dataclass(frozen=True)
class ImportOptions:
    """Column names (None = the default name, optional) and parsing choices."""

    time_column: str = "timestamp"
    body_column: str = "body"
    topic_column: str | None = None
    key_column: str | None = None
    tags_column: str | None = None
    properties_column: str | None = None
    delay_column: str | None = None
    topic: str | None = None  # every row's topic when there is no topic column
    time_format: str = "auto"
    body_encoding: str = "utf8"
    file_format: str | None = None  # None: from the file suffix
    reorder_window_ms: int = 10_000
    skip_bad: bool = False


@dataclass
class ImportResult:
    messages: int = 0
    body_bytes: int = 0
    duration_us: int = 0
    skipped_count: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, reason), the first SKIPPED_KEPT


def detect_format(path: Path, given: str | None) -> str:
    if given:
        if given not in FORMATS:
            raise UserError(f"--format must be one of {', '.join(FORMATS)}")
        return given
    found = _SUFFIX_FORMATS.get(path.suffix.lower())
    if found is None:
        raise UserError(f"{path}: cannot tell the format from the suffix {path.suffix!r}; "
                        f"name it .jsonl, .csv or .parquet, or pass --format")
    return found


def import_trace(source: str | Path, out_path: str | Path, options: ImportOptions = ImportOptions(),
                 progress: Callable[[int], None] | None = None) -> ImportResult:
    """Read ``source``, write a trace to ``out_path``; see the module docstring for the rules."""
    source = Path(source)
    if not source.exists():
        raise UserError(f"import file {source} does not exist")
    if source.is_dir():
        raise UserError(f"import source {source} is a directory, not a file")
    file_format = detect_format(source, options.file_format)
    if options.topic is not None and not TOPIC_NAME_RE.match(options.topic):
        raise UserError(f"--topic {options.topic!r} is not a RocketMQ topic name")
    records = {"jsonl": _jsonl_records, "csv": _csv_records, "parquet": _parquet_records}[file_format](source)
    columns = _Columns(options, source)
    result = ImportResult()
    buffer: ReorderBuffer[TraceMessage] = ReorderBuffer(options.reorder_window_ms * 1000)
    checked = False
    with TraceWriter(out_path, source="imported", source_detail=f"{source.name} ({file_format})") as writer:
        emit = RebasingWriter(writer, result, progress).emit

        for where, record in records:
            if not checked and not isinstance(record, BadRow):
                columns.check_first(record)
                checked = True
                if where == _HEADER:
                    continue
            try:
                if isinstance(record, BadRow):
                    raise record
                time_us, message = columns.message(record)
                if buffer.is_late(time_us):
                    raise BadRow(f"time is {(buffer.released_us - time_us) / 1e3:,.0f} ms before a row already "
                                 f"written; rows are out of order by more than the reorder window "
                                 f"({options.reorder_window_ms} ms)")
            except BadRow as exc:
                if not options.skip_bad:
                    raise UserError(f"{source} {where}: {exc} (pass --skip-bad to skip bad rows)") from None
                result.skipped_count += 1
                if len(result.skipped) < SKIPPED_KEPT:
                    result.skipped.append((where, str(exc)))
                continue
            emit(buffer.push(time_us, message))
        emit(buffer.drain())
        if result.messages == 0:
            raise UserError(f"{source}: no rows imported" + (f" ({result.skipped_count} bad rows skipped)"
                                                               if result.skipped_count else ""))
    return result


class _Columns:
    """Maps a record (column name -> value) to a message, by the options' column names."""

    def __init__(self, options: ImportOptions, source: Path):
        self.options = options
        self.source = source
        self.names = {
            "time": (options.time_column, True),
            "body": (options.body_column, True),
            "topic": (options.topic_column or "topic", options.topic is None or options.topic_column is not None),
            "key": (options.key_column or "key", options.key_column is not None),
            "tags": (options.tags_column or "tags", options.tags_column is not None),
            "properties": (options.properties_column or "properties", options.properties_column is not None),
            "delay": (options.delay_column or "delay_ms", options.delay_column is not None),
        }
        if options.time_format not in TIME_FORMATS:
            raise UserError(f"--time-format must be one of {', '.join(TIME_FORMATS)}")
        if options.body_encoding not in BODY_ENCODINGS:
            raise UserError(f"--body-encoding must be one of {', '.join(BODY_ENCODINGS)}")

    def check_first(self, record: dict) -> None:
        """Required columns missing from the first row (or the header) are a file error, not a bad row."""
        missing = [name for name, required in self.names.values() if required and name not in record]
        if missing:
            hint = " (or give --topic for every row)" if self.names["topic"][0] in missing else ""
            raise UserError(f"{self.source}: no column {', '.join(repr(m) for m in missing)}{hint}; columns: "
                            f"{', '.join(map(str, record)) or 'none'}; rename with --time-column, --body-column, ...")

    def message(self, record: dict) -> tuple[int, TraceMessage]:
        get = record.get
        names = self.names
        raw_time = get(names["time"][0])
        if raw_time is None or raw_time == "":
            raise BadRow(f"no {names['time'][0]!r} value")
        time_us = parse_time_us(raw_time, self.options.time_format)
        body = self._body(get(names["body"][0]))
        topic = get(names["topic"][0]) if names["topic"][0] in record else self.options.topic
        if topic in (None, "") and self.options.topic is not None:
            topic = self.options.topic
        if not isinstance(topic, str) or not TOPIC_NAME_RE.match(topic):
            raise BadRow(f"topic {topic!r} is not a RocketMQ topic name (1-127 letters, digits, '_', '-', '%', '|')")
        properties = _properties(get(names["properties"][0]))
        key = _text(get(names["key"][0]), "key")
        tags = _text(get(names["tags"][0]), "tags")
        system = {name: properties.pop(name) for name in list(properties) if name in RESERVED_PROPERTIES}
        key = key or system.get(PROPERTY_KEYS, "")
        tags = tags or system.get(PROPERTY_TAGS, "")
        if "||" in tags:
            raise BadRow(f"tag {tags!r} holds '||'")
        delay_ms, delay_level = _delay(get(names["delay"][0]), system.get(PROPERTY_DELAY))
        return time_us, TraceMessage(send_offset_us=0, topic=topic, body=body, key=key, tags=tags,
                                     properties=properties, delay_ms=delay_ms, delay_level=delay_level)

    def _body(self, value) -> bytes:
        if value is None:
            raise BadRow(f"no {self.names['body'][0]!r} value")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, (dict, list)):
            return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        if not isinstance(value, str):
            value = json.dumps(value)
        encoding = self.options.body_encoding
        try:
            if encoding == "base64":
                return base64.b64decode(value, validate=True)
            if encoding == "hex":
                return bytes.fromhex(value)
        except (binascii.Error, ValueError):
            raise BadRow(f"body is not valid {encoding}") from None
        try:  # surrogateescape gives back the exact bytes of a CSV body that was not UTF-8
            return value.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError:
            raise BadRow("body holds a lone UTF-16 surrogate (a \\ud800-style escape)") from None


def parse_time_us(value, time_format: str = "auto") -> int:
    """A time value from an export -> integer microseconds since the Unix epoch; BadRow if it is not one."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return (moment - _EPOCH) // _ONE_US
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text) if time_format != "iso8601" and _looks_float(text) else None
            except ValueError:
                number = None
        if number is None:
            if time_format not in ("auto", "iso8601"):
                raise BadRow(f"time {value!r} is not a number ({time_format})")
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise BadRow(f"time {value!r} is neither an epoch number nor ISO-8601") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return (moment - _EPOCH) // _ONE_US
    else:
        raise BadRow(f"time {value!r} is not a time")
    if time_format == "iso8601":
        raise BadRow(f"time {value!r} is a number, not ISO-8601")
    if isinstance(number, float) and (math.isnan(number) or math.isinf(number)):
        raise BadRow(f"time {value!r} is not finite")
    if number < 0:
        raise BadRow(f"time {value!r} is before 1970")
    scale = {"epoch-s": 1_000_000, "epoch-ms": 1_000, "epoch-us": 1}.get(time_format)
    if scale is None:  # auto: seconds < 1e11 (year 5138) <= milliseconds < 1e14 <= microseconds < 1e17 <= ns
        scale = 1_000_000 if number < 1e11 else 1_000 if number < 1e14 else 1 if number < 1e17 else 0.001
    time_us = number * scale
    if time_us >= TIME_US_END:
        raise BadRow(f"time {value!r} is after the year 9999")
    return int(round(time_us))


_ONE_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc) - _EPOCH


def _looks_float(text: str) -> bool:
    return bool(text) and all(ch in "0123456789.eE+-" for ch in text) and any(ch.isdigit() for ch in text)


def _text(value, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise BadRow(f"{what} {value!r} is not text")
    text = str(value)
    if any(ch in text for ch in "\x00\x01\x02"):
        raise BadRow(f"{what} holds control characters RocketMQ uses as separators")
    _check_utf8(text, what)
    return text


def _check_utf8(text: str, what: str) -> None:
    """Lone surrogates (from ``\\ud800`` in JSON or undecodable bytes in CSV) cannot be stored as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRow(f"{what} is not valid UTF-8 text") from None


def _properties(value) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise BadRow("properties is not a JSON object") from None
    if isinstance(value, list):  # a Parquet map column reads as (key, value) pairs
        try:
            value = dict(value)
        except (TypeError, ValueError):
            raise BadRow("properties is not a map") from None
    if not isinstance(value, dict):
        raise BadRow("properties is not an object")
    properties = {}
    for name, item in value.items():
        if item is None:
            continue
        text = item if isinstance(item, str) else json.dumps(item, separators=(",", ":"))
        if not isinstance(name, str) or not name or any(ch in name + text for ch in "\x01\x02"):
            raise BadRow(f"property {name!r} is empty or holds RocketMQ's separator characters")
        _check_utf8(name + text, f"property {name!r}")
        properties[name] = text
    return properties


def _delay(value, level_property: str | None) -> tuple[int, int]:
    level = 0
    if level_property not in (None, "", "0"):
        try:
            level = int(level_property)
        except ValueError:
            raise BadRow(f"DELAY property {level_property!r} is not a delay level") from None
        if not 1 <= level <= len(DELAY_LEVELS_MS):
            raise BadRow(f"DELAY level {level} is outside 1..{len(DELAY_LEVELS_MS)}")
    if value is None or value == "":
        return (DELAY_LEVELS_MS[level - 1], level) if level else (0, 0)
    try:
        delay_ms = int(value) if not isinstance(value, float) else int(round(value))
    except (TypeError, ValueError):
        raise BadRow(f"delay_ms {value!r} is not an integer") from None
    if not 0 <= delay_ms <= DELAY_MAX_MS:
        raise BadRow(f"delay_ms {delay_ms} is outside 0..{DELAY_MAX_MS} (3 days, RocketMQ's timer limit)")
    if level and delay_ms != DELAY_LEVELS_MS[level - 1]:
        level = 0  # the column's delay wins; it is no longer the level's
    return delay_ms, level if delay_ms else 0


# --- readers: (where, record) pairs; a BadRow instead of a record for rows that do not parse ----------
# CSV and Parquet readers first yield (_HEADER, {column: None}) so missing columns are found up front.

_HEADER = "header"


def _jsonl_records(path: Path) -> Iterator[tuple[str, dict | BadRow]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                yield f"line {number}", BadRow(f"not JSON ({exc})")
                continue
            if not isinstance(record, dict):
                yield f"line {number}", BadRow("not a JSON object")
                continue
            yield f"line {number}", record


def _csv_records(path: Path) -> Iterator[tuple[str, dict | BadRow]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            raise UserError(f"{path}: empty CSV file (no header row)") from None
        except csv.Error as exc:
            raise UserError(f"{path}: the header row is not CSV ({exc})") from None
        yield _HEADER, {name: None for name in header}
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield f"line {reader.line_num}", BadRow(f"not CSV ({exc})")
                continue
            if not row or row == [""]:
                continue
            if len(row) != len(header):
                yield f"line {reader.line_num}", BadRow(f"{len(row)} fields, the header has {len(header)}")
                continue
            yield f"line {reader.line_num}", dict(zip(header, row))


def _parquet_records(path: Path) -> Iterator[tuple[str, dict | BadRow]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError variants for non-Parquet bytes
        raise UserError(f"{path}: not a readable Parquet file ({exc})") from None
    names = parquet.schema_arrow.names
    yield _HEADER, {name: None for name in names}
    row = 0
    for batch in parquet.iter_batches(batch_size=8192):
        for record in batch.to_pylist():
            row += 1
            yield f"row {row}", record
