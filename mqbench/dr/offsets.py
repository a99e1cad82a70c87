"""``OffsetMap``: which target-queue offset each replicated source-queue offset landed at, and the
translation of consumer offsets from the source cluster to the target cluster. Pure code.

The replicator records every copy it made: source queue ``S`` offset ``s`` was written to target
queue ``T`` at offset ``t``. Copies of one source queue are made in order, so per (S, T) pair the
map keeps runs ``(s0, t0, n)`` meaning ``s0 + i -> t0 + i`` for ``i < n``: one run while nothing
interleaves, a few bytes per failover or interleaving instead of one entry per message.

Translation (``translate``). A consumer group's committed offset ``c`` on source queue ``S`` says
"every message of S below c is consumed". On target queue ``T`` the group may then skip exactly
the copies of consumed messages that come before the first copy of an unconsumed one::

    offset(T) = min t over the copies in T whose s >= c(S)   (the first unconsumed copy), or
                (max t over the copies in T) + 1            when every copy in T is consumed,

taken over the source queues the group has an offset on. It never skips an unconsumed message
(the copy of the first unconsumed message bounds the min). It re-delivers copies of consumed
messages that sit above that copy in T (only when several source queues feed one target queue)
and whatever the group consumed in the source after the offsets were last translated: with the
replicator's one-to-one queue mapping, the duplicates after a switch are that sync lag alone.

Serialized form (``to_json``/``from_json``, schema ``mqbench.dr-offset-map/1``)::

    {"schema": "mqbench.dr-offset-map/1",
     "pairs": [{"source": ["Orders", "broker-a", 0], "target": ["Orders", "broker-b", 0],
                "runs": [[0, 0, 120], [120, 125, 40]]}]}

``from_json`` raises CorruptDataError naming the field at fault.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import NamedTuple

from mqbench.errors import CorruptDataError, InvariantViolation

SCHEMA = "mqbench.dr-offset-map/1"


class QueueKey(NamedTuple):
    topic: str
    broker_name: str
    queue_id: int


@dataclass
class _Pair:
    runs: list[list[int]] = field(default_factory=list)  # [s0, t0, n], s0 and t0 increasing

    def first_at_or_after(self, source_offset: int) -> int | None:
        """t of the first copy whose s >= source_offset, or None when all are below."""
        lo, hi = 0, len(self.runs)
        while lo < hi:  # first run whose last s >= source_offset
            mid = (lo + hi) // 2
            s0, _t0, n = self.runs[mid]
            if s0 + n - 1 < source_offset:
                lo = mid + 1
            else:
                hi = mid
        if lo == len(self.runs):
            return None
        s0, t0, _n = self.runs[lo]
        return t0 + max(0, source_offset - s0)

    @property
    def last_target(self) -> int:
        s0, t0, n = self.runs[-1]
        return t0 + n - 1


class OffsetMap:
    def __init__(self) -> None:
        self._pairs: dict[tuple[QueueKey, QueueKey], _Pair] = {}
        self._next_source: dict[QueueKey, int] = {}

    def record(self, source: QueueKey, source_offset: int, target: QueueKey, target_offset: int) -> None:
        """Remember one copy. Copies of one source queue must be recorded in increasing source offset
        (a copy repeated after a crash may re-record the last offset); InvariantViolation otherwise."""
        self._add_run(source, source_offset, target, target_offset, 1)

    def _add_run(self, source: QueueKey, s0: int, target: QueueKey, t0: int, n: int) -> None:
        following = self._next_source.get(source, 0)
        if s0 < 0 or t0 < 0 or n < 1:
            raise InvariantViolation(f"copy of {source} offset {s0} to {target} offset {t0} (x{n}) is negative")
        if s0 < following - 1:
            raise InvariantViolation(f"copy of {source} offset {s0} recorded after offset {following - 1}")
        pair = self._pairs.setdefault((source, target), _Pair())
        if pair.runs:
            last_s0, last_t0, last_n = pair.runs[-1]
            if s0 == last_s0 + last_n and t0 == last_t0 + last_n:
                pair.runs[-1][2] += n
                self._next_source[source] = s0 + n
                return
            if t0 <= pair.last_target:
                raise InvariantViolation(f"copy into {target} at offset {t0} after offset {pair.last_target}")
        pair.runs.append([s0, t0, n])
        self._next_source[source] = max(following, s0 + n)

    def next_source_offset(self, source: QueueKey) -> int | None:
        """The source offset after the last one copied from ``source``, or None if none was."""
        return self._next_source.get(source)

    def sources(self) -> list[QueueKey]:
        return sorted(self._next_source)

    def copies(self) -> int:
        return sum(run[2] for pair in self._pairs.values() for run in pair.runs)

    def translate(self, committed: dict[QueueKey, int]) -> dict[QueueKey, int]:
        """Target-queue offsets for a group whose source-queue offsets are ``committed`` (see the
        module docstring). Target queues fed only by queues without an offset are left out."""
        unconsumed: dict[QueueKey, int] = {}
        after_last: dict[QueueKey, int] = {}
        for (source, target), pair in sorted(self._pairs.items()):
            if source not in committed or not pair.runs:
                continue
            after_last[target] = max(after_last.get(target, 0), pair.last_target + 1)
            first = pair.first_at_or_after(committed[source])
            if first is not None:
                unconsumed[target] = min(first, unconsumed.get(target, first))
        return {target: unconsumed.get(target, end) for target, end in after_last.items()}

    def to_json(self) -> bytes:
        pairs = [{"source": list(s), "target": list(t), "runs": p.runs} for (s, t), p in sorted(self._pairs.items())]
        return json.dumps({"schema": SCHEMA, "pairs": pairs}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str = "offset map") -> "OffsetMap":
        try:
            doc = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptDataError(f"not JSON: {exc}", where=where) from None
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            raise CorruptDataError(f"schema is not {SCHEMA!r}", where=where)
        pairs = doc.get("pairs")
        if not isinstance(pairs, list):
            raise CorruptDataError("'pairs' must be a list", where=where)
        result = cls()
        runs_found: list[tuple[QueueKey, int, QueueKey, int, int, str]] = []
        for index, entry in enumerate(pairs):
            at = f"pairs[{index}]"
            if not isinstance(entry, dict):
                raise CorruptDataError(f"{at} must be an object", where=where)
            source, target = (_queue_key(entry.get(k), f"{at}.{k}", where) for k in ("source", "target"))
            runs = entry.get("runs")
            if not isinstance(runs, list):
                raise CorruptDataError(f"{at}.runs must be a list", where=where)
            for r, run in enumerate(runs):
                if not (isinstance(run, list) and len(run) == 3 and all(_is_int(v) for v in run)
                        and run[0] >= 0 and run[1] >= 0 and run[2] >= 1):
                    raise CorruptDataError(f"{at}.runs[{r}] must be [source_offset, target_offset, count>=1]",
                                           where=where)
                runs_found.append((source, run[0], target, run[1], run[2], f"{at}.runs[{r}]"))
        # Replayed in copy order (per source queue by source offset), as the replicator recorded them.
        for source, s0, target, t0, n, at in sorted(runs_found, key=lambda x: (x[0], x[1], x[3])):
            try:
                result._add_run(source, s0, target, t0, n)
            except InvariantViolation as exc:
                raise CorruptDataError(f"{at}: {exc}", where=where) from None
        return result


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _queue_key(value: object, at: str, where: str) -> QueueKey:
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and isinstance(value[1], str)
            and _is_int(value[2]) and value[2] >= 0):
        raise CorruptDataError(f"{at} must be [topic, broker_name, queue_id]", where=where)
    return QueueKey(value[0], value[1], value[2])
