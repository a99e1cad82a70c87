"""One message to replay: what the generator yields, a trace row holds and a replayer sends."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class TraceMessage:
    """A message with its intended send time.

    * ``send_offset_us``: when to send it, in microseconds since the start of the trace (a replayer
      paces by this, open loop, and measures latency from it, not from when it got round to sending);
    * ``topic``, ``key`` (``""`` = none; RocketMQ's KEYS), ``tags`` (``""`` = none), ``properties``
      (user properties);
    * ``delay_ms``: how long after sending it should be delivered, 0 = at once;
    * ``delay_level``: the RocketMQ 4.x delay level (1..18) that gives ``delay_ms``, or 0 when the
      delay is arbitrary (RocketMQ 5 timer, ``TIMER_DELAY_MS``) or there is none;
    * ``body``: the payload bytes.
    """

    send_offset_us: int
    topic: str
    body: bytes
    key: str = ""
    tags: str = ""
    properties: dict[str, str] = field(default_factory=dict)
    delay_ms: int = 0
    delay_level: int = 0
