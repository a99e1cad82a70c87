"""The batch sends of one read (``handlers_send_batch.on_send_batches``): one Raft proposal for the
BatchCQ batches stored as sent, and for every request the answer, the stored messages and the
counters that ``on_send_batch`` one request at a time gives (in process, one replica)."""
from __future__ import annotations

from mqbench.admin.calls import create_topic, query_runtime_info
from mqbench.broker.formats import codes
from mqbench.broker.formats import record_layout
from mqbench.broker.formats.batch import BatchItem, encode_batch

from send_requests import counted_proposals, read_topic, send_all, v2_header
from test_broker_inprocess import InProcessCluster, run


def _v2(topic: str, properties: dict[str, str] | str | None = None, **fields) -> dict:
    return v2_header("PID_batches", topic, properties, batch=True, **fields)


def _items(n: int, tag: str = "t", extra: dict[str, str] | None = None) -> bytes:
    return encode_batch([BatchItem(f"{tag}{i}".encode() * 20, {"UNIQ_KEY": f"{i:032X}", "TAGS": tag, **(extra or {})})
                         for i in range(n)])


def _cases() -> list[tuple[int, dict, bytes]]:
    """Batch requests of every kind: stored as sent (fast), refused on that path, and those that
    take ``on_send_batch`` (a SimpleCQ topic, a delay property in an item, a new topic, ...)."""
    b = codes.SEND_BATCH_MESSAGE
    odd = bytearray(_items(2, "o"))
    odd[4:8] = b"\0\0\0\1"          # a MAGICCODE the encoder would not write: decoded, stored as it encodes
    return [
        (b, _v2("B", {"UNIQ_KEY": "C0A8" * 8}), _items(64)),                             # 0 fast
        (b, _v2("B", {"TAGS": "hdr", "KEYS": "k1 k2"}, queue_id=1), _items(5, "x")),     # 1 fast
        (b, _v2("B", {"DELAY": "3"}), _items(2)),                                        # 2 refused: delay
        (b, _v2("B"), _items(3, "d", {"DELAY": "2"})),                                   # 3 slow: refused
        (b, _v2("B", queue_id=9), _items(2)),                                            # 4 refused: queue
        (b, _v2("B", sys_flag=record_layout.SYSFLAG_TX_PREPARED), _items(2)),            # 5 refused: half
        (b, _v2("B"), b""),                                                              # 6 slow: empty
        (b, {"a": "PID_batches"}, _items(2)),                                            # 7 refused: no topic
        (b, _v2("../x"), _items(2)),                                                     # 8 refused: topic
        (b, _v2("T", {"UNIQ_KEY": "AB" * 16}, queue_id=2), _items(4, "s")),              # 9 slow: SimpleCQ
        (b, _v2("B", queue_id=3), bytes(odd)),                                           # 10 slow: odd body
        (b, _v2("Fresh"), _items(2, "f")),                                               # 11 slow: new topic
        (b, _v2("B", {"UNIQ_KEY": "EF" * 16}, queue_id=2), _items(7, "z")),              # 12 fast
        (b, _v2("B", "A\x01b\x02\x02C\x01\x02A\x01c", queue_id=1), _items(3, "n")),       # 13 fast, odd string
        (b, _v2("B", {"INNER_NUM": "999", "KEYS": "k"}), _items(2, "i")),                 # 14 fast, INNER_NUM
    ]


def _stored(store, topic: str) -> list[tuple]:
    return [(m.queue_id, m.queue_offset, m.topic, m.body, m.properties, m.flag, m.sysflag, m.born_timestamp_ms)
            for m in read_topic(store, topic)]


def test_the_batch_sends_of_one_read_are_one_proposal_answered_as_one_by_one(tmp_path):
    cases = _cases()
    fast = 5

    async def scenario():
        results = {}
        for one_read in (True, False):
            async with InProcessCluster(tmp_path / str(one_read), 1, subnet=26 + one_read) as cluster:
                leader = await cluster.leader()
                addr = leader.instance.addr
                if not one_read:
                    leader.server.batch_handlers = {}    # new connections take the single-request path
                await create_topic(addr, "B", queues=4, attributes={"queue.type": "BatchCQ"})
                await create_topic(addr, "T", queues=4)
                before = int((await query_runtime_info(addr, 5))["putMessageCount"])
                with counted_proposals(leader.group.driver) as proposed:
                    answers = await send_all(addr, cases, 100, one_read)
                after = int((await query_runtime_info(addr, 5))["putMessageCount"])
                store = leader.group.store
                put = leader.ctx.counters.put_message_count, leader.ctx.counters.put_request_count
                results[one_read] = (answers, proposed, {t: _stored(store, t) for t in ("B", "T", "Fresh")},
                                     after - before, put)
        return results

    results = run(scenario(), timeout_s=60)
    (many, many_proposed, many_stored, many_acked, many_put) = results[True]
    (single, single_proposed, single_stored, single_acked, single_put) = results[False]
    assert many_proposed[0] == fast, many_proposed        # the stored-as-sent batches: one proposal
    assert sorted(many) == sorted(single) == [100 + i for i in range(len(cases))]
    for opaque in many:
        a, b = many[opaque], single[opaque]
        assert (a.code, a.remark, a.flag, a.language, a.version) == (b.code, b.remark, b.flag, b.language,
                                                                     b.version), cases[opaque - 100]
        assert a.ext_fields.keys() == b.ext_fields.keys()
        if a.code == codes.SUCCESS:
            assert a.ext_fields["queueOffset"] == b.ext_fields["queueOffset"], opaque
            assert a.ext_fields.get("transactionId") == b.ext_fields.get("transactionId")
            assert len(a.ext_fields["msgId"]) == len(b.ext_fields["msgId"])
    ok = sorted(o - 100 for o, a in many.items() if a.code == codes.SUCCESS)
    assert ok == [0, 1, 9, 10, 11, 12, 13, 14], {o: (a.code, a.remark) for o, a in many.items()}
    assert many_stored == single_stored and len(many_stored["B"]) == 64 + 5 + 2 + 7 + 3 + 2
    assert many_acked == single_acked == 64 + 5 + 4 + 2 + 2 + 7 + 3 + 2
    assert many_put == single_put
