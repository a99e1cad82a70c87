"""Settings of the delayed-message features (``DelayConfig``), checked on construction.

RocketMQ's names in brackets. Every duration is in milliseconds.

* ``delay_levels`` [messageDelayLevel]: "1s 5s ... 2h", level i is word i; 18 levels by default.
* ``timer_enabled`` [timerWheelEnable]: TIMER_* properties are honoured (v5 stores); a v4 broker
  passes ``False`` and such messages are stored as ordinary messages, as RocketMQ 4.x does.
* ``timer_max_delay_ms`` [timerMaxDelaySec]: a timer further out than this is refused (3 days).
* ``timer_roll_window_ms`` [timerRollWindowSlot x precision]: a timer further than this from its
  store time is parked in the wheel at store time + window and re-written to the timer topic when
  that slot fires (a "roll"), so any maximum delay works and the 32-bit delay field never overflows.
* ``timer_precision_ms`` [timerPrecisionMs]: the width of one wheel slot. Delivery itself is exact
  to the millisecond (the unit holds the exact due time), so this only sets how units are grouped.
* ``poll_interval_ms``: how often the service looks for new delayed messages when nobody calls
  ``notify``; ``deliver_concurrency``: re-puts in flight at once; ``window_max``: the most
  deliveries one progress marker covers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mqbench.broker.formats.tags import DEFAULT_MESSAGE_DELAY_LEVEL, parse_delay_levels
from mqbench.errors import UserError

DAY_MS = 86_400_000
DEFAULT_MAX_DELAY_MS = 3 * DAY_MS
DEFAULT_ROLL_WINDOW_MS = 2 * DAY_MS
# the wheel holds 2 x 604800 slots; a parked unit must stay well inside one turn of it
WHEEL_TURN_SLOTS = 604_800


@dataclass(frozen=True)
class DelayConfig:
    delay_levels: str = DEFAULT_MESSAGE_DELAY_LEVEL
    timer_enabled: bool = True
    timer_max_delay_ms: int = DEFAULT_MAX_DELAY_MS
    timer_roll_window_ms: int = DEFAULT_ROLL_WINDOW_MS
    timer_precision_ms: int = 1000
    poll_interval_ms: int = 20
    deliver_concurrency: int = 64
    window_max: int = 4096
    levels_ms: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels_ms", tuple(parse_delay_levels(self.delay_levels)))
        checks = [
            ("timer_max_delay_ms", self.timer_max_delay_ms, 1),
            ("timer_precision_ms", self.timer_precision_ms, 1),
            ("timer_roll_window_ms", self.timer_roll_window_ms, self.timer_precision_ms),
            ("poll_interval_ms", self.poll_interval_ms, 1),
            ("deliver_concurrency", self.deliver_concurrency, 1),
            ("window_max", self.window_max, 1),
        ]
        for name, value, low in checks:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise UserError(f"delay config {name} must be an integer >= {low}, got {value!r}")
        if not self.levels_ms or any(ms <= 0 for ms in self.levels_ms):
            raise UserError(f"delay levels must be positive durations, got {self.delay_levels!r}")
        # a parked unit sits at most one roll window after its store time; the wheel must not wrap
        if self.timer_roll_window_ms // self.timer_precision_ms >= WHEEL_TURN_SLOTS:
            raise UserError(f"timer_roll_window_ms {self.timer_roll_window_ms} spans "
                            f"{self.timer_roll_window_ms // self.timer_precision_ms} slots; the wheel "
                            f"allows fewer than {WHEEL_TURN_SLOTS} at precision {self.timer_precision_ms} ms")
        if self.timer_roll_window_ms >= 1 << 31:
            raise UserError(f"timer_roll_window_ms {self.timer_roll_window_ms} does not fit the 32-bit delay field")

    @property
    def max_level(self) -> int:
        return len(self.levels_ms)

    def level_delay_ms(self, level: int) -> int:
        """The delay of ``level`` (1-based, capped at the last level as RocketMQ does)."""
        if level < 1:
            raise UserError(f"delay level {level} must be >= 1")
        return self.levels_ms[min(level, self.max_level) - 1]
