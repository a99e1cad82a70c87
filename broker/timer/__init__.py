"""Delayed messages: the 18 delay levels (v4) and the arbitrary-delay timer store (v5).

* ``config.DelayConfig``: the settings (levels, maximum delay, roll window, precision).
* ``rewrite.rewrite_for_delay``: the put-side rewrite of a delayed message (pure).
* ``files``/``index``: the file-backed timer log and timing wheel (RocketMQ 5 layout).
* ``plan``: the delivery windows and their replicated progress markers (pure).
* ``planner.DelayPlanner``: the delivery service's decisions (what is due, windows, recovery's redo),
  sans-I/O: time passed in, the store and timer index injected, state as tables (pure).
* ``service.DelayService``: the planner's thin asyncio adapter on the leader (task, wake-ups only
  when its queues grow, replicated puts, index checkpoints in a thread).
* ``wiring``: ``LeaderDelay`` (a service that follows a group's leadership) and
  ``attach_to_broker`` (the broker integration in one call).
"""
from .config import DelayConfig
from .rewrite import rewrite_for_delay
from .service import DelayService
from .wiring import LeaderDelay, attach_to_broker

__all__ = ["DelayConfig", "DelayService", "LeaderDelay", "attach_to_broker", "rewrite_for_delay"]
