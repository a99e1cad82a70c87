"""Topic and consumer-group name rules (RocketMQ ``TopicValidator``), and the system topic names.

A valid name uses only ``%|a-zA-Z0-9_-``, so it can never hold ``/``, ``.`` or ``..`` and cannot
reach outside the store folder when used as a directory name (``consumequeue/{topic}/``).
Lengths: ordinary topics up to 127 characters; retry (``%RETRY%``) and dead-letter (``%DLQ%``)
topics up to 255, since their names embed a group name; group names up to 255.
System topics (``SCHEDULE_TOPIC_XXXX``, ``rmq_sys_*``, ``RMQ_SYS_*``...) are valid names: the
broker stores them. ``client_may_send`` says which ones a client may not send to (RocketMQ's
``NOT_ALLOWED_SEND_TOPIC_SET`` and every ``rmq_sys_*`` topic: the timer wheel and mqbench's delay
progress topic are the broker's own state); ``validate_send_topic`` raises for them.
"""
from __future__ import annotations

import re

from mqbench.errors import UserError

TOPIC_MAX_LENGTH = 127
RETRY_DLQ_TOPIC_MAX_LENGTH = 255
GROUP_MAX_LENGTH = 255
RETRY_GROUP_TOPIC_PREFIX = "%RETRY%"
DLQ_GROUP_TOPIC_PREFIX = "%DLQ%"
LMQ_PREFIX = "%LMQ%"
SYSTEM_TOPIC_PREFIX = "rmq_sys_"

AUTO_CREATE_TOPIC_KEY_TOPIC = "TBW102"
SCHEDULE_TOPIC = "SCHEDULE_TOPIC_XXXX"
TIMER_TOPIC = "rmq_sys_wheel_timer"
TRANS_HALF_TOPIC = "RMQ_SYS_TRANS_HALF_TOPIC"
TRANS_OP_HALF_TOPIC = "RMQ_SYS_TRANS_OP_HALF_TOPIC"

SYSTEM_TOPICS = frozenset({
    AUTO_CREATE_TOPIC_KEY_TOPIC, SCHEDULE_TOPIC, "SCHEDULE_TOPIC_XXXX_V2", "BenchmarkTest", TRANS_HALF_TOPIC,
    "RMQ_SYS_TRACE_TOPIC", TRANS_OP_HALF_TOPIC, "TRANS_CHECK_MAX_TIME_TOPIC", "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
})
NOT_ALLOWED_SEND_TOPICS = frozenset({
    SCHEDULE_TOPIC, "SCHEDULE_TOPIC_XXXX_V2", TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC, "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC", "OFFSET_MOVED_EVENT",
})

_VALID = re.compile(r"[%|a-zA-Z0-9_-]+")


def _check_name(kind: str, name: object, max_length: int) -> str:
    if not isinstance(name, str):
        raise UserError(f"{kind} name must be text, got {type(name).__name__}")
    if not name.strip():
        raise UserError(f"{kind} name is empty")
    if not _VALID.fullmatch(name):
        bad = next(c for c in name if not _VALID.fullmatch(c))
        raise UserError(f"{kind} name {name[:80]!r} has the illegal character {bad!r} "
                        f"(allowed: letters, digits, %, |, _ and -)")
    if len(name) > max_length:
        raise UserError(f"{kind} name of {len(name)} characters is too long (max {max_length})")
    return name


_VALID_TOPICS: set[str] = set()      # names validate_topic accepted (a pure function of the name)
_VALID_TOPICS_MAX = 65_536


def validate_topic(name: object) -> str:
    """Return ``name`` if RocketMQ accepts it as a topic, else raise UserError naming the problem."""
    if type(name) is str and name in _VALID_TOPICS:     # checked once per name: a send checks it twice
        return name
    limit = TOPIC_MAX_LENGTH
    if isinstance(name, str) and name.startswith((RETRY_GROUP_TOPIC_PREFIX, DLQ_GROUP_TOPIC_PREFIX)):
        limit = RETRY_DLQ_TOPIC_MAX_LENGTH
    return _remember(_VALID_TOPICS, _check_name("topic", name, limit))


_VALID_GROUPS: set[str] = set()      # names validate_group accepted (as _VALID_TOPICS)


def validate_group(name: object) -> str:
    """Return ``name`` if RocketMQ accepts it as a consumer/producer group, else raise UserError."""
    if type(name) is str and name in _VALID_GROUPS:     # a pull's offset note and every offset of a
        return name                                     # snapshot, applied on every replica, check it
    return _remember(_VALID_GROUPS, _check_name("group", name, GROUP_MAX_LENGTH))


def _remember(accepted: set[str], checked: str) -> str:
    """Add a name ``_check_name`` accepted to ``accepted`` (emptied once it holds
    ``_VALID_TOPICS_MAX`` names, so a stream of new names cannot grow it) and return it."""
    if type(checked) is str:
        if len(accepted) >= _VALID_TOPICS_MAX:
            accepted.clear()
        accepted.add(checked)
    return checked


def client_may_send(name: str) -> bool:
    """May a client send to this (valid) topic? Not to an internal one (module doc)."""
    return name not in NOT_ALLOWED_SEND_TOPICS and not name.startswith(SYSTEM_TOPIC_PREFIX)


def validate_send_topic(name: object) -> str:
    """``validate_topic`` plus RocketMQ's refusal of client sends to internal topics."""
    validate_topic(name)
    if not client_may_send(name):  # type: ignore[arg-type]
        raise UserError(f"sending to the system topic {name!r} is forbidden")
    return name  # type: ignore[return-value]


def is_system_topic(name: str) -> bool:
    return name in SYSTEM_TOPICS or name.startswith(SYSTEM_TOPIC_PREFIX)


def retry_topic(group: str) -> str:
    return RETRY_GROUP_TOPIC_PREFIX + validate_group(group)


def dlq_topic(group: str) -> str:
    return DLQ_GROUP_TOPIC_PREFIX + validate_group(group)


def is_safe_path_component(name: str) -> bool:
    """True when ``name`` can be used as one directory name inside a store (no separators, no
    ``.``/``..``, no NUL). Used when reading foreign stores whose folder names we did not write."""
    return bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name and "\0" not in name
