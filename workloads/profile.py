"""Workload profiles: what a system's topics carry, at what rate, with which delays, read from TOML.

Built-ins live in ``workloads/profiles/`` (``orders``, ``notifications``, ``iot``). Every key a
profile file may hold is shown below; a shape's own keys go only with that shape, and the
alternatives marked "or" exclude each other::

    name = "orders"
    description = "one line shown by `mqbench workloads list`"

    [rate]                         # aggregate send rate; see mqbench.workloads.rates
    base_msgs_per_s = 3000
    shape = "diurnal"              # constant | diurnal | step | burst
    arrivals = "poisson"           # poisson | paced
    period_s = 86400               # diurnal: period, peak and trough times, trough/peak ratio
    peak_at_s = 72000
    trough_at_s = 14400
    trough_ratio = 0.2
    steps = [[0, 1.0], [300, 3.0]] # step: [at_s, multiplier] pairs
    burst_factor = 6.0             # bursts (any shape; required by "burst")
    burst_length_ms = 30000
    burst_every_ms = 3600000
    burst_first_ms = 600000

    [producers]
    count = 16
    send = "async"                 # sync | async | oneway

    [[topics]]
    name = "order_events"          # RocketMQ topic name: letters, digits, '_', '-', '%', '|'
    queues = 16                    # write/read queue count
    batch = false                  # true: a batch topic (BatchConsumeQueue); producers send batch_msgs per batch
    batch_msgs = 1
    share = 0.85                   # share of all messages sent to this topic (shares are normalised)
    body = { model = "orders" }    # a model of mqbench.workloads.bodies.BODY_STREAMS and its options
    key = { distribution = "body_field", field = "orderId" }  # or none, unique (prefix),
                                   # uniform (keys, prefix), zipf (keys, s, prefix)
    tags_field = "status"          # tag taken from a body field; or
    tags = { values = ["A", "B"], weights = [3, 1] }
    properties = { bizLine = "mall" }              # constant user properties
    properties_from_body = { channel = "source" }  # property name -> body field (dotted path)
    [topics.delay]
    share = 0.1                    # share of this topic's messages that are delayed
    levels = [16]                  # RocketMQ 4.x delay levels (1..18: 1s 5s 10s 30s 1m ... 30m 1h 2h), or
    ms = { distribution = "uniform", min = 60000, max = 3600000 }  # arbitrary delays (5.x timer)
    level_weights = [1.0]          # optional, one per level

    [[consumers]]
    group = "order-fulfilment"
    topics = ["order_events"]
    count = 8                      # consumer instances in the group
    subscription = "*"             # tag expression
    processing_ms = { distribution = "lognormal", median = 4, p99 = 60 }

``load_profile(name_or_path)`` returns a validated ``Profile``; any problem raises ``UserError``
naming the file and the key (``profile orders.toml: topics.order_payment_timeout.delay.levels:
...``). Keys, tags and properties taken from the body must name a field its model writes. Pure:
reading the file is the only I/O.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from mqbench.errors import UserError
from mqbench.workloads.bodies import BODY_STREAMS
from mqbench.workloads.distributions import Distribution, parse_distribution
from mqbench.workloads.rates import ARRIVALS, SHAPES, RateShape
from mqbench.broker.formats.properties import (
    PROPERTY_BUYER_ID,
    PROPERTY_CLUSTER,
    PROPERTY_CONSUME_START_TIME,
    PROPERTY_CORRECTION_FLAG,
    PROPERTY_DELAY,
    PROPERTY_INNER_BASE,
    PROPERTY_INNER_NUM,
    PROPERTY_KEYS,
    PROPERTY_MAX_OFFSET,
    PROPERTY_MAX_RECONSUME_TIMES,
    PROPERTY_MIN_OFFSET,
    PROPERTY_MQ2_FLAG,
    PROPERTY_ORIGIN_MESSAGE_ID,
    PROPERTY_PGROUP,
    PROPERTY_REAL_QID,
    PROPERTY_REAL_TOPIC,
    PROPERTY_RECONSUME_TIME,
    PROPERTY_RETRY_TOPIC,
    PROPERTY_START_DELIVER_TIME,
    PROPERTY_TAGS,
    PROPERTY_TIMER_DELAY_MS,
    PROPERTY_TIMER_DELAY_SEC,
    PROPERTY_TIMER_DELIVER_MS,
    PROPERTY_TIMER_OUT_MS,
    PROPERTY_TRACE_ON,
    PROPERTY_TRANSFER_FLAG,
    PROPERTY_TRAN_MSG,
    PROPERTY_UNIQ_KEY,
    PROPERTY_WAIT,
)

BUILTIN_DIR = Path(__file__).parent / "profiles"

#: RocketMQ's 18 default delay levels (``messageDelayLevel``), level n is index n-1.
DELAY_LEVELS_MS = (1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000,
                   420_000, 480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000)
#: RocketMQ 5's default ``timerMaxDelaySec`` (3 days): longer arbitrary delays are refused at send.
DELAY_MAX_MS = 259_200_000

TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9_%|-]{1,127}$")  # RocketMQ's topic charset and length
GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9_%|-]{1,255}$")
#: Property names RocketMQ reserves for itself (MessageConst); a user property may not reuse them.
RESERVED_PROPERTIES = frozenset({
    PROPERTY_KEYS, PROPERTY_TAGS, PROPERTY_WAIT, PROPERTY_DELAY, PROPERTY_RETRY_TOPIC, PROPERTY_REAL_TOPIC, PROPERTY_REAL_QID, PROPERTY_TRAN_MSG, PROPERTY_PGROUP, PROPERTY_MIN_OFFSET,
    PROPERTY_MAX_OFFSET, PROPERTY_BUYER_ID, PROPERTY_ORIGIN_MESSAGE_ID, PROPERTY_TRANSFER_FLAG, PROPERTY_CORRECTION_FLAG, PROPERTY_MQ2_FLAG,
    PROPERTY_RECONSUME_TIME, PROPERTY_UNIQ_KEY, PROPERTY_MAX_RECONSUME_TIMES, PROPERTY_CONSUME_START_TIME, PROPERTY_TIMER_DELIVER_MS,
    PROPERTY_TIMER_DELAY_SEC, PROPERTY_TIMER_DELAY_MS, PROPERTY_TIMER_OUT_MS, PROPERTY_TRACE_ON, PROPERTY_INNER_NUM, PROPERTY_INNER_BASE,
    PROPERTY_CLUSTER, "SHARDING_KEY", PROPERTY_START_DELIVER_TIME,
})
KEY_DISTRIBUTIONS = ("none", "unique", "uniform", "zipf", "body_field")
SEND_MODES = ("sync", "async", "oneway")

_TOP_KEYS = {"name", "description", "rate", "producers", "topics", "consumers"}
_RATE_KEYS = {"base_msgs_per_s", "shape", "arrivals", "period_s", "peak_at_s", "trough_at_s", "trough_ratio",
              "steps", "burst_factor", "burst_length_ms", "burst_every_ms", "burst_first_ms"}
_TOPIC_KEYS = {"name", "queues", "batch", "batch_msgs", "share", "body", "key", "tags", "tags_field", "properties",
               "properties_from_body", "delay"}
_CONSUMER_KEYS = {"group", "topics", "count", "subscription", "processing_ms"}


@dataclass(frozen=True)
class KeySpec:
    """How a topic's message keys are chosen."""

    distribution: str = "none"
    keys: int = 0  # uniform/zipf: how many distinct keys
    s: float = 1.1  # zipf exponent
    prefix: str = ""
    field: str = ""  # body_field: dotted path into the JSON body

    def describe(self) -> str:
        if self.distribution in ("uniform", "zipf"):
            extra = f" s={self.s:g}" if self.distribution == "zipf" else ""
            return f"{self.distribution} over {self.keys:,} keys{extra}"
        if self.distribution == "body_field":
            return f"body field {self.field}"
        return self.distribution


@dataclass(frozen=True)
class DelaySpec:
    """Which share of a topic's messages are delayed, and by how much."""

    share: float = 0.0
    levels: tuple[int, ...] = ()
    level_weights: tuple[float, ...] = ()
    ms: Distribution | None = None

    def describe(self) -> str:
        if self.share <= 0:
            return "none"
        if self.levels:
            what = "levels " + ", ".join(f"{level} ({format_duration_ms(DELAY_LEVELS_MS[level - 1])})"
                                         for level in self.levels)
        else:
            what = f"{self.ms.describe()} ms"
        return f"{self.share:.0%} delayed, {what}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    queues: int
    share: float  # normalised: the shares of all topics add up to 1
    body_model: str
    body_options: tuple[tuple[str, int], ...] = ()
    batch: bool = False
    batch_msgs: int = 1
    key: KeySpec = KeySpec()
    tags: tuple[tuple[str, float], ...] = ()
    tags_field: str = ""
    properties: tuple[tuple[str, str], ...] = ()
    properties_from_body: tuple[tuple[str, str], ...] = ()
    delay: DelaySpec = DelaySpec()

    @property
    def needs_body_fields(self) -> bool:
        return bool(self.tags_field or self.properties_from_body or self.key.distribution == "body_field")


@dataclass(frozen=True)
class ProducerSpec:
    count: int = 1
    send: str = "sync"


@dataclass(frozen=True)
class ConsumerSpec:
    group: str
    topics: tuple[str, ...]
    count: int = 1
    subscription: str = "*"
    processing_ms: Distribution = field(default_factory=lambda: parse_distribution(0, "processing_ms"))


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    rate: RateShape
    producers: ProducerSpec
    topics: tuple[TopicSpec, ...]
    consumers: tuple[ConsumerSpec, ...]
    source: str = ""
    document: dict = field(default_factory=dict, compare=False, repr=False)  # the TOML as parsed, for trace metadata

    def topic(self, name: str) -> TopicSpec:
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise UserError(f"profile {self.name!r} has no topic {name!r}")

    @property
    def delayed_share(self) -> float:
        """The share of all messages that are delayed."""
        return sum(topic.share * topic.delay.share for topic in self.topics)


def format_duration_ms(ms: float) -> str:
    """``1800000`` -> ``30m``, ``5000`` -> ``5s``, ``250`` -> ``250ms``: how tables show durations."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            value = ms / size
            return f"{value:.0f}{unit}" if abs(value - round(value)) < 0.05 else f"{value:.1f}{unit}"
    return f"{ms:.0f}ms"


def builtin_profiles() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def resolve_profile_path(name_or_path: str | Path) -> Path:
    """A built-in profile name or a path to a ``.toml`` file -> the file; UserError if neither."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        builtin = BUILTIN_DIR / f"{name_or_path}.toml"
        if builtin.exists() and re.match(r"^[A-Za-z0-9_-]+$", str(name_or_path)):
            return builtin
        raise UserError(f"no profile {str(name_or_path)!r}: built-in profiles are {', '.join(builtin_profiles())}, "
                        "or give a path to a .toml file")
    return path


def load_profile(name_or_path: str | Path) -> Profile:
    """A built-in profile by name, or a profile file by path; validated."""
    path = resolve_profile_path(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"profile file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"profile {path} is a directory, not a .toml file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"profile {path} is not valid TOML: {exc}") from None
    return parse_profile(data, source=str(path))


def parse_profile(data: dict, source: str = "<profile>") -> Profile:
    """Validate a profile document (already parsed TOML) into a ``Profile``."""
    where = f"profile {source}"

    def fail(key: str, message: str):
        raise UserError(f"{where}: {key}: {message}")

    _no_unknown(data, _TOP_KEYS, "(top level)", fail)
    for key in ("name", "rate", "topics"):
        if key not in data:
            fail(key, "missing")
    name = data["name"]
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_-]{1,64}$", name):
        fail("name", "must be 1-64 letters, digits, '_' or '-'")
    description = data.get("description", "")
    if not isinstance(description, str):
        fail("description", "must be a string")
    rate = _parse_rate(_table(data, "rate", fail), fail)
    producers = _parse_producers(data.get("producers", {}), fail)
    raw_topics = data["topics"]
    if not isinstance(raw_topics, list) or not raw_topics:
        fail("topics", "must be a non-empty array of tables ([[topics]])")
    topics = [_parse_topic(raw, f"topics[{index}]", fail) for index, raw in enumerate(raw_topics)]
    names = [t.name for t in topics]
    if len(set(names)) != len(names):
        fail("topics", "two topics share a name")
    total_share = sum(t.share for t in topics)
    if total_share <= 0:
        fail("topics", "at least one topic needs a share above 0")
    topics = tuple(TopicSpec(**{**t.__dict__, "share": t.share / total_share}) for t in topics)
    raw_consumers = data.get("consumers", [])
    if not isinstance(raw_consumers, list):
        fail("consumers", "must be an array of tables ([[consumers]])")
    consumers = tuple(_parse_consumer(raw, f"consumers[{index}]", set(names), fail)
                      for index, raw in enumerate(raw_consumers))
    groups = [c.group for c in consumers]
    if len(set(groups)) != len(groups):
        fail("consumers", "two consumer entries share a group; list all its topics in one entry")
    return Profile(name=name, description=description, rate=rate, producers=producers, topics=topics,
                   consumers=consumers, source=source, document=data)


def _parse_rate(raw: dict, fail) -> RateShape:
    _no_unknown(raw, _RATE_KEYS, "rate", fail)
    base = _number(raw, "base_msgs_per_s", "rate", fail, required=True, low=1e-6)
    shape = raw.get("shape", "constant")
    if shape not in SHAPES:
        fail("rate.shape", f"must be one of {', '.join(SHAPES)} (got {shape!r})")
    arrivals = raw.get("arrivals", "poisson")
    if arrivals not in ARRIVALS:
        fail("rate.arrivals", f"must be one of {', '.join(ARRIVALS)} (got {arrivals!r})")
    # Keys of another shape would be silently ignored; say so instead.
    for only, keys in (("diurnal", ("period_s", "peak_at_s", "trough_at_s", "trough_ratio")), ("step", ("steps",))):
        stray = [k for k in keys if k in raw]
        if stray and shape != only:
            fail(f"rate.{stray[0]}", f"only applies to shape = \"{only}\" (this profile's shape is {shape!r})")
    if shape == "burst" and "burst_factor" not in raw:
        fail("rate.burst_factor", "a burst shape needs burst_factor, burst_length_ms and burst_every_ms")
    period_s = _number(raw, "period_s", "rate", fail, default=86400.0, low=1.0)
    peak_at_s = _number(raw, "peak_at_s", "rate", fail, default=0.0)
    trough_at_s = _number(raw, "trough_at_s", "rate", fail, default=peak_at_s + period_s / 2)
    if (peak_at_s - trough_at_s) % period_s == 0:
        fail("rate.trough_at_s", "must differ from peak_at_s (modulo period_s)")
    trough_ratio = _number(raw, "trough_ratio", "rate", fail, default=1.0 if shape != "diurnal" else 0.3)
    if not 0 < trough_ratio <= 1:
        fail("rate.trough_ratio", "must be above 0 and at most 1 (the trough's rate over the peak's)")
    steps: list[tuple[float, float]] = []
    if "steps" in raw:
        if not isinstance(raw["steps"], list) or not raw["steps"]:
            fail("rate.steps", "must be a non-empty list of [at_s, multiplier] pairs")
        for index, step in enumerate(raw["steps"]):
            if (not isinstance(step, list) or len(step) != 2 or not all(_is_number(v) for v in step)
                    or step[0] < 0 or step[1] <= 0):
                fail(f"rate.steps[{index}]", "must be [at_s >= 0, multiplier > 0]")
            steps.append((float(step[0]), float(step[1])))
        if [s[0] for s in steps] != sorted(s[0] for s in steps):
            fail("rate.steps", "at_s values must increase")
    if shape == "step" and not steps:
        fail("rate.steps", "a step shape needs steps = [[at_s, multiplier], ...]")
    burst_factor = _number(raw, "burst_factor", "rate", fail, default=1.0, low=1e-3)
    burst_length_ms = int(_number(raw, "burst_length_ms", "rate", fail, default=0))
    burst_every_ms = int(_number(raw, "burst_every_ms", "rate", fail, default=0))
    burst_first_ms = int(_number(raw, "burst_first_ms", "rate", fail, default=burst_every_ms))
    if shape == "burst" or "burst_factor" in raw:
        if burst_length_ms <= 0 or burst_every_ms <= 0:
            fail("rate", "bursts need burst_factor, burst_length_ms > 0 and burst_every_ms > 0")
        if burst_length_ms > burst_every_ms:
            fail("rate.burst_length_ms", "is longer than burst_every_ms")
    return RateShape(base_msgs_per_s=float(base), shape=shape, arrivals=arrivals, period_s=period_s,
                     peak_at_s=peak_at_s, trough_at_s=trough_at_s, trough_ratio=trough_ratio, steps=tuple(steps),
                     burst_factor=burst_factor, burst_length_ms=burst_length_ms, burst_every_ms=burst_every_ms,
                     burst_first_ms=burst_first_ms)


def _parse_producers(raw, fail) -> ProducerSpec:
    if not isinstance(raw, dict):
        fail("producers", "must be a table")
    _no_unknown(raw, {"count", "send"}, "producers", fail)
    count = _integer(raw, "count", "producers", fail, default=1, low=1, high=100_000)
    send = raw.get("send", "sync")
    if send not in SEND_MODES:
        fail("producers.send", f"must be one of {', '.join(SEND_MODES)}")
    return ProducerSpec(count=count, send=send)


def _parse_topic(raw, key: str, fail) -> TopicSpec:
    if not isinstance(raw, dict):
        fail(key, "must be a table")
    _no_unknown(raw, _TOPIC_KEYS, key, fail)
    name = raw.get("name")
    if not isinstance(name, str) or not TOPIC_NAME_RE.match(name):
        fail(f"{key}.name", f"{name!r} is not a RocketMQ topic name (1-127 letters, digits, '_', '-', '%', '|')")
    key = f"topics.{name}"
    queues = _integer(raw, "queues", key, fail, default=8, low=1, high=65_536)
    batch = raw.get("batch", False)
    if not isinstance(batch, bool):
        fail(f"{key}.batch", "must be true or false")
    batch_msgs = _integer(raw, "batch_msgs", key, fail, default=32 if batch else 1, low=1, high=10_000)
    share = _number(raw, "share", key, fail, default=1.0)
    body = raw.get("body")
    if isinstance(body, str):
        body = {"model": body}
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or body["model"] not in BODY_STREAMS:
        fail(f"{key}.body", f"must be {{ model = NAME }} with NAME one of {', '.join(BODY_STREAMS)}")
    stream = BODY_STREAMS[body["model"]]
    options = []
    for option, value in body.items():
        if option == "model":
            continue
        if option not in stream.options:
            fail(f"{key}.body.{option}", f"unknown option for model {body['model']!r} "
                                         f"(options: {', '.join(stream.options) or 'none'})")
        _default, low, high = stream.options[option]
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            fail(f"{key}.body.{option}", f"must be an integer in {low}..{high}")
        options.append((option, value))
    key_spec = _parse_key(raw.get("key", {"distribution": "none"}), f"{key}.key", fail)
    tags: list[tuple[str, float]] = []
    if "tags" in raw and "tags_field" in raw:
        fail(key, "give tags or tags_field, not both")
    if "tags" in raw:
        spec = raw["tags"]
        if not isinstance(spec, dict) or set(spec) - {"values", "weights"} or not isinstance(spec.get("values"), list):
            fail(f"{key}.tags", "must be { values = [...], weights = [...] }")
        values = spec["values"]
        weights = spec.get("weights", [1.0] * len(values))
        if (not values or not isinstance(weights, list) or len(weights) != len(values)
                or not all(_is_number(w) and w >= 0 for w in weights) or sum(weights) <= 0):
            fail(f"{key}.tags", "needs a non-empty values list and one non-negative weight per value")
        for value in values:
            _check_tag(value, f"{key}.tags", fail)
        tags = list(zip(values, (float(w) for w in weights)))
    tags_field = raw.get("tags_field", "")
    if not isinstance(tags_field, str):
        fail(f"{key}.tags_field", "must be a body field name")
    properties = _string_table(raw.get("properties", {}), f"{key}.properties", fail)
    for prop, value in properties:
        _check_property(prop, value, f"{key}.properties", fail)
    from_body = _string_table(raw.get("properties_from_body", {}), f"{key}.properties_from_body", fail)
    for prop, _field in from_body:
        _check_property(prop, "", f"{key}.properties_from_body", fail)
    for what, path in ([("key.field", key_spec.field)] if key_spec.distribution == "body_field" else []) + \
            ([("tags_field", tags_field)] if tags_field else []) + \
            [(f"properties_from_body.{prop}", path) for prop, path in from_body]:
        if path.split(".")[0] not in stream.fields:
            fail(f"{key}.{what}", f"{path!r} is not a field of {body['model']!r} bodies "
                                  f"(fields: {', '.join(stream.fields)})")
    delay = _parse_delay(raw.get("delay", {}), f"{key}.delay", fail)
    return TopicSpec(name=name, queues=queues, share=share, body_model=body["model"], body_options=tuple(options),
                     batch=batch, batch_msgs=batch_msgs, key=key_spec, tags=tuple(tags), tags_field=tags_field,
                     properties=properties, properties_from_body=from_body, delay=delay)


def _parse_key(raw, key: str, fail) -> KeySpec:
    if isinstance(raw, str):
        raw = {"distribution": raw}
    if not isinstance(raw, dict):
        fail(key, "must be a table like { distribution = \"zipf\", keys = 100000, s = 1.1 }")
    kind = raw.get("distribution", "none")
    if kind not in KEY_DISTRIBUTIONS:
        fail(f"{key}.distribution", f"must be one of {', '.join(KEY_DISTRIBUTIONS)} (got {kind!r})")
    allowed = {"none": set(), "unique": {"prefix"}, "uniform": {"keys", "prefix"}, "zipf": {"keys", "s", "prefix"},
               "body_field": {"field"}}[kind]
    _no_unknown(raw, allowed | {"distribution"}, key, fail)
    keys = _integer(raw, "keys", key, fail, default=0 if kind not in ("uniform", "zipf") else None,
                    low=1 if kind in ("uniform", "zipf") else 0, high=10**12)
    s = _number(raw, "s", key, fail, default=1.1, low=0.01)
    prefix = raw.get("prefix", "")
    field_name = raw.get("field", "")
    if not isinstance(prefix, str) or any(ch in prefix for ch in "\x01\x02 "):
        fail(f"{key}.prefix", "must be a string without spaces or control characters")
    if kind == "body_field" and (not isinstance(field_name, str) or not field_name):
        fail(f"{key}.field", "body_field keys need field = \"name\" (a dotted path into the JSON body)")
    return KeySpec(distribution=kind, keys=keys, s=s, prefix=prefix, field=field_name)


def _parse_delay(raw, key: str, fail) -> DelaySpec:
    if not isinstance(raw, dict):
        fail(key, "must be a table")
    _no_unknown(raw, {"share", "levels", "level_weights", "ms"}, key, fail)
    share = _number(raw, "share", key, fail, default=0.0)
    if not 0 <= share <= 1:
        fail(f"{key}.share", "must be between 0 and 1")
    if share == 0:
        return DelaySpec()
    if ("levels" in raw) == ("ms" in raw):
        fail(key, "a delayed share needs exactly one of levels = [...] (RocketMQ delay levels) or ms = {...}")
    if "levels" in raw:
        levels = raw["levels"]
        if (not isinstance(levels, list) or not levels
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 18 for v in levels)):
            fail(f"{key}.levels", "must list RocketMQ delay levels, integers 1..18")
        weights = raw.get("level_weights", [1.0] * len(levels))
        if (not isinstance(weights, list) or len(weights) != len(levels)
                or not all(_is_number(w) and w >= 0 for w in weights) or sum(weights) <= 0):
            fail(f"{key}.level_weights", "must give one non-negative weight per level")
        return DelaySpec(share=share, levels=tuple(levels), level_weights=tuple(float(w) for w in weights))
    if "level_weights" in raw:
        fail(f"{key}.level_weights", "only goes with levels")
    ms = _distribution(raw["ms"], f"{key}.ms", fail)
    top = ms.max()
    if top is not None and top > DELAY_MAX_MS:
        fail(f"{key}.ms", f"delays up to {top:g} ms exceed RocketMQ's timerMaxDelaySec (3 days)")
    return DelaySpec(share=share, ms=ms)


def _parse_consumer(raw, key: str, topic_names: set[str], fail) -> ConsumerSpec:
    if not isinstance(raw, dict):
        fail(key, "must be a table")
    _no_unknown(raw, _CONSUMER_KEYS, key, fail)
    group = raw.get("group")
    if not isinstance(group, str) or not GROUP_NAME_RE.match(group):
        fail(f"{key}.group", f"{group!r} is not a consumer group name (letters, digits, '_', '-', '%', '|')")
    key = f"consumers.{group}"
    topics = raw.get("topics")
    if not isinstance(topics, list) or not topics:
        fail(f"{key}.topics", "must list the topics the group subscribes to")
    for topic in topics:
        if not isinstance(topic, str) or topic not in topic_names:
            fail(f"{key}.topics", f"{topic!r} is not a topic of this profile")
    count = _integer(raw, "count", key, fail, default=1, low=1, high=100_000)
    subscription = raw.get("subscription", "*")
    if (not isinstance(subscription, str) or not subscription.strip()
            or (subscription.strip() != "*" and not all(part.strip() for part in subscription.split("||")))):
        fail(f"{key}.subscription", "must be a tag expression such as \"*\" or \"PAID || SHIPPED\"")
    processing = _distribution(raw.get("processing_ms", 0), f"{key}.processing_ms", fail)
    return ConsumerSpec(group=group, topics=tuple(topics), count=count, subscription=subscription,
                        processing_ms=processing)


# --- small validators --------------------------------------------------------------------------


def _distribution(raw, key: str, fail) -> Distribution:
    try:
        return parse_distribution(raw, "")
    except UserError as exc:
        fail(key, str(exc))


def _table(data: dict, key: str, fail) -> dict:
    value = data[key]
    if not isinstance(value, dict):
        fail(key, "must be a table")
    return value


def _no_unknown(raw: dict, allowed: set[str], key: str, fail) -> None:
    unknown = set(raw) - allowed
    if unknown:
        fail(key, f"unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(allowed))})")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _number(raw: dict, name: str, key: str, fail, default=None, low: float = 0.0, required: bool = False) -> float:
    if name not in raw:
        if required or default is None:
            fail(f"{key}.{name}", "missing")
        return default
    value = raw[name]
    if not _is_number(value) or value < low or value == float("inf"):
        fail(f"{key}.{name}", f"must be a number >= {low:g} (got {value!r})")
    return float(value)


def _integer(raw: dict, name: str, key: str, fail, default=None, low: int = 0, high: int = 2**31) -> int:
    if name not in raw:
        if default is None:
            fail(f"{key}.{name}", "missing")
        return default
    value = raw[name]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        fail(f"{key}.{name}", f"must be an integer in {low}..{high} (got {value!r})")
    return value


def _string_table(raw, key: str, fail) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        fail(key, "must be a table of strings")
    return tuple(sorted(raw.items()))


def _check_tag(value, key: str, fail) -> None:
    if not isinstance(value, str) or not value or "||" in value or any(ch in value for ch in "\x01\x02\n"):
        fail(key, f"{value!r} is not a tag (non-empty, no '||' or control characters)")


def _check_property(name: str, value: str, key: str, fail) -> None:
    if not name or any(ch in name + value for ch in "\x01\x02"):
        fail(key, f"property {name!r} is empty or holds the control characters RocketMQ uses as separators")
    if name in RESERVED_PROPERTIES:
        fail(key, f"property {name!r} is reserved by RocketMQ")
