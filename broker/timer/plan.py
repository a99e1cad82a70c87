"""Delivery windows and the replicated progress markers: how a new leader knows what was delivered.

The problem: the leader re-puts due messages through the Raft log; if it dies mid-burst, the next
leader must deliver the rest without delivering anything twice. Local files (``delayOffset.json``,
``timercheck``) are not replicated and lag, so they cannot say where the old leader stopped.

The scheme: the service delivers in *windows*. Before delivering window k it puts a progress marker
through the replicated log (topic ``rmq_sys_mqbench_delay_progress``, queue 0) and waits for it to
commit. The marker names exactly what window k covers and where each target queue ended before it:

* per delay level L, the schedule-queue offsets ``[from, to)`` (every level, also untouched ones, so
  the last marker alone holds the whole progress);
* for the timer, keys ``[k_from, k_to)`` and offsets ``[e_from, e_to)``, a key being (fire time,
  timer-queue offset) compared in that order: the window holds every timer-queue entry with offset
  < e_to and key < k_to, minus those with offset < e_from and key < k_from (the previous windows).
  Fire times are a pure function of the replicated record (``index.timer_fire``), so every replica
  computes the same set; the queue offset in the key lets a window end inside a burst due at one
  millisecond;
* ``targets``: each (topic, queue) the window writes to and its max offset before the marker
  (every later write lands at or after it).

Window k+1 starts only after every delivery of window k was acknowledged. So after a failover, only
the last committed marker's window can be incomplete: the new leader first puts a barrier (queue 1)
and waits for it to be applied (then everything the old leader committed is readable), reads the
last marker, scans each named target queue from its recorded offset for the ``MQBENCH_DELAY_SRC``
property of the window's sources, and delivers only the sources it does not find. Windows without
deliveries write no marker: they are recomputed as part of the next window.

Marker body (UTF-8 JSON, schema ``mqbench.delay-progress/1``)::

    {"schema": "mqbench.delay-progress/1", "step": 7,
     "levels": {"1": [0, 12], "2": [5, 5], ...},
     "timer": [k_from_ms, k_from_offset, k_to_ms, k_to_offset, e_from, e_to] | null,
     "targets": [["TopicTest", 0, 1234], ["rmq_sys_wheel_timer", 0, 88]]}

Choosing the last marker (``choose_last_window``): the marker queue should only ever hold the
service's own markers (clients may not write to the topic), but a store may already hold a foreign
record there. Recovery takes the newest marker that decodes, stays within the store (every range
end at or below its queue's max offset) and does not move back behind the marker before it (no
level or timer range starting before the previous one ended); newer records that fail are skipped
with their reason, so a garbage record neither freezes delivery nor replays old windows.

Everything here is pure (no I/O); ``service`` does the reading and putting.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from mqbench.broker.formats.record import Message
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.formats.timer_formats import TIMER_TOPIC
from mqbench.errors import CorruptDataError
from mqbench.broker.formats.properties import PROPERTY_KEYS

from .config import DelayConfig

PROGRESS_TOPIC = "rmq_sys_mqbench_delay_progress"
MARKER_QUEUE = 0
BARRIER_QUEUE = 1
MARKER_SCHEMA = "mqbench.delay-progress/1"


@dataclass(frozen=True, order=True)
class TimerEntry:
    """One indexed timer: when it fires, its timer-queue offset, and whether it is a roll."""
    fire_ms: int
    queue_offset: int
    rolled: bool = False


def timer_fire(due_ms: int, store_ms: int, config: DelayConfig) -> tuple[int, bool]:
    """(fire time, rolled) of a timer record (``index`` module doc: placement). Never before ``due_ms`` unless rolled."""
    write_ms = store_ms - store_ms % config.timer_precision_ms
    if due_ms - store_ms > config.timer_roll_window_ms:
        return store_ms + config.timer_roll_window_ms, True
    return max(due_ms, write_ms), False


@dataclass
class Progress:
    """Where delivery stands: next schedule-queue offset per level; the timer cursor (every entry
    below ``timer_offset`` whose key (fire ms, queue offset) is below ``timer_from`` is delivered;
    None before the first step)."""
    levels: dict[int, int] = field(default_factory=dict)
    timer_from: tuple[int, int] | None = None
    timer_offset: int = 0
    step: int = 0


@dataclass
class Window:
    """One window of deliveries and the marker that announces it (see module doc)."""
    step: int
    levels: dict[int, tuple[int, int]]
    timer: tuple[int, int, int, int, int, int] | None     # k_from (2), k_to (2), e_from, e_to
    targets: list[tuple[str, int, int]]

    def progress_after(self) -> Progress:
        timer_from, timer_offset = ((self.timer[2], self.timer[3]), self.timer[5]) if self.timer else (None, 0)
        return Progress({lvl: rng[1] for lvl, rng in self.levels.items()}, timer_from, timer_offset, self.step + 1)

    @property
    def level_sources(self) -> int:
        return sum(b - a for a, b in self.levels.values())


def encode_marker(window: Window) -> bytes:
    doc = {"schema": MARKER_SCHEMA, "step": window.step,
           "levels": {str(lvl): [a, b] for lvl, (a, b) in sorted(window.levels.items())},
           "timer": list(window.timer) if window.timer is not None else None,
           "targets": [[t, q, s] for t, q, s in window.targets]}
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


def _int(value: object, what: str, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise CorruptDataError(f"progress marker {what} is {value!r}, not an integer", where=where)
    return value


def decode_marker(body: bytes, *, where: str = PROGRESS_TOPIC) -> Window:
    """The window of a marker body; CorruptDataError naming the bad field otherwise."""
    try:
        doc = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptDataError(f"progress marker is not JSON ({exc})", where=where) from None
    if not isinstance(doc, dict) or doc.get("schema") != MARKER_SCHEMA:
        raise CorruptDataError(f"progress marker schema is not {MARKER_SCHEMA}", where=where)
    levels_doc, targets_doc, timer_doc = doc.get("levels"), doc.get("targets"), doc.get("timer")
    if not isinstance(levels_doc, dict) or not isinstance(targets_doc, list):
        raise CorruptDataError("progress marker needs 'levels' (object) and 'targets' (list)", where=where)
    levels = {}
    for key, rng in levels_doc.items():
        if not key.isdigit() or not isinstance(rng, list) or len(rng) != 2:
            raise CorruptDataError(f"progress marker level {key!r}: {rng!r} is not [from, to]", where=where)
        a, b = _int(rng[0], f"level {key} start", where), _int(rng[1], f"level {key} end", where)
        if not 0 <= a <= b:
            raise CorruptDataError(f"progress marker level {key}: [{a}, {b}) is not a range", where=where)
        levels[int(key)] = (a, b)
    timer: tuple[int, int, int, int, int, int] | None = None
    if timer_doc is not None:
        if not isinstance(timer_doc, list) or len(timer_doc) != 6:
            raise CorruptDataError(f"progress marker timer {timer_doc!r} is not "
                                   "[k_from_ms, k_from_offset, k_to_ms, k_to_offset, e_from, e_to]", where=where)
        t = [_int(v, "timer field", where) for v in timer_doc]
        timer = (t[0], t[1], t[2], t[3], t[4], t[5])
        if timer[0:2] > timer[2:4] or not 0 <= timer[4] <= timer[5] or timer[1] < 0 or timer[3] < 0:
            raise CorruptDataError(f"progress marker timer {timer_doc!r} is not two ranges", where=where)
    targets = []
    for item in targets_doc:
        if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str):
            raise CorruptDataError(f"progress marker target {item!r} is not [topic, queue, offset]", where=where)
        targets.append((item[0], _int(item[1], "target queue", where), _int(item[2], "target offset", where)))
    return Window(_int(doc.get("step"), "step", where), levels, timer, targets)


def marker_problem(window: Window, previous: Window | None, max_offset: Callable[[str, int], int]) -> str | None:
    """Why ``window`` cannot be the service's own latest marker (see module doc), or None.
    ``max_offset(topic, queue)`` is the store's; ``previous`` the decodable marker before it."""
    for level, (_, b) in window.levels.items():
        if b > max_offset(SCHEDULE_TOPIC, level - 1):
            return f"level {level} range ends at {b}, past the schedule queue's end"
    if window.timer is not None and window.timer[5] > max_offset(TIMER_TOPIC, 0):
        return f"timer range ends at {window.timer[5]}, past the timer queue's end"
    for topic, queue_id, offset in window.targets:
        if not 0 <= offset <= max_offset(topic, queue_id):
            return f"target {topic}/{queue_id}@{offset} is past that queue's end"
    if previous is None:
        return None
    for level, (a, _) in window.levels.items():
        if level in previous.levels and a < previous.levels[level][1]:
            return f"level {level} starts at {a}, before the previous marker's end {previous.levels[level][1]}"
    if window.timer is not None and previous.timer is not None and (
            window.timer[4] < previous.timer[5] or window.timer[0:2] < previous.timer[2:4]):
        return "its timer range starts before the previous marker's end"
    return None


def choose_last_window(candidates: list[tuple[int, Window | str]], max_offset: Callable[[str, int], int]
                       ) -> tuple[Window | None, list[tuple[int, str]]]:
    """The newest acceptable marker of ``candidates`` ((queue offset, window or why it does not
    decode), newest first) and the (offset, reason) of every newer one refused (module doc)."""
    refused: list[tuple[int, str]] = []
    decoded = [(off, w) for off, w in candidates if isinstance(w, Window)]
    for off, w in candidates:
        if not isinstance(w, Window):
            refused.append((off, w))
            continue
        previous = next((p for o, p in decoded if o < off), None)
        problem = marker_problem(w, previous, max_offset)
        if problem is None:
            return w, refused
        refused.append((off, problem))
    return None, refused


def marker_message(window: Window, *, now_ms: int) -> Message:
    return Message(topic=PROGRESS_TOPIC, body=encode_marker(window), queue_id=MARKER_QUEUE,
                   properties={PROPERTY_KEYS: f"step-{window.step}"}, born_timestamp_ms=now_ms)


def barrier_message(*, now_ms: int, who: str) -> Message:
    return Message(topic=PROGRESS_TOPIC, body=json.dumps({"takeover": who, "at_ms": now_ms}).encode(),
                   queue_id=BARRIER_QUEUE, born_timestamp_ms=now_ms)

