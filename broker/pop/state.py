"""The replicated side of the POP engine: what every replica knows from the log (checkpoints, acks,
covered offsets, orderly locks, request modes), and the revive decisions made on it.

``PopState`` is ``engine.PopEngine``'s base class; the engine adds the leader's side (handing out,
acks, the merge buffer). Fed in log order on every replica (``observe``, ``set_revive_offset``,
``prune``), so a new leader starts from the same state.

**Checkpoint states** (``TRANSITIONS``): a checkpoint is ``inflight`` from its commit until the
timer delivers it to the revive log at its revive time (``due``); acks only add offsets to its acked
set (``acked_all`` when none is left; a checkpoint's bitmap holds the acks merged before it was
written); the revive service takes a due checkpoint: every acked offset is skipped, the others are
re-put to the group's retry topic with reconsumeTimes + 1 (to ``%DLQ%<group>`` past
``max_reconsume_times``), then it is ``done`` and forgotten. An ack that the leader has accepted
but not yet committed holds the revive (``revive_decision`` waits), so an ack that was answered
is never followed by a redelivery; an ack after the revive is answered but changes nothing
(RocketMQ does the same), ``AckPlan.statuses`` says ``late`` for it.

**Never early**: ``revive_decision`` waits until ``now_ms`` reaches the revive time even if the ck
arrived sooner (a v4 store has no timer: the ck is then on the revive log at once); a checkpoint
with nothing left unacked is skipped at once.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from mqbench.broker.formats.properties import PROPERTY_FIRST_POP_TIME, PROPERTY_POP_CK, PROPERTY_RETRY_TOPIC
from mqbench.broker.formats.record import Message

from . import handles
from .orderly import OrderLocks
from .plans import QueueView
from .records import Ack, CheckPoint, CkKey, OrderLock, RequestMode

PENDING_ACK_RECHECK_MS = 50
ORPHAN_ACK_KEEP_MS = 10 * 60_000

INFLIGHT, DUE, DONE = "inflight", "due", "done"
TRANSITIONS = {
    # (state, event): next state. "acked_all": no offset of the checkpoint is left unacked.
    (INFLIGHT, "acked_some"): INFLIGHT,
    (INFLIGHT, "acked_all"): DONE,
    (INFLIGHT, "delivered"): DUE,
    (DUE, "acked_some"): DUE,
    (DUE, "acked_all"): DONE,
    (DUE, "delivered"): DUE,
    (DUE, "revived"): DONE,
    (DONE, "acked_some"): DONE,
    (DONE, "acked_all"): DONE,
    (DONE, "delivered"): DONE,
    (DONE, "revived"): DONE,
}


@dataclass
class _Entry:
    ck: CheckPoint
    state: str = INFLIGHT
    delivered: tuple[int, int] | None = None     # (revive qid, offset) on the revive log



class PopState:
    """See module doc. ``_pending`` counts the acks the leader accepted and has not seen committed
    (the engine's ``ack`` adds, ``ack_done`` / ``ack_failed`` take off): they hold a revive."""

    def __init__(self, broker_name: str, cluster: str, *, revive_queues: int, max_reconsume_times: int):
        self.broker_name = broker_name
        self.revive_topic = handles.revive_topic(cluster)
        self.revive_queues = revive_queues
        self.max_reconsume_times = max_reconsume_times
        self._cks: dict[CkKey, _Entry] = {}
        self._acked: dict[CkKey, set[int]] = {}
        self._ack_time: dict[CkKey, int] = {}      # revive time of acks whose ck is unknown
        self._done: dict[CkKey, int] = {}          # revived checkpoints (-> revive time): a copy is skipped
        self._pending: dict[CkKey, int] = {}
        self._revive_offsets: dict[int, int] = {}
        self._covered: dict[tuple[str, str, int], set[int]] = {}
        self.orderly = OrderLocks()
        # (topic, group) -> (mode, popShareQueueNum): replicated (``RequestMode`` records)
        self.request_modes: dict[tuple[str, str], tuple[str, int]] = {}

    # --- the replicated state --------------------------------------------------------------------

    def _event(self, entry: _Entry, event: str) -> None:
        entry.state = TRANSITIONS[(entry.state, event)]

    def _ack_event(self, key: CkKey) -> None:
        entry = self._cks.get(key)
        if entry is not None:
            left = set(entry.ck.offsets) - self._acked.get(key, set())
            self._event(entry, "acked_some" if left else "acked_all")

    def observe(self, item: CheckPoint | Ack | OrderLock | RequestMode,
                delivered: tuple[int, int] | None = None) -> None:
        """A committed ck, ack, orderly lock or request mode message (idempotent). ``delivered`` =
        (revive qid, offset) when it was read from the revive log (the timer delivered it), None
        when read where it waits."""
        if isinstance(item, OrderLock):
            self.orderly.observe(item)
            return
        if isinstance(item, RequestMode):
            self.request_modes[(item.topic, item.group)] = (item.mode, item.pop_share_queue_num)
            return
        key = item.key
        if isinstance(item, Ack):
            self._acked.setdefault(key, set()).update(item.offsets)
            # never handed out again from its queue, even if its ck never committed (a put of the
            # same flush that failed): an acked offset is covered as a checkpoint's are
            self._covered.setdefault((item.group, item.topic, item.queue_id), set()).update(item.offsets)
            if key not in self._cks:
                self._ack_time[key] = item.revive_time_ms
            self._ack_event(key)
            return
        if item.offsets:
            self._covered.setdefault((item.group, item.topic, item.queue_id), set()).update(item.offsets)
        if delivered is not None and delivered[1] < self._revive_offsets.get(delivered[0], 0):
            return              # the revive service is past it: done on every replica
        if key in self._done:
            return              # revived already: a second copy of it in the log changes nothing
        entry = self._cks.get(key)
        if entry is None:
            entry = self._cks[key] = _Entry(item if item.revive_qid >= 0 or delivered is None
                                            else replace(item, revive_qid=delivered[0]))
            self._ack_time.pop(key, None)
            if item.bitmap:
                self._acked.setdefault(key, set()).update(item.acked_offsets)
            self._ack_event(key)
        if delivered is not None:
            entry.delivered = delivered
            self._event(entry, "delivered")

    def set_revive_offset(self, revive_qid: int, offset: int) -> None:
        """The revive service's committed progress on revive queue ``revive_qid``: every checkpoint
        delivered below it is done (a follower forgets them here, the leader in ``revived``)."""
        if offset <= self._revive_offsets.get(revive_qid, 0):
            return
        self._revive_offsets[revive_qid] = offset
        for key, entry in list(self._cks.items()):
            if entry.delivered is not None and entry.delivered[0] == revive_qid and entry.delivered[1] < offset:
                del self._cks[key]
                self._acked.pop(key, None)
                self._done[key] = entry.ck.revive_time_ms

    def revive_offset(self, revive_qid: int) -> int:
        return self._revive_offsets.get(revive_qid, 0)

    def prune(self, view: QueueView) -> None:
        """Forget covered offsets the committed consumer offsets passed."""
        for key, offsets in list(self._covered.items()):
            committed = view.consumer_offset(*key)
            if committed > min(offsets):
                left = {o for o in offsets if o >= committed}
                if left:
                    self._covered[key] = left
                else:
                    del self._covered[key]

    def covered(self, group: str, topic: str, queue_id: int) -> frozenset[int]:
        """Offsets of the queue held by committed checkpoints above the committed consumer offset."""
        return frozenset(self._covered.get((group, topic, queue_id), ()))

    def checkpoints(self) -> list[tuple[CheckPoint, str, frozenset[int]]]:
        """Every checkpoint known: (ck, state, acked offsets): what ``inspect`` shows per group."""
        return [(e.ck, e.state, frozenset(self._acked.get(k, ()))) for k, e in self._cks.items()]

    def gc(self, now_ms: int) -> None:
        """Forget acks whose checkpoint is gone (late acks) once well past their revive time."""
        for key, revive_ms in list(self._ack_time.items()):
            if revive_ms + ORPHAN_ACK_KEEP_MS < now_ms:
                self._ack_time.pop(key, None)
                self._acked.pop(key, None)
        for key, revive_ms in list(self._done.items()):
            if revive_ms + ORPHAN_ACK_KEEP_MS < now_ms:
                del self._done[key]

    # --- revive ----------------------------------------------------------------------------------

    def revive_decision(self, ck: CheckPoint, now_ms: int) -> tuple[str, object]:
        """What to do with a checkpoint the timer delivered (module doc)."""
        acked = self._acked.get(ck.key, set())
        unacked = tuple(o for o in ck.offsets if o not in acked)
        if not unacked or ck.key in self._done:
            return ("skip", ())        # nothing to revive (or revived already): no need to wait
        if now_ms < ck.revive_time_ms:
            return ("wait", ck.revive_time_ms)
        if self._pending.get(ck.key):
            return ("wait", now_ms + PENDING_ACK_RECHECK_MS)
        return ("revive", unacked)

    def retry_message(self, ck: CheckPoint, stored: Message, now_ms: int) -> Message:
        """The message to put for an unacked ``stored`` message of ``ck``: on the group's retry
        topic with reconsumeTimes + 1, or on ``%DLQ%<group>`` once past ``max_reconsume_times``."""
        props = {k: v for k, v in stored.properties.items() if k != PROPERTY_POP_CK}
        origin = props.get(PROPERTY_RETRY_TOPIC) if ck.topic.startswith(handles.RETRY_PREFIX) else ck.topic
        origin = origin or ck.topic
        props[PROPERTY_RETRY_TOPIC] = origin
        props.setdefault(PROPERTY_FIRST_POP_TIME, str(ck.pop_time_ms))
        times = stored.reconsume_times + 1
        topic = handles.retry_topic(ck.group, origin) if times <= self.max_reconsume_times \
            else handles.dlq_topic(ck.group)
        return Message(topic=topic, body=stored.body, properties=props, queue_id=0, flag=stored.flag,
                       sysflag=stored.sysflag, born_timestamp_ms=stored.born_timestamp_ms,
                       born_host=stored.born_host, reconsume_times=times)

    def revived(self, ck: CheckPoint, revive_qid: int, next_offset: int) -> None:
        """The revive service is done with ``ck`` (re-puts committed) up to ``next_offset``."""
        entry = self._cks.pop(ck.key, None)
        if entry is not None and entry.state != DONE:
            self._event(entry, "revived")
        self._acked.pop(ck.key, None)
        self._done[ck.key] = ck.revive_time_ms
        self.set_revive_offset(revive_qid, next_offset)
