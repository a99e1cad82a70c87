"""``PopService``: the POP engine of one broker replica, fed from its log, with the revive service.

Attach it to a started broker (``attach_to_broker(broker)``, as the delay service is) and the
handlers find it as ``ctx.pop``; the request methods are in the package docstring. What it does:

* **Feeding the engine** (every replica): ``sync()`` reads what was committed since the last call
  from the timer topic (ck/ack messages waiting for their deliver time; ``REAL_TOPIC`` names the
  revive log) and from every revive-log queue (what the timer delivered), in offset order, and
  hands each to ``engine.observe``; the revive service's committed progress (consumer offsets of
  ``CID_RMQ_SYS_REVIVE_GROUP`` on the revive log) to ``engine.set_revive_offset``. Requests call it
  first; a background task calls it after commits (at most every ``SYNC_INTERVAL_MS``), so a
  follower's table is current when it becomes leader.
* **Writes** go through the broker's one replicated put (``group.put``) after the broker's
  message rewriters (``ctx.rewrite``: a ck's ``TIMER_DELIVER_MS`` moves it to the timer store) and
  ``group.commit_offset``. Most checkpoints wait in the engine's merge buffer (``spans``): the pop
  answers at once; the **flush loop** (leader only) writes what the buffer must write, all its
  records proposed together (one Raft Ready) and its consumer offsets in one offset snapshot,
  as soon as acks wait for it (a few ms to gather them) or a window closes. A checkpoint that
  cannot wait (its revive time too near) and an orderly lock are put before the pop answers.
  An ack answers once it is durable (its ack record committed, or the flush that made it durable:
  ``spans`` module doc); an orderly ack once its consumer offset commit is. An ack record of a
  checkpoint the flush is writing is put only once that checkpoint is committed, so the log never
  holds an ack without its checkpoint before it (issue 19: a SIGKILL between the two commits made
  the new leader hand the acked message out again).
* **Revive** (leader only, ``_revive_loop``): per revive queue, from the committed revive offset,
  each delivered checkpoint gets ``engine.revive_decision``; unacked messages are re-put to the retry
  topic (created with one queue when missing) or the DLQ, then the revive offset is committed.
  Between passes it sleeps until the earliest checkpoint is due (at most ``REVIVE_IDLE_MS``) or the
  revive topic grows, not on every commit: a commit that brings no checkpoint changes no due time.
  When no revive queue holds anything that waits, it sleeps ``REVIVE_QUIET_MS`` (the topic's
  growth still wakes it at once).
* **Long polling**: a pop or notification with ``poll_ms`` waits for the next commit and tries
  again until its deadline; more than ``POLLING_MAX`` waiting answer POLLING_FULL at once.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from mqbench.broker.formats import codes
from mqbench.broker.formats.record import Message
from mqbench.broker.formats.topics import TIMER_TOPIC

from . import handles, records
from .engine import ChangePlan, AckPlan, PopEngine, PopPlan, PopRequest
from .spans import MERGE_WINDOW_MS, FlushPlan
from .view import StoreView
from mqbench.broker.formats.properties import (PROPERTY_REAL_QID, PROPERTY_REAL_TOPIC, PROPERTY_TAGS, PROPERTY_TIMER_DELIVER_MS,
                                               PROPERTY_TIMER_OUT_MS)

log = logging.getLogger("mqbench.broker.pop")

POLLING_MAX = 1024
SYNC_INTERVAL_MS = 200
REVIVE_IDLE_MS = 200
# the revive loop's sleep when no revive queue holds anything that waits and the revive topic's
# growth is watched (it wakes the loop): a pass every 200 ms then only re-read empty queues, on
# every leader, whether or not anyone uses POP (profile of an orders run: 4 % of the leader)
REVIVE_QUIET_MS = 2_000
REVIVE_RETRY_MS = 1000
READ_CHUNK = 256
FLUSH_GATHER_MS = 10         # a flush waits this long for more acks to join it (flushes <= 100/s)
FLUSH_IDLE_MS = 200          # the flush loop's longest sleep
FLUSH_RETRY_MS = 200


@dataclass
class PopResult:
    code: int     # SUCCESS (messages), PULL_NOT_FOUND (none, no poll), POLLING_TIMEOUT, POLLING_FULL
    plan: PopPlan


def _resolve(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _wait_future(waiter: asyncio.Future, timeout_ms: int) -> None:
    """Until ``waiter`` is resolved or ``timeout_ms`` (at least 1 ms) passed; a cancellation of the
    caller propagates (a plain future never swallows it, unlike 3.11's ``wait_for``)."""
    timer = asyncio.get_running_loop().call_later(max(timeout_ms, 1) / 1000, _resolve, waiter)
    try:
        await waiter
    finally:
        timer.cancel()


class PopService:
    """See module doc. ``ctx`` is the broker's ``BrokerContext``."""

    def __init__(self, ctx: Any, *, revive_queues: int = 8, max_reconsume_times: int = 16,
                 merge_window_ms: int = MERGE_WINDOW_MS):
        self.ctx = ctx
        self.group = ctx.group
        self.engine = PopEngine(ctx.broker_name, ctx.layout.cluster, revive_queues=revive_queues,
                                max_reconsume_times=max_reconsume_times, merge_window_ms=merge_window_ms)
        self.revive_topic = self.engine.revive_topic
        self._read_pos: dict[tuple[str, int], int] = {}
        self._commit_event = asyncio.Event()
        self._waiters: set[asyncio.Future] = set()     # long polls waiting for the next commit
        self._revive_sleeper: asyncio.Future | None = None
        self._revive_growth = None                      # records dispatched to the revive topic
        self._revive_watched = None                     # the QueueSet that counts them
        self._revive_seen = -1
        self._offset_flights: dict[tuple[str, str, int], asyncio.Task] = {}
        self._polling = 0
        self._revive_task: asyncio.Task | None = None
        self._flush_task: asyncio.Task | None = None
        self._flush_wake = asyncio.Event()
        self._tickets: dict[int, asyncio.Future] = {}
        self._sync_task: asyncio.Task | None = None
        self._closed = False
        self.stats = {"popped": 0, "acked": 0, "revived": 0, "deadLettered": 0, "lateAcks": 0,
                      "mergedAcks": 0, "checkpointsWritten": 0, "flushes": 0}

    @property
    def store(self):
        return self.group.store

    def view(self) -> StoreView:
        return StoreView(self.store)

    # --- feeding the engine ----------------------------------------------------------------------

    def _read_new(self, topic: str, queue_id: int):
        store = self.store
        key = (topic, queue_id)
        pos = max(self._read_pos.get(key, 0), store.min_offset(topic, queue_id))
        top = store.max_offset(topic, queue_id)
        while pos < top:
            msgs = store.read_queue(topic, queue_id, pos, READ_CHUNK).messages
            if not msgs:
                break
            for msg in msgs:
                yield msg
            pos = msgs[-1].queue_offset + 1
            self._read_pos[key] = pos
        self._read_pos[key] = max(pos, self._read_pos.get(key, 0))

    def _parse(self, msg: Message, revive_qid: int):
        props = msg.properties
        deliver = props.get(PROPERTY_TIMER_DELIVER_MS) or props.get(PROPERTY_TIMER_OUT_MS) or "0"
        try:
            return records.parse(props.get(PROPERTY_TAGS), msg.body, int(deliver), revive_qid)
        except (records.RecordError, ValueError) as exc:
            log.error("POP record at %s/%d offset %d skipped: %s", msg.topic, msg.queue_id, msg.queue_offset, exc)
            return None

    def sync(self) -> None:
        """Hand the engine what was committed since the last call (module doc)."""
        engine = self.engine
        for qid in range(engine.revive_queues):
            engine.set_revive_offset(qid, self.store.query_offset(handles.REVIVE_GROUP, self.revive_topic, qid))
        for msg in self._read_new(TIMER_TOPIC, 0):
            if msg.properties.get(PROPERTY_REAL_TOPIC) == self.revive_topic:
                item = self._parse(msg, int(msg.properties.get(PROPERTY_REAL_QID, "0") or 0))
                if item is not None:
                    engine.observe(item)
        for qid in range(engine.revive_queues):
            for msg in self._read_new(self.revive_topic, qid):
                item = self._parse(msg, qid)
                if item is not None:
                    engine.observe(item, delivered=(qid, msg.queue_offset) if isinstance(item, records.CheckPoint)
                                   else None)
        engine.prune(self.view())

    def on_commit(self) -> None:
        self._commit_event.set()
        for waiter in self._waiters:
            _resolve(waiter)
        sleeper = self._revive_sleeper
        if sleeper is not None and self._revive_grown():
            _resolve(sleeper)

    def _revive_grown(self) -> bool:
        """Whether the revive topic got records since the revive loop last looked (always True when
        the store cannot say). A commit without one cannot make a checkpoint due sooner: every
        ``revive_decision`` that waits names its time, so the loop sleeps to that, not per commit."""
        growth = self._revive_growth
        if growth is None:
            return True
        return growth.count != self._revive_seen

    async def _sync_loop(self) -> None:
        while not self._closed:
            await self._commit_event.wait()
            self._commit_event.clear()
            try:
                self.sync()
                self.engine.gc(self.ctx.clock_ms())
            except Exception:  # noqa: BLE001 - a read error is retried at the next commit
                log.exception("POP state sync failed")
            await asyncio.sleep(SYNC_INTERVAL_MS / 1000)

    async def _wait_commit(self, timeout_ms: int) -> None:
        """Until the next commit (or ``timeout_ms``). A future and a timer, no Task per wait
        (``wait_for`` made one per long-poll round)."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.add(waiter)
        try:
            await _wait_future(waiter, timeout_ms)
        finally:
            self._waiters.discard(waiter)

    async def _revive_sleep(self, timeout_ms: int) -> None:
        """Until the revive topic grows (``on_commit``) or ``timeout_ms`` (the next due checkpoint)."""
        if self._revive_grown():
            return
        waiter = self._revive_sleeper = asyncio.get_running_loop().create_future()
        try:
            await _wait_future(waiter, timeout_ms)
        finally:
            if self._revive_sleeper is waiter:
                self._revive_sleeper = None

    def _watch_revive_topic(self) -> None:
        queues = getattr(self.store, "queues", None)
        if self._revive_growth is None and hasattr(queues, "watch"):
            self._revive_growth, self._revive_watched = queues.watch((self.revive_topic,)), queues
            self._revive_seen = -1

    def _unwatch_revive_topic(self) -> None:
        if self._revive_growth is not None:
            self._revive_watched.unwatch(self._revive_growth)
            self._revive_growth, self._revive_watched = None, None

    # --- leadership ------------------------------------------------------------------------------

    def on_role_change(self, role: str, term: int, leader_id) -> None:
        self.engine.leader_changed()
        self._fail_tickets(list(self._tickets), lambda: self.ctx.not_leader("ack"))
        for attr in ("_revive_task", "_flush_task"):
            task = getattr(self, attr)
            if task is not None:
                task.cancel()
                setattr(self, attr, None)
        if role == "leader" and not self._closed:
            loop = asyncio.get_running_loop()
            self._revive_task = loop.create_task(self._revive_loop(), name="pop-revive")
            self._flush_task = loop.create_task(self._flush_loop(), name="pop-flush")

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in (self._revive_task, self._flush_task, self._sync_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_tickets(list(self._tickets), lambda: self.ctx.not_leader("ack"))

    # --- writes ----------------------------------------------------------------------------------

    async def _put(self, msg: Message) -> None:
        await self.group.put(self.ctx.rewrite(msg))

    async def _ready(self, what: str) -> None:
        self.ctx.require_leader(what)
        await self.ctx.require_readable(what)
        self.sync()

    async def _ensure_revive_topic(self) -> None:
        if self.store.topic_config(self.revive_topic) is None:
            await self.group.ensure_topic(self.revive_topic, queues=self.engine.revive_queues)

    async def _commit_offsets(self, commits) -> None:
        await asyncio.gather(*(self.group.commit_offset(g, t, q, o) for g, t, q, o in commits
                               if o > self.store.query_offset(g, t, q)))

    def _commit_offsets_behind(self, commits) -> None:
        """Commit a pop's own consumer offsets (a queue's init offset; an orderly pop of nothing but
        messages filtered out) without holding its answer, one after the other per queue."""
        for g, t, q, o in commits:
            key = (g, t, q)
            previous = self._offset_flights.get(key)

            async def commit(previous=previous, g=g, t=t, q=q, o=o) -> None:
                if previous is not None:
                    await asyncio.gather(previous, return_exceptions=True)
                if o > self.store.query_offset(g, t, q):
                    await self.group.commit_offset(g, t, q, o)
            task = asyncio.get_running_loop().create_task(commit())
            self._offset_flights[key] = task
            task.add_done_callback(lambda done, key=key: self._offset_flights.get(key) is done
                                   and self._offset_flights.pop(key))

    # --- the merge buffer's flush ----------------------------------------------------------------

    def _fail_tickets(self, tickets, error) -> None:
        for ticket in tickets:
            future = self._tickets.pop(ticket, None)
            if future is not None and not future.done():
                future.set_exception(error())
                future.exception()        # retrieved here: a waiter may be gone

    async def _flush_loop(self) -> None:
        """Leader only: write what the merge buffer must write (``spans`` module doc), batched."""
        engine = self.engine
        while not self._closed and self._flush_task is asyncio.current_task():
            close_ms = engine.spans.next_close_ms()
            sleep_ms = FLUSH_IDLE_MS if close_ms is None else min(FLUSH_IDLE_MS, close_ms - self.ctx.clock_ms())
            try:
                await asyncio.wait_for(self._flush_wake.wait(), max(sleep_ms, 1) / 1000)
            except asyncio.TimeoutError:
                pass
            self._flush_wake.clear()
            await asyncio.sleep(FLUSH_GATHER_MS / 1000)
            plan = engine.flush(self.ctx.clock_ms())
            if plan.empty():
                continue
            try:
                unwritten, put_error, commit_error = await self._write_flush(plan)
            except asyncio.CancelledError:
                self._fail_tickets(engine.flush_done(plan, written=False, committed=False)[1],
                                   lambda: self.ctx.not_leader("ack"))
                raise
            durable, failed = engine.flush_done(plan, committed=commit_error is None, unwritten=unwritten)
            for ticket in durable:
                future = self._tickets.pop(ticket, None)
                if future is not None and not future.done():
                    future.set_result(None)
            error = put_error or commit_error
            if error is not None:
                self._fail_tickets(failed, lambda error=error: error)
                # retried (a role change replaces this loop): a refused proposal during a
                # leadership hand-over is a NotLeader while this replica still leads
                log.log(logging.INFO if isinstance(error, self.ctx.not_leader_errors) else logging.WARNING,
                        "POP flush failed: %s; retrying", error)
                await asyncio.sleep(FLUSH_RETRY_MS / 1000)
            elif plan.writing:
                self._flush_wake.set()       # the consumer offsets may pass the spans now written

    async def _write_flush(self, plan: FlushPlan) -> tuple[set, BaseException | None, BaseException | None]:
        """Put the flush's records (proposed together: every put is proposed before the Raft loop
        runs again, one Ready) and commit its offsets (one snapshot); returns the keys of the
        checkpoints whose put failed (only those are written again), the first put error and the
        commit error."""
        cks = [(ck, records.ck_message(ck, self.revive_topic)) for ck in plan.timer_cks]
        cks += [(ck, records.ck_done_message(ck, self.revive_topic)) for ck in plan.done_cks]

        async def puts() -> list:
            if not cks:
                return []
            await self._ensure_revive_topic()
            return await asyncio.gather(*(self._put(m) for _, m in cks), return_exceptions=True)
        put_result, commit_result = await asyncio.gather(puts(), self._commit_offsets(plan.offset_commits),
                                                         return_exceptions=True)
        for result in (put_result, commit_result, *(put_result if isinstance(put_result, list) else ())):
            if isinstance(result, asyncio.CancelledError):
                raise result
        put_error: BaseException | None
        if isinstance(put_result, BaseException):         # the revive topic: nothing was put
            unwritten, put_error = {ck.key for ck, _ in cks}, put_result
        else:
            failed = [(ck, r) for (ck, _), r in zip(cks, put_result) if isinstance(r, BaseException)]
            unwritten = {ck.key for ck, _ in failed}
            put_error = failed[0][1] if failed else None
        self.stats["flushes"] += 1
        self.stats["checkpointsWritten"] += len(cks) - len(unwritten)
        return (unwritten, put_error, commit_result if isinstance(commit_result, BaseException) else None)

    # --- the requests (package docstring) --------------------------------------------------------

    async def pop(self, req: PopRequest, poll_ms: int = 0) -> PopResult:
        await self._ready("pop")
        deadline_ms = self.ctx.monotonic_ms() + max(0, min(poll_ms, self.ctx.suspend_ms_max))
        polling = False
        try:
            while True:
                plan = await self._pop_once(req)
                left_ms = deadline_ms - self.ctx.monotonic_ms()
                if plan.messages or left_ms <= 0:
                    code = codes.SUCCESS if plan.messages else \
                        codes.POLLING_TIMEOUT if poll_ms > 0 else codes.PULL_NOT_FOUND
                    return PopResult(code, plan)
                if not polling:
                    if self._polling >= POLLING_MAX:
                        return PopResult(codes.POLLING_FULL, plan)
                    self._polling += 1
                    polling = True
                await self._wait_commit(left_ms)
                self.ctx.require_leader("pop")
                self.sync()
        finally:
            if polling:
                self._polling -= 1

    async def _pop_once(self, req: PopRequest) -> PopPlan:
        plan = self.engine.pop(req, self.view(), self.ctx.clock_ms(), self.ctx.rng.randrange(1 << 30))
        if plan.writes():
            try:
                await self._ensure_revive_topic()
                await asyncio.gather(*(self._put(records.ck_message(ck, self.revive_topic)) for ck in plan.checkpoints),
                                     *(self._put(records.order_lock_message(lock, self.revive_topic,
                                                                            self.engine.revive_qid_for(lock.queue_id)))
                                       for lock in plan.order_locks))
            except BaseException:
                self.engine.pop_failed(plan)
                raise
            self.engine.pop_done(plan)
            self.stats["checkpointsWritten"] += len(plan.checkpoints)
        if plan.spans:
            self._flush_wake.set()       # the consumer offsets follow with the next flush
        self._commit_offsets_behind(plan.offset_commits)
        self.stats["popped"] += len(plan.messages)
        return plan

    async def ack(self, group: str, topic: str, extra_infos: list[str]) -> AckPlan:
        await self._ready("ack")
        plan = self.engine.ack(group, topic, extra_infos, self.ctx.clock_ms(), self.view())
        await self._put_acks(plan)
        return plan

    async def _put_acks(self, plan: AckPlan) -> None:
        """Answerable once durable: the ack records committed and the merged acks' flush done."""
        loop = asyncio.get_running_loop()
        waits = []
        for ticket in plan.tickets:
            waits.append(self._tickets.setdefault(ticket, loop.create_future()))
        if waits:
            self._flush_wake.set()
            self.stats["mergedAcks"] += len(waits)
        after = [self._tickets.setdefault(ticket, loop.create_future()) for ticket in plan.after]
        try:
            if after:       # their checkpoints first: an ack committed without its ck would be lost
                await asyncio.gather(*after)
            if plan.order_locks:
                await self._ensure_revive_topic()
            await asyncio.gather(*(self._put(records.ack_message(a, self.revive_topic, q))
                                   for a, q in zip(plan.acks, plan.revive_qids)),
                                 *(self._put(records.order_lock_message(r, self.revive_topic,
                                                                        self.engine.revive_qid_for(r.queue_id)))
                                   for r in plan.order_locks), *waits)
        except BaseException:
            self.engine.ack_failed(plan)
            raise
        self.engine.ack_done(plan)
        try:
            await self._commit_offsets(plan.offset_commits)
        except BaseException:
            self.engine.commits_failed(plan.offset_commits)
            raise
        self.stats["acked"] += sum(s != "late" for s in plan.statuses)
        self.stats["lateAcks"] += plan.statuses.count("late")

    async def change_invisible_time(self, group: str, topic: str, extra_info: str,
                                    invisible_time_ms: int) -> ChangePlan:
        await self._ready("change of invisible time")
        plan = self.engine.change_invisible_time(group, topic, extra_info, invisible_time_ms, self.ctx.clock_ms(),
                                                 self.view())
        if plan.order_lock is not None:
            lock = plan.order_lock
            await self._ensure_revive_topic()
            await self._put(records.order_lock_message(lock, self.revive_topic, self.engine.revive_qid_for(lock.queue_id)))
        if plan.checkpoint is not None:
            try:
                await self._ensure_revive_topic()
                await self._put(records.ck_message(plan.checkpoint, self.revive_topic))
            except BaseException:
                self.engine.change_failed(plan)
                raise
            self.engine.observe(plan.checkpoint)
        await self._put_acks(plan.ack)
        return plan

    async def set_request_mode(self, topic: str, group: str, mode: str, pop_share_queue_num: int = 0) -> None:
        """SET_MESSAGE_REQUEST_MODE, replicated: answered once its record is committed."""
        await self._ready("set of the message request mode")
        rec = records.RequestMode(topic, group, mode, pop_share_queue_num)
        await self._ensure_revive_topic()
        await self._put(records.request_mode_message(rec, self.revive_topic))
        self.engine.observe(rec)

    async def peek(self, group: str, topic: str, queue_id: int, max_msgs: int, init_mode: int = 0) -> list[Message]:
        await self.ctx.require_readable("peek")
        return self.engine.peek(group, topic, queue_id, max_msgs, self.view(), init_mode)

    async def notification(self, group: str, topic: str, queue_id: int, poll_ms: int, init_mode: int = 0) -> bool:
        await self.ctx.require_readable("notification")
        deadline_ms = self.ctx.monotonic_ms() + max(0, min(poll_ms, self.ctx.suspend_ms_max))
        while True:
            if self.engine.has_message(group, topic, queue_id, self.view(), init_mode):
                return True
            left_ms = deadline_ms - self.ctx.monotonic_ms()
            if left_ms <= 0:
                return False
            await self._wait_commit(left_ms)

    # --- revive ----------------------------------------------------------------------------------

    async def _revive_loop(self) -> None:
        """Leader only (module doc); any failure is retried after ``REVIVE_RETRY_MS``.

        Only the current ``_revive_task`` revives: a superseded loop whose cancel was lost (Python
        3.11's ``wait_for`` can swallow one) stops at its next check instead of re-putting the same
        checkpoint's messages beside the new loop (seen: every revived message stored twice)."""
        self._watch_revive_topic()
        try:
            while not self._closed and self._revive_task is asyncio.current_task():
                try:
                    if not await self.ctx.wait_readable(REVIVE_RETRY_MS):
                        continue
                    if self._revive_growth is not None:
                        self._revive_seen = self._revive_growth.count   # before reading: none missed
                    self.sync()
                    pending = False
                    wait_ms = REVIVE_IDLE_MS
                    for qid in range(self.engine.revive_queues):
                        queue_wait_ms = await self._revive_queue(qid)
                        if queue_wait_ms is not None:
                            pending = True
                            wait_ms = min(wait_ms, queue_wait_ms)
                    if not pending and self._revive_growth is not None:
                        wait_ms = REVIVE_QUIET_MS   # nothing waits: only a new revive record can matter
                    await self._revive_sleep(wait_ms)
                except asyncio.CancelledError:
                    raise
                except self.ctx.not_leader_errors:
                    return
                except Exception:  # noqa: BLE001 - retried: progress is re-read from the log
                    log.exception("POP revive failed; retrying")
                    await asyncio.sleep(REVIVE_RETRY_MS / 1000)
        finally:
            if self._revive_task is asyncio.current_task() or self._revive_task is None:
                self._unwatch_revive_topic()

    async def _revive_queue(self, qid: int) -> int | None:
        """Revive what is due on revive queue ``qid``; returns ms until something may be due, None
        when the queue holds nothing that waits (read to its end)."""
        store, engine = self.store, self.engine
        topic = self.revive_topic
        offset = max(engine.revive_offset(qid), store.min_offset(topic, qid))
        top = store.max_offset(topic, qid)
        done = offset
        try:
            while offset < top:
                msgs = store.read_queue(topic, qid, offset, READ_CHUNK).messages
                if not msgs:
                    break
                for msg in msgs:
                    item = self._parse(msg, qid)
                    if isinstance(item, records.CheckPoint):
                        kind, arg = engine.revive_decision(item, self.ctx.clock_ms())
                        if kind == "wait":
                            return max(1, int(arg) - self.ctx.clock_ms())   # type: ignore[call-overload]
                        if kind == "revive":
                            if self._revive_task is not asyncio.current_task():
                                return REVIVE_IDLE_MS       # superseded (see _revive_loop)
                            await self._revive(item, arg)   # type: ignore[arg-type]
                        engine.revived(item, qid, msg.queue_offset + 1)
                    done = msg.queue_offset + 1
                offset = msgs[-1].queue_offset + 1
            return None if offset >= top else REVIVE_IDLE_MS
        finally:
            if done > store.query_offset(handles.REVIVE_GROUP, topic, qid):
                await self.group.commit_offset(handles.REVIVE_GROUP, topic, qid, done)
                engine.set_revive_offset(qid, done)

    async def _revive(self, ck: records.CheckPoint, offsets: tuple[int, ...]) -> None:
        now_ms = self.ctx.clock_ms()
        for offset in offsets:
            if offset < self.store.min_offset(ck.topic, ck.queue_id):
                log.warning("POP revive: %s/%d offset %d is gone from the store", ck.topic, ck.queue_id, offset)
                continue
            stored = self.store.read_queue(ck.topic, ck.queue_id, offset, 1).messages
            if not stored or stored[0].queue_offset != offset:
                continue
            msg = self.engine.retry_message(ck, stored[0], now_ms)
            if self.store.topic_config(msg.topic) is None:
                await self.group.ensure_topic(msg.topic, queues=1)
            await self.group.put(msg)
            dead = msg.topic.startswith(handles.DLQ_PREFIX)
            self.stats["deadLettered" if dead else "revived"] += 1

    def runtime_fields(self) -> dict[str, int]:
        return {f"pop{k[0].upper()}{k[1:]}": v for k, v in self.stats.items()}


def attach_to_broker(broker, **kw) -> PopService:
    """Serve POP on a started ``Broker``: ``ctx.pop``, fed on commits, revive while leader."""
    service = PopService(broker.ctx, **kw)
    broker.ctx.pop = service
    broker.role_listeners.append(service.on_role_change)
    broker.commit_listeners.append(service.on_commit)
    broker.stop_hooks.append(service.close)
    broker.ctx.runtime_extras.append(service.runtime_fields)
    service._sync_task = asyncio.get_running_loop().create_task(service._sync_loop(), name="pop-sync")
    service.on_role_change(broker.group.role, broker.group.term, broker.group.leader_id)
    return service
