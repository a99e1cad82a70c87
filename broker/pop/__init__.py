"""POP consumption (RocketMQ 5's broker-side consumption): the engine, its state records, the adapter.

Room: ``broker/pop/`` sits beside ``broker/timer/`` and is built the same way: pure cores
(``handles``: the ``extraInfo`` receipt handle and the pop response's offset strings;
``records``: ck/ack/bAck messages; ``engine``: the state table) and one asyncio adapter
(``service``: ``PopService``, which owns the engine of one broker replica, feeds it the log, runs
the revive service and the merge buffer's flush on the leader and does the puts) with ``view``
(the engine's reads of the store); ``spans`` (the leader's cursors and merge buffer), ``orderly``
(replicated orderly locks) and ``plans`` are pure parts of the engine. The remoting codes are served by ``broker/server/handlers_pop.py``; the gRPC endpoint
calls the same ``PopService``. Nothing else keeps POP state: it is ck/ack/oLock/rMode messages on
``rmq_sys_REVIVE_LOG_<cluster>`` (ck/ack through the timer store) plus consumer offsets, all in the
replicated log, so ``inspect`` and ``migrate`` see a valid store; the leader's merge buffer holds
checkpoints for at most ``spans.MERGE_WINDOW_MS`` (1 s) before any of that is written.

The interface for request handlers (remoting or gRPC), on the broker's event loop::

    pop = ctx.pop                       # PopService, set by service.attach_to_broker(broker)
    result = await pop.pop(PopRequest(group, topic, queue_id_or_-1, max_msgs, invisible_time_ms,
                                      init_mode=INIT_MODE_MAX|INIT_MODE_MIN, orderly=False,
                                      tags=None|frozenset), poll_ms=0)
    #   -> PopResult(code, plan): code SUCCESS 0 (plan.messages: [Popped(message, handle, topic)],
    #      message = the stored Message with POP_CK = its handle; reconsume_times counts attempts),
    #      POLLING_TIMEOUT 210 (nothing within poll_ms), POLLING_FULL 209 (too many waiting);
    #      plan.pop_time_ms, plan.revive_qid, plan.start_offsets/msg_offsets/order_counts/rest_num
    #      for the remoting response header. Answers at once for checkpoints kept in the merge
    #      buffer, after their put for the others (a revive time too near) and for orderly locks.
    ack = await pop.ack(group, topic, [extra_info, ...])          # -> AckPlan, .statuses per handle:
    #      "ok" (acked: will not come back), "late" (its checkpoint was already revived or is
    #      unknown: nothing changed; the message comes back / came back), "orderly"; answered once
    #      the ack is durable on a quorum (spans module doc)
    change = await pop.change_invisible_time(group, topic, extra_info, invisible_time_ms)
    #   -> ChangePlan: .handle (the new receipt handle), .pop_time_ms, .invisible_time_ms,
    #      .revive_qid; UserError when the handle is no longer in flight
    msgs = await pop.peek(group, topic, queue_id, max_msgs)       # [Message], nothing reserved
    await pop.set_request_mode(topic, group, "PULL"|"POP", pop_share_queue_num)   # replicated;
    #      pop.engine.request_modes[(topic, group)] -> (mode, pop_share_queue_num) on every replica
    has = await pop.notification(group, topic, queue_id, poll_ms) # bool (long polled)

``group``/``topic`` are the consumer group and the topic the client subscribed (for a redelivered
message the handle says it came from ``%RETRY%<group>_<topic>``; its ``RETRY_TOPIC`` property holds
the original topic). Every write method raises the replicated group's ``NotLeader`` on a follower
(handlers turn it into the not-leader answer) and ``UserError`` for a malformed handle or
argument. Timing: a message not acked comes back at its revive time (pop time + invisible time) or
later, by the timer's precision, never earlier, except after a failover less than the merge window
after its pop (then at once, attempt 1 again: never lost); acked (answered) before that, it never
comes back, across failovers. Redelivered messages arrive from the group's retry topic with reconsume_times + 1; after
``max_reconsume_times`` (16) they go to ``%DLQ%<group>``.
"""
