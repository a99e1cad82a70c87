"""Messages from a profile, in send order, lazily: what `mqbench run` replays and `workloads generate` writes.

``generate_messages(profile, seed, count=None, duration_ms=None)`` yields ``TraceMessage`` objects with
non-decreasing ``send_offset_us``, stopping after ``count`` messages or at ``duration_ms`` (whichever
comes first; endless when neither is given). It is deterministic: the same profile and seed give the
same messages, bit for bit, on every machine and Python run. Every random choice comes from
``random.Random`` streams derived from ``seed`` by purpose (arrivals, topic choice, and per topic:
bodies, keys, tags, delays), so that, for example, changing a topic's delay share does not change
its bodies or the arrival times. No clock is read: the caller paces the messages.

``part=(i, n)`` (``n > 1``) is part ``i`` of ``n`` independent streams of the same profile: every
random stream is derived from ``seed`` and the part too, so each part is reproducible, has the
profile's shares and models, and costs only its own messages. Producer workers that pace messages
themselves (at a rate) each generate their own part; taking every ``n``-th message of one stream
instead cost each worker all ``n`` workers' messages. A part's send offsets follow the whole rate
shape, so parts are not for as-recorded timing. ``(0, 1)`` is the plain stream.
"""
from __future__ import annotations

import itertools

import json
import random
from typing import Iterator

from mqbench.errors import UserError
from mqbench.workloads.bodies import iter_bodies, iter_bodies_with_fields
from mqbench.workloads.distributions import weighted_picker, zipf_index
from mqbench.workloads.message import TraceMessage
from mqbench.workloads.profile import DELAY_LEVELS_MS, DELAY_MAX_MS, Profile, TopicSpec
from mqbench.workloads.rates import iter_arrivals_us

#: Bumped when the same profile and seed would produce different messages; recorded in traces.
GENERATOR_VERSION = "mqbench.generator/1"


def _rng(seed: int | str, *purpose: str) -> random.Random:
    # Seeding with a string hashes it with SHA-512 (random.seed version 2), independent of
    # PYTHONHASHSEED, so each purpose gets its own reproducible stream.
    return random.Random("/".join([str(seed), *purpose]))


class _TopicStream:
    """The per-topic half of generation: bodies, keys, tags, properties, delays."""

    def __init__(self, topic: TopicSpec, seed: int | str):
        self.topic = topic
        rng = _rng(seed, "body", topic.name)
        options = dict(topic.body_options)
        self.bodies = iter_bodies_with_fields(topic.body_model, rng, **options) if topic.needs_body_fields \
            else iter_bodies(topic.body_model, rng, **options)
        self.key_rng = _rng(seed, "key", topic.name)
        self.tag_rng = _rng(seed, "tags", topic.name)
        self.delay_rng = _rng(seed, "delay", topic.name)
        self.unique = 0
        self.tag_values = [tag for tag, _ in topic.tags]
        # rng.choices(values, weights)[0], the same draws with the weights summed once
        self.pick_tag = weighted_picker(self.tag_values, [w for _, w in topic.tags]) if topic.tags else None
        self.pick_level = weighted_picker(topic.delay.levels, topic.delay.level_weights) \
            if topic.delay.levels else None

    def message(self, send_offset_us: int) -> TraceMessage:
        topic = self.topic
        if topic.needs_body_fields:
            body, fields = next(self.bodies)
        else:
            body, fields = next(self.bodies), None
        properties = dict(topic.properties)
        for name, path in topic.properties_from_body:
            value = _field(fields, path)
            if value != "":
                properties[name] = value
        if topic.tags_field:
            tags = _field(fields, topic.tags_field)
        elif self.tag_values:
            tags = self.pick_tag(self.tag_rng)
        else:
            tags = ""
        delay_ms, delay_level = self._delay()
        return TraceMessage(send_offset_us=send_offset_us, topic=topic.name, body=body, key=self._key(fields),
                            tags=tags, properties=properties, delay_ms=delay_ms, delay_level=delay_level)

    def _key(self, fields) -> str:
        spec = self.topic.key
        kind = spec.distribution
        if kind == "none":
            return ""
        if kind == "body_field":
            return _field(fields, spec.field)
        if kind == "unique":
            self.unique += 1
            return f"{spec.prefix}{self.unique}"
        if kind == "uniform":
            return f"{spec.prefix}{self.key_rng.randrange(spec.keys)}"
        return f"{spec.prefix}{zipf_index(self.key_rng, spec.keys, spec.s)}"

    def _delay(self) -> tuple[int, int]:
        spec = self.topic.delay
        if spec.share <= 0:
            return 0, 0
        # Always one draw for "is it delayed" so the stream stays aligned whatever the answer.
        if self.delay_rng.random() >= spec.share:
            return 0, 0
        if spec.levels:
            level = self.pick_level(self.delay_rng)
            return DELAY_LEVELS_MS[level - 1], level
        return max(1, min(DELAY_MAX_MS, int(spec.ms.sample(self.delay_rng)))), 0


def _field(fields, path: str) -> str:
    """The value at a dotted ``path`` of a parsed JSON body, as text; ``""`` when absent."""
    value = fields
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return ""
        value = value[part]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def generate_messages(profile: Profile, seed: int, count: int | None = None, duration_ms: int | None = None,
                      shape_start_ms: int = 0, part: tuple[int, int] = (0, 1),
                      timed: bool = True) -> Iterator[TraceMessage]:
    """Messages of ``profile`` in send order, lazily; see the module docstring for the contract.

    ``shape_start_ms`` is where on the rate shape's time axis the trace starts (e.g. 20 h in for a
    diurnal profile's evening peak); offsets still count from 0.

    ``timed=False`` is for a replayer that paces at its own rate (``mqbench run --rate N``): the
    rate shape's arrival times are not drawn (about a tenth of the cost of a message) and every
    ``send_offset_us`` is 0. The messages are otherwise the same, in the same order (the arrivals
    draw from their own random stream); ``duration_ms`` needs the times, so it needs ``timed``.
    """
    index, parts = part
    if parts < 1 or not 0 <= index < parts:
        raise UserError(f"part {index} of {parts} does not exist")
    if count is not None and count <= 0:
        return
    if parts > 1:
        seed = f"{seed}/part{index}of{parts}"   # _rng hashes the text: one more purpose level
    streams = [_TopicStream(topic, seed) for topic in profile.topics]
    pick_stream = weighted_picker(streams, [topic.share for topic in profile.topics])  # rng.choices(streams, weights)[0]
    choose_rng = _rng(seed, "topic")
    duration_us = None if duration_ms is None else duration_ms * 1000
    produced = 0
    if not timed and duration_ms is not None:
        raise UserError("a duration cuts messages by their send times: it needs timed messages")
    arrivals = iter_arrivals_us(profile.rate, _rng(seed, "arrivals"), shape_start_ms) if timed \
        else itertools.repeat(0)
    for offset_us in arrivals:
        if duration_us is not None and offset_us >= duration_us:
            return
        stream = streams[0] if len(streams) == 1 else pick_stream(choose_rng)
        yield stream.message(offset_us)
        produced += 1
        if count is not None and produced >= count:
            return
