"""What the broker counts for mqadmin's ``clusterList``, ``statsAll`` and ``consumerProgress``. Sans-I/O.

RocketMQ's ``BrokerStatsManager`` keeps, per stats name and key, a running sum and a call count and
samples them on timers; ``VIEW_BROKER_STATS_DATA`` then reports, for the last minute, hour and day,
``sum`` (messages), ``tps`` (sum per second) and ``avgpt`` (sum per call). Here each ``StatsItem``
samples lazily, whenever it is touched, with time passed in (``now_ms``), into rings of fixed
granularity; a window's figures are the difference between now and the newest sample at least a
window old (or the oldest one, for an item younger than the window).

Stats names (RocketMQ's): ``TOPIC_PUT_NUMS`` (key: topic), ``GROUP_GET_NUMS`` (key: ``topic@group``),
``BROKER_PUT_NUMS`` / ``BROKER_GET_NUMS`` (key: the cluster name). The broker-wide items also keep a
one-second ring of 600 s, for the runtime info's ``putTps``/``getTransferedTps`` (10, 60, 600 s).

Day counters (``msgPutTotalTodayMorning`` and the like) roll over at midnight UTC.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

TOPIC_PUT_NUMS = "TOPIC_PUT_NUMS"
GROUP_GET_NUMS = "GROUP_GET_NUMS"
BROKER_PUT_NUMS = "BROKER_PUT_NUMS"
BROKER_GET_NUMS = "BROKER_GET_NUMS"

MINUTE_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000
#: (granularity ms, samples kept): enough to cover a minute, an hour and a day.
WINDOW_RINGS = ((10_000, 7), (MINUTE_MS, 61), (HOUR_MS, 25))
SECOND_RING = ((1_000, 601),)


@dataclass
class StatsItem:
    """A running ``value`` (messages) and ``times`` (calls) with sampled history (module doc)."""

    created_ms: int
    rings: tuple[tuple[int, int], ...] = WINDOW_RINGS
    value: int = 0
    times: int = 0
    _samples: list[deque[tuple[int, int, int]]] = field(default_factory=list)  # (ms, value, times)

    def __post_init__(self) -> None:
        self._samples = [deque([(self.created_ms, 0, 0)], maxlen=keep) for _, keep in self.rings]

    def _sample(self, now_ms: int) -> None:
        for (granularity_ms, _keep), ring in zip(self.rings, self._samples):
            if now_ms - ring[-1][0] >= granularity_ms:
                ring.append((now_ms, self.value, self.times))

    def add(self, value: int, times: int, now_ms: int) -> None:
        self._sample(now_ms)
        self.value += value
        self.times += times

    def window(self, window_ms: int, now_ms: int) -> dict[str, Any]:
        """``{"sum", "tps", "avgpt"}`` over the last ``window_ms`` (or since the item exists)."""
        self._sample(now_ms)
        # the finest ring that spans the window; start at its newest sample at least a window old
        ring = next((r for (g, keep), r in zip(self.rings, self._samples) if g * (keep - 1) >= window_ms),
                    self._samples[-1])
        start = ring[0]
        for sample in ring:
            if now_ms - sample[0] < window_ms:
                break
            start = sample
        elapsed_ms = now_ms - start[0]
        total, calls = self.value - start[1], self.times - start[2]
        return {"sum": total, "tps": total * 1000.0 / elapsed_ms if elapsed_ms > 0 else 0.0,
                "avgpt": total / calls if calls else 0.0}


class BrokerStats:
    """Every stats item of one broker, the broker-wide totals and the day counters."""

    def __init__(self, cluster: str, now_ms: int) -> None:
        self.cluster = cluster
        self.items: dict[tuple[str, str], StatsItem] = {}
        self.put = StatsItem(now_ms, SECOND_RING + WINDOW_RINGS)
        self.get = StatsItem(now_ms, SECOND_RING + WINDOW_RINGS)
        self._day = now_ms // DAY_MS
        self.put_today_morning = self.put_yesterday_morning = 0
        self.get_today_morning = self.get_yesterday_morning = 0

    def _roll(self, now_ms: int) -> None:
        day = now_ms // DAY_MS
        if day != self._day:
            same = day == self._day + 1
            self.put_yesterday_morning = self.put_today_morning if same else self.put.value
            self.get_yesterday_morning = self.get_today_morning if same else self.get.value
            self.put_today_morning, self.get_today_morning = self.put.value, self.get.value
            self._day = day

    def _item(self, name: str, key: str, now_ms: int) -> StatsItem:
        item = self.items.get((name, key))
        if item is None:
            item = self.items[(name, key)] = StatsItem(now_ms)
        return item

    def record_put(self, topic: str, messages: int, now_ms: int, requests: int = 1) -> None:
        """``messages`` put to ``topic`` by ``requests`` send requests (the calls ``avgpt`` divides by)."""
        self._roll(now_ms)
        self.put.add(messages, requests, now_ms)
        self._item(TOPIC_PUT_NUMS, topic, now_ms).add(messages, requests, now_ms)

    def record_get(self, topic: str, group: str, messages: int, now_ms: int) -> None:
        if messages <= 0:
            return
        self._roll(now_ms)
        self.get.add(messages, 1, now_ms)
        self._item(GROUP_GET_NUMS, f"{topic}@{group}", now_ms).add(messages, 1, now_ms)

    def view(self, name: str, key: str, now_ms: int) -> dict[str, Any] | None:
        """VIEW_BROKER_STATS_DATA: ``{"minute", "hour", "day"}`` windows, or None for an unknown item."""
        if name in (BROKER_PUT_NUMS, BROKER_GET_NUMS):
            item = (self.put if name == BROKER_PUT_NUMS else self.get) if key == self.cluster else None
        else:
            item = self.items.get((name, key))
        if item is None:
            return None
        return {"minute": item.window(MINUTE_MS, now_ms), "hour": item.window(HOUR_MS, now_ms),
                "day": item.window(DAY_MS, now_ms)}

    def group_get_tps(self, topic: str, group: str, now_ms: int) -> float:
        item = self.items.get((GROUP_GET_NUMS, f"{topic}@{group}"))
        return item.window(MINUTE_MS, now_ms)["tps"] if item is not None else 0.0

    def runtime_fields(self, now_ms: int) -> dict[str, str]:
        """The GET_BROKER_RUNTIME_INFO entries clusterList reads: ``putTps``, ``getTransferedTps``
        (and ``getTotalTps``/``getFoundTps``) as ``"t10 t60 t600"``, and the day counters."""
        self._roll(now_ms)

        def tps(item: StatsItem) -> str:
            return " ".join(f"{item.window(w * 1000, now_ms)['tps']:.2f}" for w in (10, 60, 600))

        put_tps, get_tps = tps(self.put), tps(self.get)
        return {"putTps": put_tps, "getTransferedTps": get_tps, "getFoundTps": get_tps, "getTotalTps": get_tps,
                "getMissTps": "0.00 0.00 0.00",
                "msgPutTotalYesterdayMorning": str(self.put_yesterday_morning),
                "msgPutTotalTodayMorning": str(self.put_today_morning), "msgPutTotalTodayNow": str(self.put.value),
                "msgGetTotalYesterdayMorning": str(self.get_yesterday_morning),
                "msgGetTotalTodayMorning": str(self.get_today_morning), "msgGetTotalTodayNow": str(self.get.value),
                "putMessageTimesTotal": str(self.put.times)}
