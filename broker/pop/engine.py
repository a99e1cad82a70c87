"""The POP engine: RocketMQ's pop / ack / change-invisible-time / revive, as a state table without I/O.

Who calls what (the broker's adapter is ``broker/pop/service.py``; its handlers are
``broker/server/handlers_pop.py``; a gRPC endpoint calls the same adapter)::

    engine = PopEngine(broker_name, cluster, revive_queues=8, max_reconsume_times=16, merge_window_ms=1000)
    # every replica, in log order, for every committed ck/ack/oLock message (from the timer topic,
    # where a ck waits for its deliver time, and from the revive log, where the timer puts it):
    engine.observe(item, delivered=None | (revive_qid, revive_log_offset))
    engine.set_revive_offset(revive_qid, offset)      # the revive service's committed progress
    engine.prune(view)                                # forget what the consumer offsets passed
    # leader, per request (view: a QueueView over this replica's store; now_ms: the broker clock):
    plan = engine.pop(PopRequest(...), view, now_ms, rand)   # -> PopPlan: messages + handles;
    #   checkpoints / order locks to put before answering (most checkpoints wait in the merge
    #   buffer instead: ``spans``), then engine.pop_done(plan) or engine.pop_failed(plan)
    plan = engine.ack(group, topic, [extra_info...], now_ms, view)   # -> AckPlan: ack/bAck records
    #   to put, offset commits (orderly), tickets: acks merged in the buffer, durable after a flush
    engine.ack_done(plan) / engine.ack_failed(plan)
    flush = engine.flush(now_ms)        # -> spans.FlushPlan: what the merge buffer must write now
    durable, failed = engine.flush_done(flush, written=True|False, committed=True|False,
                                        unwritten={ck keys whose put failed})   # tickets
    plan = engine.change_invisible_time(group, topic, extra_info, invisible_ms, now_ms, view)
    #   -> ChangePlan: a one-message ck (or the orderly lock) to put FIRST, then the ack of the old handle
    engine.change_done(plan) / engine.change_failed(plan)
    engine.peek(group, topic, queue_id, max_msgs, view, init_mode) -> [Message]    # no checkpoint
    engine.has_message(group, topic, queue_id, view, init_mode) -> bool            # NOTIFICATION
    # leader, the revive service, for each ck the timer delivered to revive queue q, in order:
    decision = engine.revive_decision(ck, now_ms)    # ("wait", until_ms) | ("skip", ()) |
    #                                                  ("revive", unacked offsets)
    msg = engine.retry_message(ck, stored_msg, now_ms)   # %RETRY%<group>_<topic>, or %DLQ%
    engine.revived(ck, revive_qid, next_revive_offset)   # after the re-puts committed
    engine.leader_changed()                           # drop leader-only memory (spans, buffer)

A receipt handle is RocketMQ's ``extraInfo`` (``handles``); ck/ack messages are ``records``.

The replicated state and the revive decisions (checkpoint states, "never early") are
``state.PopState``, this engine's base class: read its module doc.

**Queues handed out** (``spans``: the leader's cursors, the merge buffer and the consumer offset
it commits; read its module doc for what a failover costs and what an ack's answer promises).
**Covered offsets** (replicated): every replica keeps, per queue, the offsets that committed
checkpoints hold, and those that committed acks name, above the committed consumer offset; a new
leader's cursor skips them (their unacked messages come back through the revive, after their
invisible time; acked ones never). An ack of a checkpoint being written is an ack record that waits
for it (``AckPlan.after``: the adapter puts it once that checkpoint is committed).
With ``queue_id`` -1 the queues of the topic are tried from ``rand % n`` on, and the group's retry
topic first when ``rand % 5 == 0``, else last (``PopMessageProcessor``).

**Orderly pop** (``orderly``): one holder per queue, the lock replicated as an ``oLock`` record
(again with its bitmap for an ack out of order), so a failover keeps the queue locked for its
holder and never hands out what was acked under it; no checkpoint (reviveQid 999, as RocketMQ).
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from mqbench.broker.formats.record import Message
from mqbench.errors import UserError

from . import handles
from .plans import (INIT_MODE_MAX, INIT_MODE_MIN, AckPlan, ChangePlan, Popped, PopPlan, PopRequest,
                    QueueView)
from .records import Ack, CheckPoint, CkKey, OrderLock
from .spans import BUFFERED, MERGE_WINDOW_MS, WRITING, WRITTEN, Cursor, FlushPlan, Spans
from .state import DONE, PopState
from mqbench.broker.formats.properties import PROPERTY_POP_CK, PROPERTY_TAGS

__all__ = ["INIT_MODE_MAX", "INIT_MODE_MIN", "AckPlan", "ChangePlan", "PopEngine", "PopPlan", "PopRequest",
           "Popped", "QueueView"]

MAX_RECONSUME_TIMES = 16
COVERED_READS_MAX = 8        # reads past covered offsets per queue and pop


class PopEngine(PopState):
    """See module doc (and ``state.PopState`` for the replicated half)."""

    def __init__(self, broker_name: str, cluster: str, *, revive_queues: int = 8,
                 max_reconsume_times: int = MAX_RECONSUME_TIMES, merge_window_ms: int = MERGE_WINDOW_MS):
        super().__init__(broker_name, cluster, revive_queues=revive_queues, max_reconsume_times=max_reconsume_times)
        self.spans = Spans(merge_window_ms)

    # --- leadership ------------------------------------------------------------------------------

    def leader_changed(self) -> None:
        """Leader memory goes: spans and the merge buffer (the committed offsets and the covered
        offsets say where to go on), pending acks; orderly locks stay (replicated)."""
        self.spans.clear()
        self.orderly.leader_changed()
        self._pending.clear()

    def commits_failed(self, commits: list[tuple[str, str, int, int]]) -> None:
        """Offset commits of an orderly ack did not go through: pops go by the store's offsets again."""
        self.orderly.commits_failed(commits)

    # --- pop -------------------------------------------------------------------------------------

    def revive_qid_for(self, queue_id: int) -> int:
        return queue_id % self.revive_queues

    def _start(self, view: QueueView, group: str, topic: str, queue_id: int, init_mode: int) -> int:
        committed = view.consumer_offset(group, topic, queue_id)
        lo = view.min_offset(topic, queue_id)
        if committed < 0:
            committed = lo if init_mode == INIT_MODE_MIN or topic.startswith(handles.RETRY_PREFIX) \
                else view.max_offset(topic, queue_id)
        return max(committed, lo)

    def _cursor(self, plan: PopPlan, view: QueueView, topic: str, queue_id: int) -> Cursor:
        """The queue's cursor; the first touch of a queue the group never consumed fixes its start
        by ``init_mode`` and commits it (RocketMQ's init offset), so later messages are not skipped."""
        req = plan.request
        key = (req.group, topic, queue_id)
        cur = self.spans.cursors.get(key)
        committed = view.consumer_offset(req.group, topic, queue_id)
        if cur is None:
            cur = self.spans.cursors[key] = Cursor(self._start(view, req.group, topic, queue_id, req.init_mode),
                                                   committed=committed)
            if committed < 0:
                plan.offset_commits.append((*key, cur.next))
                cur.committed = cur.next
        elif committed >= 0 and not cur.spans and not cur.redo:
            cur.next = max(cur.next, committed, view.min_offset(topic, queue_id))
        cur.committed = max(cur.committed, committed)
        return cur

    def _topics(self, req: PopRequest, view: QueueView, rand: int) -> list[tuple[str, int]]:
        """(topic, queue id) pairs to try, in order (module doc)."""
        def queues(topic: str) -> list[tuple[str, int]]:
            n = view.read_queue_nums(topic)
            return [(topic, (rand + i) % n) for i in range(n)] if n else []
        if req.queue_id >= 0:
            main = [(req.topic, req.queue_id)] if req.queue_id < view.read_queue_nums(req.topic) else []
        else:
            main = queues(req.topic)
        retry = queues(handles.retry_topic(req.group, req.topic)) if not req.orderly else []
        return retry + main if rand % 5 == 0 else main + retry

    def pop(self, req: PopRequest, view: QueueView, now_ms: int, rand: int = 0) -> PopPlan:
        """Hand out up to ``req.max_msgs`` messages (module doc); the plan says what to persist."""
        if req.max_msgs <= 0 or req.invisible_time_ms <= 0:
            raise UserError(f"pop of {req.max_msgs} messages invisible for {req.invisible_time_ms} ms: both must "
                            "be positive")
        plan = PopPlan(req, now_ms)
        for topic, queue_id in self._topics(req, view, rand):
            want = req.max_msgs - len(plan.messages)
            if want <= 0:
                plan.rest_num += max(0, view.max_offset(topic, queue_id) - self._peek_start(view, req, topic, queue_id))
                continue
            if req.orderly:
                self._pop_orderly(plan, view, topic, queue_id, want, now_ms)
            else:
                self._pop_queue(plan, view, topic, queue_id, want, now_ms)
        return plan

    def _peek_start(self, view: QueueView, req: PopRequest, topic: str, queue_id: int) -> int:
        cur = self.spans.cursors.get((req.group, topic, queue_id))
        if cur is not None:
            return max(cur.next, view.consumer_offset(req.group, topic, queue_id))
        return self._start(view, req.group, topic, queue_id, req.init_mode)

    def _read(self, view: QueueView, req: PopRequest, topic: str, queue_id: int, start: int, end: int,
              want: int) -> tuple[list[Message], int]:
        """Messages in [start, end) (end -1: to the queue's end) matching the tags and not covered
        by a committed checkpoint, up to ``want``; and the offset after the last one looked at."""
        covered = self._covered.get((req.group, topic, queue_id), ())
        out: list[Message] = []
        pos = start
        for _ in range(COVERED_READS_MAX):
            ask = want - len(out)
            msgs = view.read(topic, queue_id, pos, ask if end < 0 else min(ask, end - pos))
            if end >= 0:
                msgs = [m for m in msgs if m.queue_offset < end]
            if not msgs:
                break
            pos = msgs[-1].queue_offset + 1
            if req.tags is not None:
                msgs = [m for m in msgs if m.properties.get(PROPERTY_TAGS) in req.tags]
            out += [m for m in msgs if m.queue_offset not in covered]
            if len(out) >= want or not covered or end >= 0 and pos >= end:
                break
        return out, pos

    def _pop_queue(self, plan: PopPlan, view: QueueView, topic: str, queue_id: int, want: int, now_ms: int) -> None:
        req = plan.request
        key = (req.group, topic, queue_id)
        cur = self._cursor(plan, view, topic, queue_id)
        if cur.redo:
            start, end = cur.redo.pop(0)
        else:
            start, end = cur.next, -1
        msgs, after = self._read(view, req, topic, queue_id, start, end, want)
        if end >= 0 and after < end:
            cur.redo.insert(0, (after, end))        # the rest of a redo range waits for the next pop
        if after == start:
            return
        if end < 0:
            cur.next = after
        plan.rest_num += max(0, view.max_offset(topic, queue_id) - cur.next)
        ck = self._ck(req, topic, queue_id, start, tuple(m.queue_offset for m in msgs), now_ms)
        # nothing handed out (tags, covered): a span of nothing, resolved at once, moves the offset
        write = bool(msgs) and not self.spans.buffers(ck, now_ms)
        self.spans.add(key, start, after, ck, WRITING if write else BUFFERED)
        plan.spans.append((key, start))
        if not msgs:
            return
        if write:
            plan.checkpoints.append(ck)
        plan.revive_qid = ck.revive_qid
        plan.start_offsets.append((topic, queue_id, start))
        plan.msg_offsets.append((topic, queue_id, list(ck.offsets)))
        for m in msgs:
            handle = handles.build(start, now_ms, req.invisible_time_ms, ck.revive_qid, topic, self.broker_name,
                                   queue_id, m.queue_offset)
            plan.messages.append(Popped(_with_handle(m, handle), handle, topic))

    def _ck(self, req: PopRequest, topic: str, queue_id: int, start: int, offsets: tuple[int, ...],
            now_ms: int) -> CheckPoint:
        return CheckPoint(req.group, topic, queue_id, start, offsets, now_ms, req.invisible_time_ms,
                          self.revive_qid_for(queue_id), self.broker_name)

    def _pop_orderly(self, plan: PopPlan, view: QueueView, topic: str, queue_id: int, want: int,
                     now_ms: int) -> None:
        req = plan.request
        key = (req.group, topic, queue_id)
        start = self.orderly.start(key, self._start(view, req.group, topic, queue_id, req.init_mode))
        lock = self.orderly.holder(key, start)
        if lock is not None and now_ms < lock.until_ms:
            return                                            # held by another consumer
        msgs, after = self._read(view, req, topic, queue_id, start, -1, want)
        if after == start:
            return
        if lock is not None:                     # handed out again: never what was acked under it
            msgs = [m for m in msgs if not lock.skips(m.queue_offset)]
        if not msgs:
            plan.offset_commits.append((req.group, topic, queue_id, after))
            return
        offsets = tuple(m.queue_offset for m in msgs)
        attempts = lock.record.attempts + 1 if lock is not None and start <= lock.record.offsets[-1] else 0
        rec = OrderLock(req.group, topic, queue_id, start, offsets, now_ms, req.invisible_time_ms, attempts,
                        self.broker_name)
        self.orderly.take(rec)
        plan.order_locks.append(rec)
        plan.start_offsets.append((topic, queue_id, start))
        plan.msg_offsets.append((topic, queue_id, list(offsets)))
        plan.rest_num += max(0, view.max_offset(topic, queue_id) - after)
        for m in msgs:
            plan.order_counts.append((topic, queue_id, m.queue_offset, attempts))
            handle = handles.build(start, now_ms, req.invisible_time_ms, handles.POP_ORDER_REVIVE_QUEUE, topic,
                                   self.broker_name, queue_id, m.queue_offset)
            stored = replace(m, reconsume_times=m.reconsume_times + attempts)
            plan.messages.append(Popped(_with_handle(stored, handle), handle, topic))
        plan.revive_qid = handles.POP_ORDER_REVIVE_QUEUE

    def pop_done(self, plan: PopPlan) -> None:
        """The plan's checkpoints and locks are committed: record them (the consumer offsets follow
        with the next ``flush``)."""
        for key, start in plan.spans:
            span = self.spans.written(key, start) if self._writing(key, start) else None
            if span is not None:
                self.observe(span.ck)

    def _writing(self, key: tuple[str, str, int], start: int) -> bool:
        cur = self.spans.cursors.get(key)
        return cur is not None and start in cur.spans and cur.spans[start].state == WRITING

    def pop_failed(self, plan: PopPlan) -> None:
        """A checkpoint or lock of the plan could not be committed (the messages were not handed
        out): hand its ranges out again, release its locks."""
        for key, start in plan.spans:
            self.spans.failed(key, start)
        for rec in plan.order_locks:
            held = self.orderly.locks.get((rec.group, rec.topic, rec.queue_id))
            if held is not None and held.record == rec:
                self.orderly.release((rec.group, rec.topic, rec.queue_id))

    # --- the merge buffer ------------------------------------------------------------------------

    def flush(self, now_ms: int, force: bool = False) -> FlushPlan:
        """What the merge buffer must write now (``spans`` module doc)."""
        return self.spans.flush(now_ms, force)

    def flush_done(self, plan: FlushPlan, *, written: bool = True, committed: bool = True,
                   unwritten: Collection[CkKey] = ()) -> tuple[list[int], list[int]]:
        """What of the flush went through: its records (``written``, but not the checkpoints
        whose keys are in ``unwritten``: their puts failed), its offset commits (``committed``);
        returns (the acks' tickets now durable, those that fail)."""
        if written:
            for ck in plan.timer_cks + plan.done_cks:
                if ck.key not in unwritten:
                    self.observe(ck)
        return self.spans.flush_done(plan, written=written, committed=committed, unwritten=unwritten)

    # --- peek and notification -------------------------------------------------------------------

    def peek(self, group: str, topic: str, queue_id: int, max_msgs: int, view: QueueView,
             init_mode: int = INIT_MODE_MAX) -> list[Message]:
        """Messages a pop would hand out next, without a checkpoint."""
        req = PopRequest(group, topic, queue_id, max_msgs, 1, init_mode)
        out: list[Message] = []
        for t, q in self._topics(req, view, 1):
            if len(out) >= max_msgs:
                break
            out.extend(view.read(t, q, self._peek_start(view, req, t, q), max_msgs - len(out)))
        return out

    def has_message(self, group: str, topic: str, queue_id: int, view: QueueView,
                    init_mode: int = INIT_MODE_MAX) -> bool:
        req = PopRequest(group, topic, queue_id, 1, 1, init_mode)
        return any(view.max_offset(t, q) > self._peek_start(view, req, t, q) for t, q in self._topics(req, view, 1))

    # --- ack and change of invisible time -------------------------------------------------------

    def _resolve(self, group: str, topic: str, extra_info: str) -> tuple[handles.Handle, CkKey]:
        h = handles.parse(extra_info)
        real = handles.real_topic(topic, group, h.kind)
        return h, (group, real, h.queue_id, h.ck_queue_offset, h.pop_time_ms)

    def ack(self, group: str, topic: str, extra_infos: list[str], now_ms: int,
            view: QueueView | None = None) -> AckPlan:
        """Acks of ``extra_infos`` (one or a batch): merged into their buffered checkpoint (a
        ticket), else grouped by checkpoint into ack/bAck records; ``view``: for orderly acks."""
        plan = AckPlan()
        by_key: dict[CkKey, list[int]] = {}
        cks: dict[CkKey, CheckPoint] = {}
        ticketed: set[CkKey] = set()
        waiting: set[CkKey] = set()
        for extra_info in extra_infos:
            h, key = self._resolve(group, topic, extra_info)
            if h.orderly:
                plan.statuses.append(self.orderly.ack(key[:3], h.ck_queue_offset, h.offset, view,
                                                      plan.offset_commits, plan.order_locks))
                continue
            span = self.spans.find(key)
            if span is not None and span.state == BUFFERED:
                if h.offset not in span.ck.offsets:
                    plan.statuses.append("late")
                    continue
                span.acked.add(h.offset)
                plan.statuses.append("ok")
                if key not in ticketed:
                    ticketed.add(key)
                    plan.tickets.append(self.spans.ticket(span))
                continue
            entry = self._cks.get(key)
            if entry is None and span is None:
                plan.statuses.append("ok" if self._acked_with_offset(h, key, view, now_ms) else "late")
                continue
            plan.statuses.append("ok")
            if span is not None and span.state == WRITING and key not in waiting:
                waiting.add(key)             # its ck is being put: the ack record must follow it in the log
                plan.after.append(self.spans.ticket(span))
            if entry is not None and entry.state == DONE and h.offset in self._acked.get(key, ()):
                continue
            cks[key] = entry.ck if entry is not None else span.ck      # type: ignore[union-attr]
            by_key.setdefault(key, []).append(h.offset)
        for key, offsets in by_key.items():
            ck = cks[key]
            plan.acks.append(Ack(key[0], key[1], key[2], key[3], key[4], tuple(sorted(set(offsets))),
                                 self.broker_name, ck.revive_time_ms))
            plan.revive_qids.append(ck.revive_qid)
            self._pending[key] = self._pending.get(key, 0) + 1
        return plan

    @staticmethod
    def _acked_with_offset(h: handles.Handle, key: CkKey, view: QueueView | None, now_ms: int) -> bool:
        """An ack of a handle whose checkpoint nobody knows: was its message acked already? Yes when
        the committed consumer offset is past it before its revive time: the offset only passes a
        span acked in full or a written checkpoint, and a written one is known until it is revived,
        never before its revive time. (A client retrying an ack whose answer a failover lost: the
        first one was merged, its span dropped with the offset.) Else it is late: the message comes
        back, or already came back."""
        return view is not None and now_ms < h.revive_time_ms and h.offset < view.consumer_offset(*key[:3])

    def ack_done(self, plan: AckPlan) -> None:
        for ack in plan.acks:
            self._unpend(ack.key)
            self.observe(ack)
        for rec in plan.order_locks:
            self.orderly.observe(rec)

    def ack_failed(self, plan: AckPlan) -> None:
        for ack in plan.acks:
            self._unpend(ack.key)

    def _unpend(self, key: CkKey) -> None:
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)

    def _in_flight(self, key: CkKey, offset: int) -> bool:
        span = self.spans.find(key)
        if span is not None and span.state != WRITTEN:
            return offset in span.ck.offsets and offset not in span.acked
        entry = self._cks.get(key)
        return entry is not None and entry.state != DONE and offset in entry.ck.offsets \
            and offset not in self._acked.get(key, ())

    def change_invisible_time(self, group: str, topic: str, extra_info: str, invisible_time_ms: int,
                              now_ms: int, view: QueueView | None = None) -> ChangePlan:
        """Make the message of ``extra_info`` invisible for ``invisible_time_ms`` from ``now_ms``:
        a one-message checkpoint (put first), then the ack of the old handle. ``UserError`` when the
        handle is no longer in flight (revived, acked or unknown)."""
        if invisible_time_ms <= 0:
            raise UserError(f"invisibleTime {invisible_time_ms} ms must be positive")
        h, key = self._resolve(group, topic, extra_info)
        if h.orderly:
            lock = self.orderly.locks.get(key[:3])
            if lock is None or lock.start != h.ck_queue_offset:
                raise UserError(f"receipt handle {extra_info!r} is no longer held (orderly queue released)")
            lock.record = replace(lock.record, pop_time_ms=now_ms, invisible_time_ms=invisible_time_ms,
                                  bitmap=lock.bitmap())
            new = handles.build(h.ck_queue_offset, now_ms, invisible_time_ms, h.revive_qid, key[1], self.broker_name,
                                h.queue_id, h.offset)
            return ChangePlan(None, AckPlan(), new, now_ms, invisible_time_ms, h.revive_qid, lock.record)
        if not self._in_flight(key, h.offset):
            raise UserError(f"receipt handle {extra_info!r} is no longer in flight (acked, revived or unknown)")
        ck = CheckPoint(group, key[1], h.queue_id, h.offset, (h.offset,), now_ms, invisible_time_ms,
                        self.revive_qid_for(h.queue_id), self.broker_name)
        ack = self.ack(group, topic, [extra_info], now_ms)
        new = handles.build(h.offset, now_ms, invisible_time_ms, ck.revive_qid, key[1], self.broker_name,
                            h.queue_id, h.offset)
        return ChangePlan(ck, ack, new, now_ms, invisible_time_ms, ck.revive_qid)

    def change_done(self, plan: ChangePlan) -> None:
        if plan.checkpoint is not None:
            self.observe(plan.checkpoint)
        self.ack_done(plan.ack)

    def change_failed(self, plan: ChangePlan) -> None:
        self.ack_failed(plan.ack)


def _with_handle(msg: Message, handle: str) -> Message:
    return replace(msg, properties={**msg.properties, PROPERTY_POP_CK: handle})
