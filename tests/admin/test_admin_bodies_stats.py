"""Pure parts: the admin bodies' fastjson shapes (MessageQueue objects as map keys, Properties text)
and the broker's stats windows (time passed in)."""
from __future__ import annotations

import pytest

from mqbench.broker.formats import admin_bodies as bodies
from mqbench.broker.server.stats import BrokerStats, StatsItem
from mqbench.broker.formats.fastjson import ObjectKey, loads_fastjson
from mqbench.errors import PeerError


def test_consume_stats_round_trip_and_java_shape():
    rows = [bodies.QueueOffsets("T", "broker-a", 1, 10, consumer_offset=4, last_timestamp_ms=7),
            bodies.QueueOffsets("T", "broker-a", 0, 3, consumer_offset=3)]
    body = bodies.encode_consume_stats(rows, 2.5)
    assert body == (b'{"consumeTps":2.5,"offsetTable":{{"brokerName":"broker-a","queueId":1,"topic":"T"}:'
                    b'{"brokerOffset":10,"consumerOffset":4,"lastTimestamp":7},{"brokerName":"broker-a","queueId":0,'
                    b'"topic":"T"}:{"brokerOffset":3,"consumerOffset":3,"lastTimestamp":0}}}')
    parsed, tps = bodies.parse_consume_stats(body)
    assert tps == 2.5 and [r.queue_id for r in parsed] == [0, 1] and [r.lag for r in parsed] == [0, 6]


def test_a_real_brokers_body_with_spaces_and_int_consume_tps_parses():
    body = (b'{"consumeTps":0,"offsetTable":{ {"brokerName":"b","queueId":2,"topic":"X"} : '
            b'{"brokerOffset":5,"consumerOffset":1,"lastTimestamp":1700000000000} }}')
    (row,), tps = bodies.parse_consume_stats(body)
    assert (row.topic, row.queue_id, row.lag, tps) == ("X", 2, 4, 0.0)
    key = next(iter(loads_fastjson(body)["offsetTable"]))
    assert isinstance(key, ObjectKey) and key.fields()["brokerName"] == "b"


@pytest.mark.parametrize("body", [b"", b"{}", b'{"offsetTable":{"q0":{"maxOffset":1}}}',
                                  b'{"offsetTable":{{"topic":"t"}:{"maxOffset":1}}}',
                                  b'{"offsetTable":{{"topic":{"x":1}}:{}}}'])
def test_malformed_topic_stats_are_peer_errors(body):
    with pytest.raises(PeerError):
        bodies.parse_topic_stats(body)


def test_properties_round_trip_with_escapes():
    config = {"a": "1", "path": "C:\\x=y", "empty": ""}
    assert bodies.parse_properties(bodies.encode_properties(config)) == config
    assert bodies.parse_properties(b"# comment\nk: v\n  x = y z \n") == {"k": "v", "x": "y z"}


def test_stats_windows_over_injected_time():
    item = StatsItem(created_ms=0)
    for second in range(120):                 # 2 messages a second for two minutes
        item.add(2, 1, second * 1000)
    minute = item.window(60_000, 120_000)
    assert 100 <= minute["sum"] <= 130 and 1.6 <= minute["tps"] <= 2.2 and minute["avgpt"] == 2.0
    assert item.window(86_400_000, 120_000)["sum"] == 240
    assert item.window(60_000, 10 * 60_000)["sum"] == 0        # quiet since


def test_broker_stats_put_tps_and_day_rollover():
    day_ms = 86_400_000
    stats = BrokerStats("c1", now_ms=day_ms - 20_000)
    for i in range(20):                         # 5 messages a second for the last 20 s of the day
        stats.record_put("T", 5, day_ms - 20_000 + i * 1000)
    stats.record_get("T", "G", 3, day_ms - 1)
    fields = stats.runtime_fields(day_ms - 1)
    assert float(fields["putTps"].split(" ")[0]) == pytest.approx(5.0, rel=0.2)
    assert fields["msgPutTotalTodayNow"] == "100" and fields["msgPutTotalTodayMorning"] == "0"
    stats.record_put("T", 1, day_ms + 5)        # next day: the morning counter is the total at midnight
    fields = stats.runtime_fields(day_ms + 10)
    assert fields["msgPutTotalTodayMorning"] == "100" and fields["msgGetTotalTodayMorning"] == "3"
    assert fields["msgPutTotalTodayNow"] == "101" and fields["msgPutTotalYesterdayMorning"] == "0"
    assert stats.view("TOPIC_PUT_NUMS", "T", day_ms + 10)["day"]["sum"] == 101
    assert stats.view("GROUP_GET_NUMS", "T@G", day_ms + 10)["day"]["sum"] == 3
    assert stats.view("BROKER_PUT_NUMS", "c1", day_ms + 10)["day"]["sum"] == 101
    assert stats.view("TOPIC_PUT_NUMS", "nope", day_ms) is None


# --- every parser: whole, cut short at every byte, with trailing bytes, and fuzzed ------------------

from hypothesis import given, strategies as st  # noqa: E402

PARSERS = [bodies.parse_consume_stats, bodies.parse_topic_stats, bodies.parse_cluster_info, bodies.parse_kv_table,
           bodies.parse_consumer_connection, bodies.parse_group_list]
SAMPLES = [
    (bodies.parse_consume_stats, bodies.encode_consume_stats(
        [bodies.QueueOffsets("T", "b", 0, 9, consumer_offset=2, last_timestamp_ms=5)], 1.5)),
    (bodies.parse_topic_stats, bodies.encode_topic_stats([bodies.QueueOffsets("T", "b", 1, 9, min_offset=3)])),
    (bodies.parse_cluster_info, b'{"brokerAddrTable":{"a":{"brokerAddrs":{0:"1.2.3.4:10911"},"brokerName":"a",'
                                b'"cluster":"c"}},"clusterAddrTable":{"c":["a"]}}'),
    (bodies.parse_kv_table, bodies.encode_kv_table({"putTps": "1.0 2.0 3.0"})),
    (bodies.parse_consumer_connection, bodies.encode_consumer_connection(
        [{"clientAddr": "1.2.3.4:5", "clientId": "c", "language": "JAVA", "version": 409}], {})),
    (bodies.parse_group_list, bodies.encode_group_list(["g1", "g2"])),
]


@pytest.mark.parametrize("parse,body", SAMPLES, ids=[p.__name__ for p, _ in SAMPLES])
def test_parsers_whole_cut_and_trailing(parse, body):
    parse(body)                                   # whole
    for cut in range(len(body)):                  # every proper prefix is refused, never misread
        with pytest.raises(PeerError):
            parse(body[:cut])
    with pytest.raises(PeerError):                # trailing bytes after the document
        parse(body + b"x")


@given(st.sampled_from(PARSERS), st.binary(max_size=300))
def test_parsers_fuzzed_bytes_raise_only_peer_errors(parse, data):
    try:
        parse(data)
    except PeerError:
        pass


@given(st.sampled_from(SAMPLES), st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_parsers_with_one_byte_changed_raise_only_peer_errors(sample, where, value):
    parse, body = sample
    damaged = bytearray(body)
    damaged[where % len(damaged)] = value
    try:
        parse(bytes(damaged))
    except PeerError:
        pass


@pytest.mark.parametrize("body", [b'{"offsetTable":{{"brokerName":"b","queueId":"x","topic":"t"}:{"brokerOffset":1}}}',
                                  b'{"offsetTable":{{"brokerName":"b","queueId":1.5,"topic":"t"}:{"brokerOffset":1}}}',
                                  b'{"offsetTable":{{"brokerName":"b","queueId":true,"topic":"t"}:{}}}'])
def test_a_message_queue_with_a_bad_queue_id_is_a_peer_error(body):
    with pytest.raises(PeerError):
        bodies.parse_consume_stats(body)
    with pytest.raises(PeerError):
        bodies.parse_topic_stats(body)
