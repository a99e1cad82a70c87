"""Suspended pulls: a consumer's PULL_MESSAGE with nothing new waits until data arrives or it times out.

RocketMQ holds a pull that finds no new message for up to ``suspendTimeoutMillis`` (15 s by default
in clients) and answers as soon as the queue grows; without this, consumers either spin or add a
poll interval to every end-to-end latency.

Contract: ``wait(topic, queue_id, offset, timeout_ms)`` returns True as soon as ``notify`` reports
the queue's max offset above ``offset``, or False when the timeout passes. ``notify`` is called by
the broker after committed data is dispatched. Waiters are kept per queue, so a notify costs only
the waiters of that queue; ``notify_from`` checks every waited-on queue against a max-offset
function (one call per queue someone waits on), or only the waited-on queues among ``keys`` (the
queues that grew: the broker passes what the commit dispatched, so a commit of one message costs
one check, not one per long poll: 48-72 of them in ``mqbench run orders``).
"""
from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Callable, Iterable


class PullWaiters:
    def __init__(self) -> None:
        self._waiters: dict[tuple[str, int], list[tuple[int, asyncio.Future]]] = defaultdict(list)

    def __len__(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    async def wait(self, topic: str, queue_id: int, offset: int, timeout_ms: int) -> bool:
        # one future and one timer handle per wait, no ``asyncio.wait_for``: that added a second
        # future, a done callback and a loop turn to every woken pull (about six woken pulls a
        # message at the rates ``mqbench run`` drives, each a hop of the leader's loop)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        timer = loop.call_later(timeout_ms / 1000, _expire, future)
        key = (topic, queue_id)
        entry = (offset, future)
        self._waiters[key].append(entry)
        try:
            return await future
        finally:
            timer.cancel()
            waiters = self._waiters.get(key)
            if waiters is not None:
                try:
                    waiters.remove(entry)
                except ValueError:
                    pass
                if not waiters:
                    del self._waiters[key]

    def notify(self, topic: str, queue_id: int, max_offset: int) -> None:
        """Wake every waiter of the queue whose offset is below ``max_offset``."""
        for offset, future in self._waiters.get((topic, queue_id), ()):
            if offset < max_offset and not future.done():
                future.set_result(True)

    def notify_from(self, max_offset: Callable[[str, int], int],
                    keys: Iterable[tuple[str, int]] | None = None) -> int:
        """Check every queue someone waits on (or those of ``keys``, the (topic, queue_id) that
        grew) against ``max_offset(topic, queue_id)`` and wake the waiters it satisfies (what the
        broker calls after committed entries were applied). Returns how many waiters were woken."""
        woken = 0
        if keys is None:
            waited = list(self._waiters.items())
        else:
            found = self._waiters.get
            waited = [(key, found(key)) for key in keys if key in self._waiters]
        for (topic, queue_id), waiters in waited:
            top = max_offset(topic, queue_id)
            for offset, future in waiters:
                if offset < top and not future.done():
                    future.set_result(True)
                    woken += 1
        return woken

    def wake_all(self) -> None:
        """Wake everyone (leadership lost, shutting down): they re-check and answer."""
        for waiters in self._waiters.values():
            for _offset, future in waiters:
                if not future.done():
                    future.set_result(True)


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(False)
