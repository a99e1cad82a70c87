"""The POP engine's state table, on a real store (``StoreView``), with time passed in."""
from __future__ import annotations

import pytest

from mqbench.broker.pop import handles, records
from mqbench.broker.pop.engine import INIT_MODE_MIN, PopEngine, PopRequest
from mqbench.broker.pop.state import DONE, DUE, INFLIGHT, TRANSITIONS
from mqbench.broker.pop.view import StoreView
from mqbench.broker.formats.record import Message
from mqbench.broker.store.store import Store
from mqbench.errors import UserError

G, T = "g1", "T"


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "s", "v5", create=True)
    s.create_topic(T, read_queue_nums=2, write_queue_nums=2)
    for i in range(10):
        s.append(Message(topic=T, queue_id=i % 2, body=f"m{i}".encode(), properties={"TAGS": "a" if i % 3 else "b"}))
    yield s
    s.close()


def _req(**kw):
    base = dict(group=G, topic=T, queue_id=0, max_msgs=3, invisible_time_ms=1000, init_mode=INIT_MODE_MIN)
    base.update(kw)
    return PopRequest(**base)


def _commit(store, commits):
    for group, topic, qid, off in commits:
        store.commit_offset(group, topic, qid, off)


def _flush(engine, store, now_ms, log=None):
    """What the service's flush loop does: the buffer's records "committed" (kept in ``log``), the
    consumer offsets committed; returns the plan and the tickets made durable."""
    plan = engine.flush(now_ms)
    if log is not None:
        log += plan.timer_cks + plan.done_cks
    _commit(store, plan.offset_commits)
    return plan, engine.flush_done(plan)[0]


def _engine(**kw):
    """An engine that writes every checkpoint at its pop (no merge window)."""
    return PopEngine("b", "c", merge_window_ms=0, **kw)


def _deliver(engine, ck, offset):
    """What the timer does at the revive time: the ck on the revive log."""
    engine.observe(ck, delivered=(ck.revive_qid, offset))


def test_handle_round_trip_and_errors():
    h = handles.build(5, 1000, 30000, 3, "%RETRY%g_T", "broker-a", 1, 7)
    assert h == "5 1000 30000 3 1 broker-a 1 7"
    parsed = handles.parse(h)
    assert (parsed.ck_queue_offset, parsed.kind, parsed.queue_id, parsed.offset, parsed.revive_time_ms) == \
        (5, "1", 1, 7, 31000)
    assert handles.real_topic("T", "g", parsed.kind) == "%RETRY%g_T"
    for bad in ("", "1 2 3", "a 1 1 1 0 b 1 1", "1 1 1 1 9 b 1 1", "1 1 1 1 0 b 1 -1"):
        with pytest.raises(UserError):
            handles.parse(bad)
    assert handles.parse_offset_info(handles.msg_offset_info([("T", 0, [1, 2]), ("%RETRY%g_T", 0, [4])])) == \
        {"0@0": [1, 2], "1@0": [4]}


def test_records_round_trip():
    ck = records.CheckPoint(G, T, 1, 4, (4, 6), 1000, 500, 3, "b")
    msg = records.ck_message(ck, "rmq_sys_REVIVE_LOG_c")
    assert msg.properties["TIMER_DELIVER_MS"] == "1500" and msg.queue_id == 3
    assert records.parse("ck", msg.body, revive_qid=3) == ck
    ack = records.Ack(G, T, 1, 4, 1000, (4, 6), "b", 1500)
    back = records.parse("bAck", records.ack_message(ack, "x", 3).body, 1500)
    assert back == ack and back.key == ck.key
    with pytest.raises(records.RecordError):
        records.parse("ck", b"{not json")
    assert records.parse("other", b"") is None


def test_state_table_is_total():
    for state in (INFLIGHT, DUE, DONE):
        for event in ("acked_some", "acked_all", "delivered"):
            assert (state, event) in TRANSITIONS
    assert TRANSITIONS[(INFLIGHT, "delivered")] == DUE and TRANSITIONS[(DUE, "revived")] == DONE


def test_pop_ack_all_then_delivered_is_skipped(store):
    engine, view = _engine(), StoreView(store)
    plan = engine.pop(_req(), view, now_ms=1000)
    assert [m.message.queue_offset for m in plan.messages] == [0, 1, 2]
    assert all(m.message.properties["POP_CK"] == m.handle for m in plan.messages)
    engine.pop_done(plan)
    _flush(engine, store, 0)
    assert store.query_offset(G, T, 0) == 3
    ack = engine.ack(G, T, [m.handle for m in plan.messages], now_ms=1200)
    assert ack.statuses == ["ok"] * 3 and len(ack.acks) == 1 and ack.acks[0].offsets == (0, 1, 2)
    engine.ack_done(ack)
    ck = plan.checkpoints[0]
    _deliver(engine, ck, 0)
    assert engine.revive_decision(ck, 2000) == ("skip", ())


def test_unacked_revived_never_early_with_retry_and_dlq(store):
    engine, view = _engine(max_reconsume_times=1), StoreView(store)
    plan = engine.pop(_req(), view, now_ms=1000)
    engine.pop_done(plan)
    _flush(engine, store, 0)
    engine.ack_done(engine.ack(G, T, [plan.messages[1].handle], now_ms=1100))
    ck = plan.checkpoints[0]
    _deliver(engine, ck, 0)
    assert engine.revive_decision(ck, 1999) == ("wait", 2000)      # delivered early: still waits
    assert engine.revive_decision(ck, 2000) == ("revive", (0, 2))
    stored = store.read_queue(T, 0, 0, 1).messages[0]
    retry = engine.retry_message(ck, stored, 2000)
    assert (retry.topic, retry.reconsume_times, retry.properties["RETRY_TOPIC"]) == ("%RETRY%g1_T", 1, T)
    again = engine.retry_message(records.CheckPoint(G, "%RETRY%g1_T", 0, 0, (0,), 1, 1, 0, "b"), retry, 3000)
    assert again.topic == "%DLQ%g1" and again.properties["RETRY_TOPIC"] == T
    engine.revived(ck, ck.revive_qid, 1)
    assert engine.checkpoints() == [] and engine.revive_offset(ck.revive_qid) == 1
    late = engine.ack(G, T, [plan.messages[0].handle], now_ms=2100)
    assert late.statuses == ["late"] and late.acks == []


def test_pending_ack_holds_the_revive(store):
    engine, view = _engine(), StoreView(store)
    plan = engine.pop(_req(max_msgs=1), view, now_ms=1000)
    engine.pop_done(plan)
    ack = engine.ack(G, T, [plan.messages[0].handle], now_ms=1999)
    ck = plan.checkpoints[0]
    _deliver(engine, ck, 0)
    assert engine.revive_decision(ck, 2500)[0] == "wait"          # the ack's put is in flight
    engine.ack_done(ack)
    assert engine.revive_decision(ck, 2500) == ("skip", ())
    failed = engine.ack(G, T, [plan.messages[0].handle], now_ms=1999)
    engine.ack_failed(failed)
    assert engine.revive_decision(ck, 2500) == ("skip", ())


def test_concurrent_pops_do_not_overlap_and_a_failed_ck_is_handed_out_again(store):
    engine, view = _engine(), StoreView(store)
    a = engine.pop(_req(max_msgs=2), view, now_ms=1000)
    _commit(store, a.offset_commits)                 # the queue's init offset, committed behind
    b = engine.pop(_req(max_msgs=2), view, now_ms=1000)
    assert [m.message.queue_offset for m in a.messages] == [0, 1]
    assert [m.message.queue_offset for m in b.messages] == [2, 3]
    engine.pop_done(b)
    _flush(engine, store, 0)
    assert store.query_offset(G, T, 0) == 0          # a's range is not covered by a committed ck yet
    engine.pop_failed(a)
    c = engine.pop(_req(max_msgs=5), view, now_ms=1100)
    assert [m.message.queue_offset for m in c.messages] == [0, 1]
    engine.pop_done(c)
    _flush(engine, store, 0)
    assert store.query_offset(G, T, 0) == 4
    d = engine.pop(_req(max_msgs=5), view, now_ms=1100)
    assert [m.message.queue_offset for m in d.messages] == [4]


def test_any_queue_tags_and_retry_topic(store):
    engine, view = _engine(), StoreView(store)
    plan = engine.pop(_req(queue_id=-1, max_msgs=10, tags=frozenset({"b"})), view, now_ms=1, rand=1)
    assert sorted(m.message.body for m in plan.messages) == [b"m0", b"m3", b"m6", b"m9"]
    assert {ck.queue_id for ck in plan.checkpoints} == {0, 1}
    engine.pop_done(plan)
    _flush(engine, store, 0)
    assert store.query_offset(G, T, 0) == 5 and store.query_offset(G, T, 1) == 5
    rt = handles.retry_topic(G, T)
    store.create_topic(rt, read_queue_nums=1, write_queue_nums=1)
    store.append(Message(topic=rt, body=b"r", reconsume_times=1, properties={"RETRY_TOPIC": T}))
    plan = engine.pop(_req(queue_id=-1, max_msgs=1), view, now_ms=5, rand=5)   # rand % 5 == 0: retry first
    assert plan.messages[0].message.body == b"r" and plan.messages[0].handle.split()[4] == "1"
    engine.pop_done(plan)
    ack = engine.ack(G, T, [plan.messages[0].handle], now_ms=6)
    assert ack.acks[0].topic == rt and ack.statuses == ["ok"]


def test_orderly_lock_redelivers_same_messages_and_commits_on_full_ack(store):
    engine, view = _engine(), StoreView(store)
    first = engine.pop(_req(orderly=True, max_msgs=2), view, now_ms=1000)
    assert [m.message.queue_offset for m in first.messages] == [0, 1] and first.checkpoints == []
    assert first.messages[0].handle.split()[3] == "999"
    assert engine.pop(_req(orderly=True), view, now_ms=1500).messages == []     # held
    again = engine.pop(_req(orderly=True, max_msgs=2), view, now_ms=2000)
    assert [m.message.queue_offset for m in again.messages] == [0, 1]
    assert again.order_counts[0][3] == 1 and again.messages[0].message.reconsume_times == 1
    plan = engine.ack(G, T, [m.handle for m in again.messages], now_ms=2100)
    assert plan.statuses == ["orderly", "orderly"] and plan.offset_commits == [(G, T, 0, 2)]
    _commit(store, plan.offset_commits)
    assert [m.message.queue_offset for m in engine.pop(_req(orderly=True), view, now_ms=2200).messages] == [2, 3, 4]


def test_change_invisible_time(store):
    engine, view = _engine(), StoreView(store)
    plan = engine.pop(_req(max_msgs=2), view, now_ms=1000)
    engine.pop_done(plan)
    change = engine.change_invisible_time(G, T, plan.messages[0].handle, 5000, now_ms=1500)
    assert change.checkpoint.offsets == (0,) and change.checkpoint.revive_time_ms == 6500
    assert handles.parse(change.handle).ck_queue_offset == 0 and change.ack.acks[0].offsets == (0,)
    engine.change_done(change)
    old = plan.checkpoints[0]
    _deliver(engine, old, 0)
    assert engine.revive_decision(old, 2000) == ("revive", (1,))
    with pytest.raises(UserError):
        engine.change_invisible_time(G, T, plan.messages[0].handle, 5000, now_ms=1600)   # acked by the change
    _deliver(engine, change.checkpoint, 1)
    assert engine.revive_decision(change.checkpoint, 6499)[0] == "wait"
    assert engine.revive_decision(change.checkpoint, 6500) == ("revive", (0,))


def test_a_follower_rebuilds_from_the_log_in_any_order_and_forgets_past_the_revive_offset(store):
    leader, view = _engine(), StoreView(store)
    plan = leader.pop(_req(), view, now_ms=1000)
    leader.pop_done(plan)
    ack = leader.ack(G, T, [plan.messages[0].handle], now_ms=1100)
    follower = PopEngine("b", "c")
    ck = plan.checkpoints[0]
    follower.observe(records.parse("ack", records.ack_message(ack.acks[0], "x", 0).body, 2000))   # ack first
    follower.observe(ck)
    follower.observe(ck, delivered=(ck.revive_qid, 4))
    assert follower.revive_decision(ck, 2000) == ("revive", (1, 2))
    [(seen, state, acked)] = follower.checkpoints()
    assert seen == ck and state == DUE and acked == {0}
    follower.set_revive_offset(ck.revive_qid, 5)
    assert follower.checkpoints() == []
    follower.observe(ck, delivered=(ck.revive_qid, 4))        # re-read: already done
    assert follower.checkpoints() == []


def test_init_mode_max_starts_at_the_end_when_first_touched_and_keeps_that_start(store):
    engine, view = _engine(), StoreView(store)
    plan = engine.pop(_req(init_mode=0), view, now_ms=1)
    assert plan.messages == [] and plan.offset_commits == [(G, T, 0, 5)]     # the init offset, committed
    engine.pop_done(plan)
    _flush(engine, store, 0)
    store.append(Message(topic=T, queue_id=0, body=b"later"))
    plan = engine.pop(_req(init_mode=0), view, now_ms=2)
    assert [m.message.body for m in plan.messages] == [b"later"]


def test_orderly_pop_between_the_full_ack_and_its_applied_commit_hands_out_nothing_acked(store):
    """The replicated offset commit of a full orderly ack is applied a little later (a Raft round
    trip); a pop in between must not hand the acked messages out again (a gRPC FIFO PushConsumer
    long-polls while it acks: seen on raft3 as an acked message delivered again, attempt 1)."""
    engine, view = _engine(), StoreView(store)
    first = engine.pop(_req(orderly=True, max_msgs=2), view, now_ms=1000)
    plan = engine.ack(G, T, [m.handle for m in first.messages], now_ms=1100)
    assert plan.offset_commits == [(G, T, 0, 2)]
    early = engine.pop(_req(orderly=True, max_msgs=2), view, now_ms=1150)    # commit not applied yet
    assert [m.message.queue_offset for m in early.messages] == [2, 3]
    _commit(store, plan.offset_commits)
    later = engine.ack(G, T, [m.handle for m in early.messages], now_ms=1200)
    _commit(store, later.offset_commits)
    assert [m.message.queue_offset for m in engine.pop(_req(orderly=True), view, now_ms=1300).messages] == [4]


def test_a_new_leader_skips_what_committed_checkpoints_cover_above_the_committed_offset(store):
    """Issue 19 finding: pop A (offset 0) is still writing its checkpoint when pop B (offset 1)
    commits its own and B's message is acked (answered); the consumer offset stays at 0 (A is not
    covered). The leader dies before A's ck commits. The new leader must hand out 0 again but
    never 1 (acked), and must not hand out the unacked messages that committed cks cover (they
    come back through the revive, after their invisible time)."""
    leader, view = _engine(), StoreView(store)
    a = leader.pop(_req(max_msgs=1), view, now_ms=1000)                  # its ck put never commits
    b = leader.pop(_req(max_msgs=1), view, now_ms=1000)
    c = leader.pop(_req(max_msgs=1), view, now_ms=1000)                  # covered, not acked
    leader.pop_done(b)
    leader.pop_done(c)
    _flush(leader, store, 1000)
    assert store.query_offset(G, T, 0) <= 0
    ack = leader.ack(G, T, [b.messages[0].handle], now_ms=1100)
    leader.ack_done(ack)                                                 # answered: never again
    follower = PopEngine("b", "c")                                       # fed from the log
    for item in (b.checkpoints[0], c.checkpoints[0], ack.acks[0]):
        follower.observe(item)
    follower.leader_changed()
    again = follower.pop(_req(max_msgs=5), view, now_ms=1200)
    assert [m.message.queue_offset for m in again.messages] == [0, 3, 4]
    assert [m.message.queue_offset for m in a.messages] == [0]


def _mreq(**kw):
    """A pop whose checkpoint may wait in the merge buffer (its revive time is far enough)."""
    return _req(invisible_time_ms=10_000, **kw)


def test_the_merge_buffer_writes_nothing_for_a_message_acked_within_its_window(store):
    engine, view, log = PopEngine("b", "c", merge_window_ms=1000), StoreView(store), []
    plan = engine.pop(_mreq(), view, now_ms=1000)
    assert [m.message.queue_offset for m in plan.messages] == [0, 1, 2] and not plan.writes()
    ack = engine.ack(G, T, [m.handle for m in plan.messages], now_ms=1050)
    assert ack.statuses == ["ok"] * 3 and ack.acks == [] and len(ack.tickets) == 1
    flush, durable = _flush(engine, store, 1052, log)
    assert log == [] and flush.offset_commits == [(G, T, 0, 3)] and durable == ack.tickets
    assert store.query_offset(G, T, 0) == 3
    assert _flush(engine, store, 5000, log)[0].empty()                     # nothing left to write


def test_a_window_that_closes_writes_the_checkpoint_with_its_acks_in_the_bitmap(store):
    engine, view, log = PopEngine("b", "c", merge_window_ms=1000), StoreView(store), []
    plan = engine.pop(_mreq(), view, now_ms=1000)
    ack = engine.ack(G, T, [plan.messages[1].handle], now_ms=1100)         # a partial ack waits...
    flush, durable = _flush(engine, store, 1102, log)                      # ...for the ck with its bit
    [ck] = log
    assert ck.offsets == (0, 1, 2) and ck.acked_offsets == (1,) and durable == ack.tickets
    assert store.query_offset(G, T, 0) == -1            # the offset passes it once the ck is committed:
    _flush(engine, store, 1103, log)                    # the next flush
    assert store.query_offset(G, T, 0) == 3
    back = records.parse("ck", records.ck_message(ck, "x").body, revive_qid=ck.revive_qid)
    assert back == ck
    follower = PopEngine("b", "c")
    follower.observe(back, delivered=(ck.revive_qid, 0))
    assert follower.revive_decision(ck, 10_999)[0] == "wait"
    assert follower.revive_decision(ck, 11_000) == ("revive", (0, 2))
    other = engine.pop(_mreq(), view, now_ms=1200)
    assert [m.message.queue_offset for m in other.messages] == [3, 4]
    assert _flush(engine, store, 2199, log)[0].timer_cks == []
    assert _flush(engine, store, 2200, log)[0].timer_cks[0].offsets == (3, 4)   # its window closed
    late = engine.ack(G, T, [other.messages[0].handle], now_ms=2300)       # written: an ack record
    assert late.tickets == [] and late.acks[0].offsets == (3,)


def test_an_ack_above_a_hole_is_made_durable_at_once_and_a_new_leader_skips_it(store):
    engine, view, log = PopEngine("b", "c", merge_window_ms=1000), StoreView(store), []
    a = engine.pop(_mreq(max_msgs=1), view, now_ms=1000)
    b = engine.pop(_mreq(max_msgs=1), view, now_ms=1000)
    ack = engine.ack(G, T, [b.messages[0].handle], now_ms=1010)
    flush, durable = _flush(engine, store, 1012, log)
    assert flush.timer_cks == [] and [ck.offsets for ck in flush.done_cks] == [(1,)] and durable == ack.tickets
    assert store.query_offset(G, T, 0) <= 0                                 # a is still out
    done = records.ck_done_message(flush.done_cks[0], "x")
    assert "TIMER_DELIVER_MS" not in done.properties                        # straight on the revive log
    follower = PopEngine("b", "c")                                          # the leader dies now
    follower.observe(records.parse("ck", done.body, revive_qid=0), delivered=(0, 0))
    assert follower.revive_decision(flush.done_cks[0], 1013) == ("skip", ())   # nothing to revive, ever
    follower.leader_changed()
    again = follower.pop(_mreq(max_msgs=5), view, now_ms=1100)
    assert [m.message.queue_offset for m in again.messages] == [0, 2, 3, 4]   # a again at once, b never
    assert [m.message.queue_offset for m in a.messages] == [0]


def test_a_failover_inside_the_window_hands_the_buffered_messages_out_again_and_loses_none(store):
    engine, view = PopEngine("b", "c", merge_window_ms=1000), StoreView(store)
    plan = engine.pop(_mreq(max_msgs=5), view, now_ms=1000)
    engine.ack(G, T, [plan.messages[0].handle], now_ms=1010)       # merged; its answer waits for a flush
    follower = PopEngine("b", "c")                                 # nothing of it reached the log
    follower.leader_changed()
    again = follower.pop(_mreq(max_msgs=5), view, now_ms=1020)
    assert [m.message.queue_offset for m in again.messages] == [0, 1, 2, 3, 4]


def test_orderly_locks_survive_a_failover(store):
    leader, view = _engine(), StoreView(store)
    first = leader.pop(_req(orderly=True, max_msgs=3, invisible_time_ms=1000), view, now_ms=1000)
    [lock] = first.order_locks
    follower = PopEngine("b", "c")
    follower.observe(records.parse("oLock", records.order_lock_message(lock, "x", 0).body))
    follower.leader_changed()
    assert follower.pop(_req(orderly=True), view, now_ms=1500).messages == []      # still held
    acked = follower.ack(G, T, [first.messages[0].handle], now_ms=1600, view=view)   # the holder acks
    assert acked.statuses == ["orderly"] and acked.offset_commits == [(G, T, 0, 1)]
    _commit(store, acked.offset_commits)
    change = follower.change_invisible_time(G, T, first.messages[1].handle, 1000, now_ms=1700, view=view)
    assert change.order_lock is not None and change.order_lock.until_ms == 2700
    assert follower.pop(_req(orderly=True), view, now_ms=2500).messages == []      # moved by the change
    again = follower.pop(_req(orderly=True, max_msgs=3), view, now_ms=2700)
    assert [m.message.queue_offset for m in again.messages] == [1, 2, 3]            # never the acked 0
    assert again.messages[0].message.reconsume_times == 1 and again.order_locks[0].attempts == 1


def test_a_flush_whose_puts_or_offset_commits_fail_is_done_again_and_fails_only_what_it_dropped(store):
    engine, view = PopEngine("b", "c", merge_window_ms=1000), StoreView(store)
    a = engine.pop(_mreq(max_msgs=1), view, now_ms=1000)
    b = engine.pop(_mreq(max_msgs=1), view, now_ms=1000)
    ack_b = engine.ack(G, T, [b.messages[0].handle], now_ms=1010)        # above a: its ck must be written
    failed_put = engine.flush(1012)
    assert [ck.offsets for ck in failed_put.done_cks] == [(1,)]
    assert engine.flush_done(failed_put, written=False, committed=True) == ([], [])   # b waits on
    again = engine.flush(1013)
    assert [ck.offsets for ck in again.done_cks] == [(1,)]                # written again, same ck
    assert engine.flush_done(again) == (ack_b.tickets, [])
    ack_a = engine.ack(G, T, [a.messages[0].handle], now_ms=1020)        # a and b resolved: offset 2
    failed_commit = engine.flush(1030)
    assert failed_commit.offset_commits == [(G, T, 0, 2)] and failed_commit.tickets == ack_a.tickets
    assert engine.flush_done(failed_commit, committed=False) == ([], ack_a.tickets)   # that ack fails
    retry = engine.flush(1040)
    assert retry.offset_commits == [(G, T, 0, 2)] and retry.empty() is False       # the offset goes on


def test_an_ack_retried_on_the_new_leader_after_its_merged_first_try_is_ok_not_late(store):
    """The first ack was merged and made durable by the offset (its span dropped, no ck ever
    written); its answer was lost with the leader; the client's retry on the new leader must not be
    told the handle expired (seen with the Node 5.x client: INVALID_RECEIPT_HANDLE, then the test
    waited for a redelivery that never comes, rightly)."""
    leader, view, log = PopEngine("b", "c", merge_window_ms=1000), StoreView(store), []
    plan = leader.pop(_mreq(max_msgs=2), view, now_ms=1000)
    leader.ack(G, T, [m.handle for m in plan.messages], now_ms=1010)
    _flush(leader, store, 1012, log)
    assert log == [] and store.query_offset(G, T, 0) == 2
    follower = PopEngine("b", "c")
    follower.leader_changed()
    retry = follower.ack(G, T, [plan.messages[1].handle], now_ms=1100, view=view)
    assert retry.statuses == ["ok"] and retry.acks == [] and retry.tickets == []
    late = follower.ack(G, T, [plan.messages[1].handle], now_ms=11_000, view=view)   # past its revive time
    assert late.statuses == ["late"]
    other = leader.pop(_mreq(max_msgs=1), view, now_ms=1200)       # lost with the leader, never acked
    assert follower.ack(G, T, [other.messages[0].handle], now_ms=1300, view=view).statuses == ["late"]


def test_an_ack_committed_without_its_checkpoint_is_never_handed_out_again(store):
    """Issue 19 (the Node client's K-10): an ack that comes while its checkpoint is being written
    is an ack record that waits for that checkpoint (``AckPlan.after``); should the log still hold
    the ack without the checkpoint (a put of the flush that failed while the ack's went through),
    a new leader must not hand the acked message out again; the others of the span it must."""
    leader, view = PopEngine("b", "c", merge_window_ms=1000), StoreView(store)
    plan = leader.pop(_mreq(), view, now_ms=1000)
    flush = leader.flush(2000)                                     # the window closed: ck being put
    assert [ck.offsets for ck in flush.timer_cks] == [(0, 1, 2)]
    ack = leader.ack(G, T, [plan.messages[1].handle], now_ms=2001)
    assert ack.statuses == ["ok"] and [a.offsets for a in ack.acks] == [(1,)] and len(ack.after) == 1
    assert leader.flush_done(flush, written=True) == (ack.after, [])    # the ack's record may go now
    follower = PopEngine("b", "c")                                 # only the ack reached the log
    follower.observe(ack.acks[0])
    follower.leader_changed()
    again = follower.pop(_mreq(max_msgs=5), view, now_ms=2100)
    assert [m.message.queue_offset for m in again.messages] == [0, 2, 3, 4]


def test_an_orderly_ack_out_of_order_is_replicated_and_never_handed_out_again(store):
    """Issue 19: a later message of an orderly lock acked before an earlier one (the consumer
    offset cannot pass it) is put as the lock record again with its bitmap; once the invisible
    time passes, only what is not acked comes again, in order, on this leader and on a new one."""
    leader, view = _engine(), StoreView(store)
    first = leader.pop(_req(orderly=True, max_msgs=3, invisible_time_ms=1000), view, now_ms=1000)
    assert [m.message.queue_offset for m in first.messages] == [0, 1, 2]
    [lock] = first.order_locks
    ack = leader.ack(G, T, [first.messages[1].handle], now_ms=1100, view=view)
    assert ack.statuses == ["orderly"] and ack.offset_commits == [(G, T, 0, 0)]      # 0 not acked
    _commit(store, ack.offset_commits)
    [rec] = ack.order_locks
    assert rec.acked_offsets == (1,) and rec.pop_time_ms == lock.pop_time_ms
    stored = records.parse("oLock", records.order_lock_message(rec, "x", 0).body)
    assert stored == rec
    leader.ack_done(ack)
    follower = PopEngine("b", "c")                                    # fed from the log
    follower.observe(records.parse("oLock", records.order_lock_message(lock, "x", 0).body))
    follower.observe(stored)
    follower.leader_changed()
    for engine in (leader, follower):
        again = engine.pop(_req(orderly=True, max_msgs=3), view, now_ms=2000)
        assert [m.message.queue_offset for m in again.messages] == [0, 2]
        assert again.order_locks[0].attempts == 1
    done = follower.ack(G, T, [m.handle for m in again.messages[:1]], now_ms=2100, view=view)
    assert done.offset_commits == [(G, T, 0, 2)]                      # past the acked 1 as well
    _commit(store, done.offset_commits)
    last = follower.ack(G, T, [again.messages[1].handle], now_ms=2200, view=view)
    assert last.offset_commits == [(G, T, 0, 3)] and last.order_locks == []


def test_a_flush_whose_puts_partly_fail_writes_again_only_what_failed_and_a_checkpoint_revives_once(store):
    """Issue 19: a flush writes the checkpoints of two queues; one put commits, the other fails
    while this replica still leads. Only the failed one is written again; and a checkpoint that is
    in the log twice anyway (a put that failed but committed) is revived once, on any replica."""
    engine, view = PopEngine("b", "c", merge_window_ms=1000), StoreView(store)
    a = engine.pop(_mreq(queue_id=0, max_msgs=2), view, now_ms=1000)
    b = engine.pop(_mreq(queue_id=1, max_msgs=2), view, now_ms=1000)
    first = engine.flush(2000)                                        # both windows closed
    ck_a, ck_b = sorted(first.timer_cks, key=lambda ck: ck.queue_id)
    assert engine.flush_done(first, unwritten={ck_b.key}) == ([], [])  # a's put committed, b's failed
    again = engine.flush(2001)
    assert again.timer_cks == [ck_b] and again.done_cks == []
    engine.flush_done(again)
    assert {ck.key for ck, _, _ in engine.checkpoints()} == {ck_a.key, ck_b.key}
    follower = PopEngine("b", "c")
    for e in (engine, follower):
        e.observe(ck_a, delivered=(ck_a.revive_qid, 0))
        assert e.revive_decision(ck_a, 11_000) == ("revive", (0, 1))
    engine.revived(ck_a, ck_a.revive_qid, 1)
    follower.set_revive_offset(ck_a.revive_qid, 1)
    for e in (engine, follower):                                       # the same ck again, later in the log
        e.observe(ck_a, delivered=(ck_a.revive_qid, 1))
        assert e.revive_decision(ck_a, 11_001) == ("skip", ())
    assert [m.message.queue_offset for m in a.messages + b.messages] == [0, 1, 0, 1]
