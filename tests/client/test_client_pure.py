"""Pure parts of the client: allocation, route parsing, message ids, pulled-body decoding."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.broker.formats import record as rec
from mqbench.broker.formats import record_layout
from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.client.messages import OutgoingMessage, UniqueIdGenerator, decode_pulled
from mqbench.client.routes import MessageQueue, TopicRoute, allocate_averagely
from mqbench.codecs.registry import TYPE_ID_ZSTD, parse_codec
from mqbench.errors import CorruptDataError, PeerError, UserError


def mqs(n, broker="b"):
    return [MessageQueue("T", broker, i) for i in range(n)]


@pytest.mark.parametrize("n_mq, n_cid, sizes", [
    (8, 3, [3, 3, 2]), (4, 4, [1, 1, 1, 1]), (2, 3, [1, 1, 0]), (10, 4, [3, 3, 2, 2]), (1, 1, [1]),
])
def test_average_allocation_matches_rocketmq(n_mq, n_cid, sizes):
    cids = [f"c{i}" for i in range(n_cid)]
    shares = [allocate_averagely(c, mqs(n_mq), list(reversed(cids))) for c in cids]
    assert [len(s) for s in shares] == sizes
    assert shares[0] == sorted(mqs(n_mq))[:sizes[0]]  # consecutive blocks, from the start


@given(st.integers(0, 40), st.integers(1, 12))
def test_allocation_partitions_the_queues(n_mq, n_cid):
    cids = [f"c{i:02d}" for i in range(n_cid)]
    shares = [allocate_averagely(c, mqs(n_mq), cids) for c in cids]
    flat = [q for s in shares for q in s]
    assert sorted(flat) == sorted(mqs(n_mq)) and len(set(flat)) == len(flat)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert allocate_averagely("stranger", mqs(n_mq), cids) == []


def test_route_parse_standard_and_bare_integer_keys():
    standard = (b'{"queueDatas":[{"brokerName":"g1","readQueueNums":2,"writeQueueNums":2,"perm":6,"topicSysFlag":0},'
                b'{"brokerName":"g0","readQueueNums":2,"writeQueueNums":1,"perm":4,"topicSysFlag":0}],'
                b'"brokerDatas":[{"cluster":"c","brokerName":"g0","brokerAddrs":{"0":"a:1","1":"b:1"}},'
                b'{"cluster":"c","brokerName":"g1","brokerAddrs":{"1":"c:1"}}]}')
    java_old = standard.replace(b'"0":', b'0:').replace(b'"1":', b'1:')
    for body in (standard, java_old):
        route = TopicRoute.parse("T", body)
        assert route.brokers["g0"].addrs == {0: "a:1", 1: "b:1"}
        assert route.write_queues() == []  # g0 is read-only, g1 has no master
        assert route.read_queues() == [MessageQueue("T", "g0", 0), MessageQueue("T", "g0", 1),
                                       MessageQueue("T", "g1", 0), MessageQueue("T", "g1", 1)]
        assert route.brokers["g1"].read_addr() == "c:1" and route.master_addrs() == ["a:1"]
    for bad in (b"{", b'{"queueDatas":[{"brokerName":"x"}]}', b"\xff", b'{"brokerDatas":5}'):
        with pytest.raises(PeerError):
            TopicRoute.parse("T", bad)


def test_unique_ids_have_rocketmqs_layout():
    now = [1_700_000_000_000]
    gen = UniqueIdGenerator("10.1.2.3", 4321, 0x12345678, lambda: now[0], 1_698_796_800_000)
    first, second = gen.next(), gen.next()
    assert len(first) == 32 and first == first.upper()
    assert first[:8] == "0A010203" and first[8:12] == "10E1" and first[12:20] == "12345678"
    assert int(first[20:28], 16) == now[0] - 1_698_796_800_000
    assert first[28:] == "0001" and second[28:] == "0002"


def test_outgoing_properties_and_their_checks():
    msg = OutgoingMessage("T", b"x", tags="paid", keys=["k1", "k2"], properties={"seq": "3"}, deliver_at_ms=99)
    props = msg.wire_properties("ID")
    assert props == {"seq": "3", "TAGS": "paid", "KEYS": "k1 k2", "TIMER_DELIVER_MS": "99", "UNIQ_KEY": "ID",
                     "WAIT": "true"}
    assert OutgoingMessage("T", b"x", delay_level=3).wire_properties("I")["DELAY"] == "3"
    assert OutgoingMessage("T", b"x", delay_ms=1500).wire_properties("I")["TIMER_DELAY_MS"] == "1500"
    with pytest.raises(UserError, match="choose one"):
        OutgoingMessage("T", b"x", delay_level=2, delay_ms=5).wire_properties("I")
    with pytest.raises(UserError, match="delay level 19"):
        OutgoingMessage("T", b"x", delay_level=19).wire_properties("I")


def record(body, *, sysflag=0, properties=None, queue_offset=0, physical_offset=0):
    return rec.encode_message(rec.Message(topic="T", body=body, properties=properties or {"TAGS": "a"}, queue_id=1,
                                          queue_offset=queue_offset, physical_offset=physical_offset, sysflag=sysflag,
                                          born_timestamp_ms=1000, store_timestamp_ms=1005,
                                          store_host=("127.0.0.1", 10911)))


def test_decode_pulled_plain_compressed_and_inner_batch():
    zstd = parse_codec("zstd:3")
    payload = b"order-" * 1000
    batch = encode_batch([BatchItem(b"one", {"TAGS": "a", "UNIQ_KEY": "U1"}), BatchItem(b"two", {"TAGS": "b"})])
    body = (record(b"plain", queue_offset=5)
            + record(zstd.compress(payload), sysflag=record_layout.SYSFLAG_COMPRESSED | (TYPE_ID_ZSTD << 8), queue_offset=6,
                     physical_offset=100)
            + record(batch, sysflag=record_layout.SYSFLAG_NEED_UNWRAP | record_layout.SYSFLAG_INNER_BATCH, queue_offset=7,
                     properties={"INNER_NUM": "2", "INNER_BASE": "7"}, physical_offset=300))
    got = decode_pulled(body, "g0")
    assert [(m.queue_offset, m.body[:6]) for m in got] == [(5, b"plain"), (6, b"order-"), (7, b"one"), (8, b"two")]
    assert got[1].body == payload and got[2].msg_id == "U1" and got[3].tags == "b"
    assert got[0].born_timestamp_ms == 1000 and got[0].store_timestamp_ms == 1005
    assert got[0].offset_msg_id == rec.message_id(("127.0.0.1", 10911), 0) == got[0].msg_id


def test_decode_pulled_refuses_damage_and_bombs():
    good = record(b"payload")
    damaged = good[:-8] + b"\x00" * 8
    for body in (damaged, good[:-1], good + b"\x01\x02"):
        with pytest.raises(CorruptDataError):
            decode_pulled(body, "g0")
    bomb = record(parse_codec("zlib").compress(b"\0" * (1 << 20)), sysflag=record_layout.SYSFLAG_COMPRESSED)
    with pytest.raises(CorruptDataError, match="zlib"):
        decode_pulled(bomb, "g0", body_size_max=1024)
    assert decode_pulled(b"", "g0") == []


@given(st.binary(max_size=200))
def test_decode_pulled_fuzz_raises_only_corrupt_data_error(blob):
    try:
        decode_pulled(blob, "g0")
    except CorruptDataError:
        pass
