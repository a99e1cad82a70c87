"""The sends of one read (``handlers_send.on_send_many``): one Raft proposal for those that pass,
and for every request the answer the single-request path gives (in process, one replica)."""
from __future__ import annotations

import random

import pytest

from mqbench.broker.formats import codes
from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_layout
from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.broker.formats.command import RemotingCommand, encode_command, send_success_frame

from send_requests import counted_proposals, read_topic, send_all, v2_header
from test_broker_inprocess import InProcessCluster, run


def _v2(topic: str, properties: dict[str, str] | str | None = None, **fields) -> dict:
    return v2_header("PID_many", topic, properties, **fields)


def _cases() -> list[tuple[int, dict, bytes]]:
    """Requests of every kind the send path answers: fast successes, refusals, and those that wait."""
    uniq = {"UNIQ_KEY": "C0A8" * 8}
    big = "v" * 31_800        # over SEND_PROPERTIES_BYTES_MAX as stored
    return [
        (codes.SEND_MESSAGE_V2, _v2("T", {**uniq, "TAGS": "a", "KEYS": "k1 k2"}), b"plain"),
        (codes.SEND_MESSAGE_V2, _v2("T", {"UNIQ_KEY": "é\"\\x", "TAGS": "ü", "名": "値"}, queue_id=-1), b"unicode"),
        (codes.SEND_MESSAGE_V2, _v2("T", "A\x01b\x02\x02C\x01\x02A\x01c"), b"odd property string"),
        (codes.SEND_MESSAGE_V2, _v2("T", {"DELAY": "2", **uniq}), b"delayed"),
        (codes.SEND_MESSAGE_V2, _v2("T", {"TIMER_DELAY_SEC": "30"}, queue_id=3), b"timer"),
        (codes.SEND_MESSAGE_V2, _v2("T", {"TRAN_MSG": "true"}, sys_flag=record_layout.SYSFLAG_TX_COMMIT), b"committed tx"),
        (codes.SEND_MESSAGE_V2, _v2("../x"), b"bad topic"),
        (codes.SEND_MESSAGE_V2, _v2("SCHEDULE_TOPIC_XXXX"), b"forbidden"),
        (codes.SEND_MESSAGE_V2, _v2("T"), b""),
        (codes.SEND_MESSAGE_V2, _v2("T", queue_id=9), b"no such queue"),
        (codes.SEND_MESSAGE_V2, _v2("T", sys_flag=record_layout.SYSFLAG_TX_PREPARED), b"half"),
        (codes.SEND_MESSAGE_V2, _v2("T", sys_flag=record_layout.SYSFLAG_INNER_BATCH), b"inner"),
        (codes.SEND_MESSAGE_V2, {"a": "PID_many"}, b"no topic"),
        (codes.SEND_MESSAGE_V2, {**_v2("T"), "e": "ten"}, b"bad queue id"),
        (codes.SEND_MESSAGE_V2, _v2("T", {"X": big}), b"properties too large"),
        (codes.SEND_MESSAGE_V2, _v2("T", "\x01v\x02"), b"empty name: dropped"),
        (codes.SEND_MESSAGE_V2, _v2("T", {"TIMER_DELAY_SEC": "x"}), b"bad timer"),
        (codes.SEND_MESSAGE_V2, _v2("Fresh", uniq), b"first send to a new topic"),
        (codes.SEND_MESSAGE_V2, {**_v2("T", uniq), "m": "true"},
         encode_batch([BatchItem(b"b0", {"TAGS": "t"}), BatchItem(b"b1", {})])),
        (codes.SEND_MESSAGE_V2, _v2("T", uniq, flag=7, reconsume_times=2), b"last"),
        (codes.SEND_MESSAGE, {"producerGroup": "P", "topic": "T", "queueId": "1", "sysFlag": "0",
                              "bornTimestamp": "5", "flag": "0", "properties": "TAGS\x01v1\x02"}, b"long names"),
        (codes.SEND_MESSAGE, {"producerGroup": "P", "topic": "../y", "queueId": "1"}, b"long names, bad topic"),
    ]


def _comparable(msg: rec.Message) -> tuple:
    """What a record holds apart from where and when it was stored and the sender's port."""
    return (msg.topic, msg.body, msg.properties, msg.flag, msg.sysflag, msg.born_timestamp_ms, msg.born_host[0],
            msg.reconsume_times, msg.version)


def test_the_sends_of_one_read_are_one_proposal_answered_as_the_single_path_answers(tmp_path):
    cases = _cases()
    fast_v2 = 9          # the V2 sends that pass every check and need no topic creation: 0-5, 15, 16, 19

    async def scenario():
        results = {}
        for one_read in (True, False):
            async with InProcessCluster(tmp_path / str(one_read), 1, subnet=5 + one_read) as cluster:
                leader = await cluster.leader()
                addr = leader.instance.addr
                leader.ctx.rng.seed(7)
                if not one_read:
                    leader.server.batch_handlers = {}    # new connections take the single-request path
                warm = await send_all(addr, [(codes.SEND_MESSAGE_V2, _v2("T"), b"creates T")], 1, True)
                assert warm[1].code == codes.SUCCESS
                with counted_proposals(leader.group.driver) as proposed:
                    answers = await send_all(addr, cases, 100, one_read)
                store = leader.group.store
                results[one_read] = (answers, proposed, {t: read_topic(store, t) for t in
                                                         ("T", "Fresh", "SCHEDULE_TOPIC_XXXX", "rmq_sys_wheel_timer")})
        return results

    results = run(scenario(), timeout_s=60)
    (many, many_proposed, many_stored), (single, single_proposed, single_stored) = results[True], results[False]
    assert many_proposed[0] == fast_v2 and single_proposed[:fast_v2] == [1] * fast_v2
    assert sorted(many) == sorted(single) == [100 + i for i in range(len(cases))]
    for opaque in many:
        a, b = many[opaque], single[opaque]
        assert (a.code, a.remark, a.flag, a.language, a.version) == (b.code, b.remark, b.flag, b.language,
                                                                     b.version), cases[opaque - 100]
        assert a.ext_fields.keys() == b.ext_fields.keys()
        if a.code == codes.SUCCESS:
            assert a.ext_fields.get("transactionId") == b.ext_fields.get("transactionId")
            assert len(a.ext_fields["msgId"]) == len(b.ext_fields["msgId"])
    assert sum(a.code == codes.SUCCESS for a in many.values()) == 12
    assert "take" in many[114].remark and many[114].code == codes.MESSAGE_ILLEGAL
    for topic, stored in many_stored.items():
        assert sorted(map(_comparable, stored)) == sorted(map(_comparable, single_stored[topic])), topic


@pytest.mark.parametrize("seed", range(3))
def test_the_prebuilt_send_answer_is_the_encoded_command_byte_for_byte(seed):
    rng = random.Random(seed)
    alphabet = "aZ09\"\\/\n\t\x00\x1f\x7fé名😀\u2028"
    for _ in range(300):
        opaque, version = rng.randrange(-(1 << 31), 1 << 31), rng.choice([0, 317, 401, -1, 32767])
        msg_id = rng.choice(["".join(rng.choice("0123456789ABCDEF") for _ in range(32)),
                             "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40)))])
        queue_id, queue_offset = rng.randrange(0, 1 << 31), rng.randrange(0, 1 << 63)
        tid = rng.choice([None, "", "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))])
        ext = {"msgId": msg_id, "queueId": str(queue_id), "queueOffset": str(queue_offset)}
        if tid is not None:
            ext["transactionId"] = tid
        expected = encode_command(RemotingCommand(code=codes.SUCCESS, opaque=opaque, flag=codes.FLAG_RESPONSE,
                                                  language="JAVA", version=version, ext_fields=ext))
        assert send_success_frame(opaque, version, msg_id, queue_id, queue_offset, tid) == expected
