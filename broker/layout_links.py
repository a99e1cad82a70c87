"""How a layout says two rooms are connected: ``LinkSettings`` of a ``[[links]]`` table.

Part of the layout (``broker/layout.py`` parses and validates it); what the settings do to a TCP
stream is modelled, and applied by a userspace delay proxy, in ``mqbench/dr/netem`` (``link.py``
explains each field for a byte stream: latency and jitter per chunk, loss as retransmission delay,
cut as a partition). Pure: a frozen, validated value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from mqbench.errors import UserError


@dataclass(frozen=True)
class LinkSettings:
    """How one direction of a link between two rooms behaves (``mqbench/dr/netem/link.py``)."""

    latency_ms: int = 0
    jitter_ms: int = 0
    loss: float = 0.0
    cut: bool = False
    retransmit_ms: int = 200
    segment_bytes: int = 1448

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms", "retransmit_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 600_000:
                raise UserError(f"link {name} must be an integer number of ms in 0..600000, not {value!r}")
        if not isinstance(self.segment_bytes, int) or not 64 <= self.segment_bytes <= 65536:
            raise UserError(f"link segment_bytes must be an integer in 64..65536, not {self.segment_bytes!r}")
        if isinstance(self.loss, bool) or not isinstance(self.loss, (int, float)) or not 0.0 <= self.loss < 1.0 \
                or math.isnan(self.loss):
            raise UserError(f"link loss must be a probability in [0, 1), not {self.loss!r}")
        if not isinstance(self.cut, bool):
            raise UserError(f"link cut must be true or false, not {self.cut!r}")

    @property
    def transparent(self) -> bool:
        """True when the link adds nothing: the proxy may forward bytes straight through."""
        return self.latency_ms == 0 and self.jitter_ms == 0 and self.loss == 0.0 and not self.cut

    @classmethod
    def from_dict(cls, doc: dict[str, Any], where: str = "link") -> "LinkSettings":
        """Settings from a layout table; unknown keys are an error naming them."""
        known = {"latency_ms", "jitter_ms", "loss", "cut", "retransmit_ms", "segment_bytes"}
        unknown = set(doc) - known
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
        try:
            return cls(**doc)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "jitter_ms": self.jitter_ms, "loss": self.loss, "cut": self.cut,
                "retransmit_ms": self.retransmit_ms, "segment_bytes": self.segment_bytes}


NO_DELAY = LinkSettings()
