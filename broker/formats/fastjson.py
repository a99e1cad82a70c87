"""fastjson 1.x's JSON dialect (spec 12.1): a reader that accepts bare integer object keys and a
writer that reproduces fastjson's pretty layout byte for byte. Pure text in/out.

* pretty format: one TAB per level, ``\\n`` newlines, no spaces around ``:``/``,``, no trailing newline;
* maps with integer keys are written with bare keys on one line, the closing brace on its own
  line: ``{0:250,1:251\\n\\t\\t}``; string-keyed maps one entry per line; an empty map is ``{}``;
* null values are omitted;
* a map whose keys are Java beans (``HashMap<MessageQueue, OffsetWrapper>`` in ConsumeStats and
  TopicStatsTable, what the broker's admin answers carry) is written with each key as a JSON object,
  ``{{"brokerName":"b","queueId":0,"topic":"t"}:{...}}``: not JSON, but what fastjson reads back.
  The reader returns such keys as ``ObjectKey`` (hashable; ``.fields()`` is the dict); the writer
  takes an ``ObjectKeyMap`` (a list of ``(dict, value)`` pairs).

Java maps iterate in hash order; ``java_map_order`` reproduces HashMap/ConcurrentHashMap order so
that a writer gives the same bytes as a Java broker for the same content.
"""
from __future__ import annotations

import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]  # public since Python 2, missing from typeshed
from typing import Any, Iterable

from mqbench.errors import CorruptDataError, UserError

from .tags import java_hash

_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_WS = " \t\n\r"


class ObjectKey(tuple[tuple[str, Any], ...]):
    """A JSON object read as a map key: the sorted ``(name, value)`` pairs (scalar values only)."""

    def fields(self) -> dict[Any, Any]:
        return dict(self)


class ObjectKeyMap(list[tuple[Any, Any]]):
    """A map to write with JSON objects as keys: a list of ``(key dict, value)`` pairs, in order."""


def loads_fastjson(text: str | bytes, *, where: str | None = None) -> object:
    """Parse JSON as fastjson writes it: standard JSON plus bare integer object keys.

    Raises CorruptDataError (with ``where`` and the character offset) for anything else.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CorruptDataError(f"not UTF-8 text ({exc.reason})", where=where, offset=exc.start) from None
    parser = _Parser(text, where)
    value = parser.value(0)
    parser.skip()
    if parser.pos != len(text):
        raise parser.error("trailing characters after the JSON value")
    return value


class _Parser:
    def __init__(self, text: str, where: str | None):
        self.text = text
        self.where = where
        self.pos = 0

    def error(self, message: str) -> CorruptDataError:
        return CorruptDataError(f"bad JSON: {message}", where=self.where, offset=self.pos)

    def skip(self) -> None:
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        self.pos = pos

    def value(self, depth: int) -> object:
        if depth > 200:
            raise self.error("nested too deeply")
        self.skip()
        if self.pos >= len(self.text):
            raise self.error("unexpected end of text")
        c = self.text[self.pos]
        if c == "{":
            return self.obj(depth)
        if c == "[":
            return self.array(depth)
        if c == '"':
            return self.string()
        for word, val in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return val
        return self.number()

    def string(self) -> str:
        try:
            s: str
            end: int
            s, end = scanstring(self.text, self.pos + 1, True)
        except json.JSONDecodeError as exc:
            self.pos = exc.pos
            raise self.error(exc.msg) from None
        self.pos = end
        return s

    def number(self) -> int | float:
        m = _NUMBER.match(self.text, self.pos)
        if not m:
            if self.pos >= len(self.text):
                raise self.error("unexpected end of text")
            raise self.error(f"unexpected character {self.text[self.pos]!r}")
        self.pos = m.end()
        token = m.group()
        return int(token) if token.lstrip("-").isdigit() else float(token)

    def obj(self, depth: int) -> dict[Any, Any]:
        self.pos += 1
        result: dict[Any, Any] = {}
        self.skip()
        if self.text.startswith("}", self.pos):
            self.pos += 1
            return result
        while True:
            self.skip()
            if self.text.startswith('"', self.pos):
                key: object = self.string()
            elif self.text.startswith("{", self.pos):
                fields = self.obj(depth + 1)
                if any(isinstance(v, (dict, list)) for v in fields.values()):
                    raise self.error("an object used as a key holds an object or an array")
                key = ObjectKey(sorted(fields.items(), key=lambda kv: str(kv[0])))
            else:
                key = self.number()
                if not isinstance(key, int):
                    raise self.error("object key is neither a string nor an integer")
            self.skip()
            if not self.text.startswith(":", self.pos):
                raise self.error("expected ':' after an object key")
            self.pos += 1
            result[key] = self.value(depth + 1)
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif self.text.startswith("}", self.pos):
                self.pos += 1
                return result
            else:
                raise self.error("expected ',' or '}' in an object")

    def array(self, depth: int) -> list[Any]:
        self.pos += 1
        result: list[Any] = []
        self.skip()
        if self.text.startswith("]", self.pos):
            self.pos += 1
            return result
        while True:
            result.append(self.value(depth + 1))
            self.skip()
            if self.text.startswith(",", self.pos):
                self.pos += 1
            elif self.text.startswith("]", self.pos):
                self.pos += 1
                return result
            else:
                raise self.error("expected ',' or ']' in an array")


def dumps_fastjson(obj: object, pretty: bool = True) -> str:
    """Serialize dicts/lists/scalars the way fastjson 1.x does (see the module docstring).

    Dict order is kept as given; a dict whose keys are all ``int`` is written with bare keys.
    """
    out: list[str] = []
    _dump(obj, 0, pretty, out)
    return "".join(out)


def _dump(obj: object, level: int, pretty: bool, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, float):
        out.append(repr(obj))
    elif isinstance(obj, str):
        out.append(json.dumps(obj, ensure_ascii=False))
    elif isinstance(obj, (dict, ObjectKeyMap)):
        _dump_map(obj, level, pretty, out)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _dump(item, level + 1, pretty, out)
        out.append("]")
    else:
        raise UserError(f"cannot write {type(obj).__name__} as JSON")


def _dump_map(obj: dict[Any, Any] | ObjectKeyMap, level: int, pretty: bool, out: list[str]) -> None:
    if isinstance(obj, ObjectKeyMap):
        out.append("{")
        for i, (key, value) in enumerate(obj):
            if i:
                out.append(",")
            if pretty:
                out.append("\n" + "\t" * (level + 1))
            _dump(dict(key), level + 1, False, out)
            out.append(":")
            _dump(value, level + 1, pretty, out)
        if pretty and obj:
            out.append("\n" + "\t" * level)
        out.append("}")
        return
    items = [(k, v) for k, v in obj.items() if v is not None]
    if not items:
        out.append("{}")
        return
    int_keys = all(isinstance(k, int) and not isinstance(k, bool) for k, _ in items)
    out.append("{")
    for i, (key, value) in enumerate(items):
        if i:
            out.append(",")
        if int_keys:
            out.append(f"{key}:")
        else:
            if pretty:
                out.append("\n" + "\t" * (level + 1))
            out.append(json.dumps(str(key), ensure_ascii=False) + ":")
        _dump(value, level + 1, pretty, out)
    if pretty:
        out.append("\n" + "\t" * level)
    out.append("}")


def java_map_order(keys: Iterable[str | int], initial_table_size: int = 16) -> list[Any]:
    """``keys`` (in insertion order) in the iteration order of a Java HashMap/ConcurrentHashMap
    whose table starts at ``initial_table_size`` buckets and doubles past 75 % load.

    Keys are str (String.hashCode) or int (Integer.hashCode). Within a bucket, insertion order.
    """
    keys = list(keys)
    size = max(1, initial_table_size)
    while len(keys) > size * 3 // 4:
        size *= 2

    def bucket(key: str | int) -> int:
        h = (java_hash(key) if isinstance(key, str) else key) & 0xFFFFFFFF
        return (h ^ (h >> 16)) & (size - 1)

    return [k for _, _, k in sorted((bucket(k), i, k) for i, k in enumerate(keys))]
