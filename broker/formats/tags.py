"""What the consume queue keeps of a message besides its position: the tags code (spec 5.1, 5.3).

A consume-queue unit's third field is the Java ``hashCode`` of the message's TAGS (0 without tags),
or, on ``SCHEDULE_TOPIC_XXXX``, the time its delay level falls due; the broker's tag filter and the
delay service read it without touching the record. ``java_hash`` is also the key hash of the index
files. Pure: no I/O.
"""
from __future__ import annotations

import operator
import struct

from mqbench.errors import UserError

from .properties import PROPERTY_DELAY, PROPERTY_TAGS
from .record import Message
from .topics import SCHEDULE_TOPIC

DEFAULT_MESSAGE_DELAY_LEVEL = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"


_POW31_CACHED_MAX = 512
_POW31: dict[int, tuple[int, ...]] = {}


_POW31_OF_LENGTH: dict[int, int] = {}


def pow31(n: int) -> int:
    """31**n mod 2**32 (cached: the lengths of keys repeat)."""
    p = _POW31_OF_LENGTH.get(n)
    if p is None:
        p = pow(31, n, 1 << 32)
        if n <= _POW31_CACHED_MAX:
            _POW31_OF_LENGTH[n] = p
    return p


def java_hash_ascii(data: bytes) -> int:
    """``java_hash`` of ASCII text given as its bytes, UNSIGNED (0..2**32-1): h = sum of
    c[i] * 31**(n-1-i) mod 2**32, evaluated in C (``map``/``sum``) with the powers cached per
    length (keys and tags are short; a migration hashes two or three per message)."""
    n = len(data)
    pows = _POW31.get(n)
    if pows is None:
        if n > _POW31_CACHED_MAX:
            h = 0
            for unit in data:
                h = (31 * h + unit) & 0xFFFFFFFF
            return h
        pows = _POW31[n] = tuple(pow(31, n - 1 - i, 1 << 32) for i in range(n))
    total: int = sum(map(operator.mul, data, pows))
    return total & 0xFFFFFFFF


def java_hash(text: str) -> int:
    """``java.lang.String.hashCode()``: 31*h + c over UTF-16 code units, as a signed int32."""
    h = 0
    if text.isascii():       # one UTF-16 unit per byte: the common case
        h = java_hash_ascii(text.encode("ascii"))
    else:
        data = text.encode("utf-16-be", "surrogatepass")
        for (unit,) in struct.iter_unpack(">H", data):
            h = (31 * h + unit) & 0xFFFFFFFF
    return h - 0x100000000 if h & 0x80000000 else h


def parse_delay_levels(text: str = DEFAULT_MESSAGE_DELAY_LEVEL) -> list[int]:
    """``messageDelayLevel`` ("1s 5s ... 2h") to a list of delays in ms; level i is item i-1."""
    units = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    levels = []
    for word in text.split(" "):
        if not word or word[-1] not in units or not word[:-1].isdigit():
            raise UserError(f"bad delay level {word!r} in {text!r} (examples: 1s 5m 2h 1d)")
        levels.append(int(word[:-1]) * units[word[-1]])
    return levels


#: ``parse_delay_levels()`` of the default string, parsed once: ``tags_code`` needs it for every record
#: on ``SCHEDULE_TOPIC_XXXX`` (a fifth of an orders workload's sends), and it never changes.
_DEFAULT_LEVELS_MS: tuple[int, ...] = tuple(parse_delay_levels())


def tags_code(tags: str | None, topic: str | None = None, *, properties: dict[str, str] | None = None,
              store_timestamp_ms: int = 0, delay_levels_ms: list[int] | None = None) -> int:
    """The consume-queue tagsCode (spec 5.1, 5.3): Java hashCode of TAGS, 0 without tags.

    For ``SCHEDULE_TOPIC_XXXX`` it is the deliver time: store time + the delay of the record's
    ``DELAY`` level (capped at the last level; +1000 ms when the level is unknown).
    """
    if topic == SCHEDULE_TOPIC and properties is not None and PROPERTY_DELAY in properties:
        levels = delay_levels_ms if delay_levels_ms is not None else _DEFAULT_LEVELS_MS
        try:
            level = min(int(properties[PROPERTY_DELAY]), len(levels))
        except ValueError:
            level = 0
        if level > 0:
            return store_timestamp_ms + levels[level - 1]
        return store_timestamp_ms + 1000
    if not tags:
        return 0
    code = _TAGS_CODES.get(tags)
    if code is None:
        code = java_hash(tags)
        if len(_TAGS_CODES) >= _TAGS_CODES_MAX:
            _TAGS_CODES.clear()
        _TAGS_CODES[tags] = code
    return code


# tags -> tagsCode: a workload's tags are a few values repeated (orders: a handful), and every
# stored record's tags are hashed on the leader (and again on a replica's Python path)
_TAGS_CODES: dict[str, int] = {}
_TAGS_CODES_MAX = 4096


def message_tags_code(msg: Message, delay_levels_ms: list[int] | None = None) -> int:
    """``tags_code`` for a whole message (its TAGS, topic, DELAY and store time)."""
    return tags_code(msg.properties.get(PROPERTY_TAGS), msg.topic, properties=msg.properties,
                     store_timestamp_ms=msg.store_timestamp_ms, delay_levels_ms=delay_levels_ms)
