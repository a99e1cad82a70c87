"""Capture live traffic from a running cluster into a trace, with mqbench's pure-Python consumer.

``record_trace(consumer, out_path, duration_ms=..., clock_ms=...)`` starts the given (subscribed,
not yet started) ``mqbench.client.Consumer``, receives for ``duration_ms`` of ``clock_ms()`` time (or
until ``messages_max``), and writes every message to an ``mqbench.trace/1`` file. The consumer
should use its own group and ``consume_from="last"``, so that it sees what producers send from now
on and takes nothing away from the real consumer groups (clustering mode gives every group all
messages).

What a trace row keeps of a consumed message:

* ``send_offset_us``: the producer's born timestamp (ms resolution) minus the first recorded one.
  Messages reach the recorder out of born order (several queues, several brokers); they are put back
  in order within ``reorder_window_ms``; one later still is written at the time of the last row
  written (``RecordResult.late_clamped`` counts them), never dropped.
* Messages born more than ``before_start_tolerance_ms`` before the capture started (a delayed
  message sent earlier and delivered now, or a backlog) are not part of the traffic being recorded
  and are skipped (``RecordResult.before_start``).
* ``key`` (``KEYS``), ``tags`` (``TAGS``), user properties (RocketMQ's own properties dropped).
* Delays, where the broker kept them on delivery: ``DELAY`` (level), ``TIMER_DELAY_MS``, or
  ``TIMER_DELIVER_MS`` minus the born time. RocketMQ clears ``DELAY`` when a level message is
  delivered, so level delays are usually lost in a capture; a delayed message also arrives only
  after its delay, so one longer than the capture is not seen at all.
* the body after decompression (what the producer handed to its client).

Cancelling the task (Ctrl-C under ``asyncio.run``) ends the capture early; the messages received
so far are still written and the file completed (``RecordResult.interrupted``).
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mqbench.workloads.message import TraceMessage
from mqbench.workloads.profile import DELAY_LEVELS_MS, DELAY_MAX_MS, RESERVED_PROPERTIES
from mqbench.workloads.reorder import RebasingWriter, ReorderBuffer
from mqbench.workloads.trace import TraceWriter
from mqbench.broker.formats.properties import (
    PROPERTY_DELAY,
    PROPERTY_KEYS,
    PROPERTY_TAGS,
    PROPERTY_TIMER_DELAY_MS,
    PROPERTY_TIMER_DELIVER_MS,
)

RECEIVE_BATCH_MSGS = 256
RECEIVE_WAIT_MS_MAX = 200  # so a quiet topic still ends the capture on time


@dataclass
class RecordResult:
    messages: int = 0
    body_bytes: int = 0
    duration_us: int = 0
    before_start: int = 0
    late_clamped: int = 0
    interrupted: bool = False  # cancelled (Ctrl-C) before the end; what came before was kept
    topics: Counter = field(default_factory=Counter)


def to_trace_message(message) -> tuple[int, TraceMessage]:
    """(born time in us, trace message) for a ``mqbench.client.ReceivedMessage``."""
    properties = dict(message.properties)
    system = {name: properties.pop(name) for name in list(properties) if name in RESERVED_PROPERTIES}
    delay_ms, delay_level = 0, 0
    level = system.get(PROPERTY_DELAY, "")
    if level.isdigit() and 1 <= int(level) <= len(DELAY_LEVELS_MS):
        delay_level = int(level)
        delay_ms = DELAY_LEVELS_MS[delay_level - 1]
    elif system.get(PROPERTY_TIMER_DELAY_MS, "").isdigit():
        delay_ms = int(system[PROPERTY_TIMER_DELAY_MS])
    elif system.get(PROPERTY_TIMER_DELIVER_MS, "").isdigit():
        delay_ms = max(0, int(system[PROPERTY_TIMER_DELIVER_MS]) - message.born_timestamp_ms)
    delay_ms = min(delay_ms, DELAY_MAX_MS)
    keys = " ".join(k for k in system.get(PROPERTY_KEYS, "").split(" ") if k)
    trace = TraceMessage(send_offset_us=0, topic=message.topic, body=message.body, key=keys,
                         tags=system.get(PROPERTY_TAGS, ""), properties=properties, delay_ms=delay_ms,
                         delay_level=delay_level if delay_ms else 0)
    return message.born_timestamp_ms * 1000, trace


async def record_trace(consumer, out_path: str | Path, *, duration_ms: int, clock_ms: Callable[[], int],
                       messages_max: int | None = None, reorder_window_ms: int = 2000,
                       before_start_tolerance_ms: int = 2000, source_detail: str = "",
                       progress: Callable[[int], None] | None = None) -> RecordResult:
    """Record what ``consumer`` receives for ``duration_ms`` into ``out_path``; see the module docstring."""
    result = RecordResult()
    buffer: ReorderBuffer[TraceMessage] = ReorderBuffer(reorder_window_ms * 1000)
    with TraceWriter(out_path, source="recorded", source_detail=source_detail) as writer:
        emit = RebasingWriter(writer, result, progress).emit

        start_ms = clock_ms()
        end_ms = start_ms + duration_ms
        received = 0
        async with consumer:
            try:
                while (remaining_ms := end_ms - clock_ms()) > 0:
                    if messages_max is not None and received >= messages_max:
                        break
                    wanted = RECEIVE_BATCH_MSGS
                    if messages_max is not None:
                        wanted = min(wanted, messages_max - received)
                    batch = await consumer.receive(wanted, timeout_ms=min(RECEIVE_WAIT_MS_MAX, remaining_ms))
                    received += _take(batch, buffer, result, start_ms - before_start_tolerance_ms, emit)
            except asyncio.CancelledError:
                result.interrupted = True  # Ctrl-C: keep what was captured; the file is still completed
        emit(buffer.drain())
    return result


def _take(batch, buffer: ReorderBuffer, result: RecordResult, born_from_ms: int, emit) -> int:
    """Queue received messages for writing; returns how many count as recorded."""
    taken = 0
    for message in batch:
        born_us, trace = to_trace_message(message)
        if born_us < born_from_ms * 1000:
            result.before_start += 1
            continue
        if buffer.is_late(born_us):
            born_us = buffer.released_us
            result.late_clamped += 1
        taken += 1
        emit(buffer.push(born_us, trace))
    return taken
