"""Delayed messages: the 18 delay levels (v4) and the arbitrary-delay timer store (v5).

* ``config.DelayConfig``: the settings (levels, maximum delay, roll window, precision).
* ``rewrite.rewrite_for_delay``: the put-side rewrite of a delayed message (pure).
* ``timerlog``/``wheel``/``index``: the file-backed timer log and timing wheel (RocketMQ 5 layout).
* ``plan``: the sans-I/O delivery windows and their replicated progress markers.
* ``service.DelayService``: the leader-side asyncio delivery service.
"""
from .config import DelayConfig
from .rewrite import rewrite_for_delay

__all__ = ["DelayConfig", "rewrite_for_delay"]
