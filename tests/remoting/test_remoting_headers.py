"""Typed custom headers: wire names, V1/V2 send headers, bad values, JSON bodies."""
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.broker.formats import codes, headers
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.formats.headers import HeaderError


def test_send_header_short_and_long_names():
    header = headers.SendMessageHeader(producer_group="PG", topic="T", queue_id=3, sys_flag=0x301,
                                       born_timestamp_ms=1700000000123, properties="KEYS\x01k1\x02", batch=True,
                                       broker_name="b0")
    v2 = header.to_v2()
    assert v2 == {"a": "PG", "b": "T", "c": "TBW102", "d": "4", "e": "3", "f": "769", "g": "1700000000123",
                  "h": "0", "i": "KEYS\x01k1\x02", "m": "true", "n": "b0"}
    assert headers.send_header(RemotingCommand(code=codes.SEND_MESSAGE_V2, ext_fields=v2)) == header
    assert headers.send_header(RemotingCommand(code=codes.SEND_BATCH_MESSAGE, ext_fields=v2)) == header
    v1 = header.to_ext()
    assert v1["producerGroup"] == "PG" and v1["bornTimestamp"] == "1700000000123"
    assert headers.send_header(RemotingCommand(code=codes.SEND_MESSAGE, ext_fields=v1)) == header
    assert headers.send_header(RemotingCommand(code=codes.SEND_BATCH_MESSAGE, ext_fields=v1)) == header


def test_cpp_style_send_header_with_optional_fields_absent():
    ext = {"producerGroup": "PID_x", "topic": "T", "defaultTopic": "TBW102", "defaultTopicQueueNums": "4",
           "queueId": "1", "sysFlag": "0", "bornTimestamp": "5", "flag": "0", "properties": "",
           "reconsumeTimes": "0", "unitMode": "false"}
    header = headers.send_header(RemotingCommand(code=codes.SEND_MESSAGE, ext_fields=ext))
    assert header.queue_id == 1 and header.unit_mode is False and header.batch is None


@pytest.mark.parametrize("ext, problem", [
    ({"b": "T"}, "missing header field 'a' (producer_group)"),
    ({"a": "g", "b": "T", "e": "x1"}, "'e' is 'x1', not an integer"),
    ({"a": "g", "b": "T", "e": "1_000"}, "not an integer"),
    ({"a": "g", "b": "T", "e": " 1"}, "not an integer"),
    ({"a": "g", "b": "T", "g": "99999999999999999999"}, "does not fit a 64-bit integer"),
])
def test_bad_send_headers_name_the_field(ext, problem):
    with pytest.raises(HeaderError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        headers.SendMessageHeader.from_v2(ext)


def test_pull_and_offset_headers_round_trip():
    pull = headers.PullMessageHeader(consumer_group="G", topic="T", queue_id=2, queue_offset=10, max_msg_nums=32,
                                     sys_flag=codes.PULL_FLAG_SUSPEND, commit_offset=0, suspend_timeout_ms=15000,
                                     subscription="*", expression_type="TAG")
    assert headers.PullMessageHeader.from_ext(pull.to_ext()) == pull
    assert pull.to_ext()["suspendTimeoutMillis"] == "15000"
    for header in (headers.QueryConsumerOffsetHeader("G", "T", 1, True),
                   headers.UpdateConsumerOffsetHeader("G", "T", 1, 99),
                   headers.QueueOffsetHeader("T", 3), headers.SearchOffsetHeader("T", 3, 12345),
                   headers.OffsetResponseHeader(-1), headers.PullMessageResponseHeader(0, 5, 0, 9),
                   headers.SendMessageResponseHeader("ABC", 1, 2), headers.UnregisterClientHeader("c", "p"),
                   headers.ConsumerGroupHeader("G"), headers.GetRouteInfoHeader("T", True),
                   headers.RegisterBrokerHeader("b", "1.2.3.4:10911", "c", 0, raft_term=4),
                   headers.UnregisterBrokerHeader("b", "1.2.3.4:10911", "c", 0)):
        assert type(header).from_ext(header.to_ext()) == header


def test_heartbeat_and_consumer_list_bodies():
    data = headers.consumer_data("G", {"T": "a || b"}, consume_from_where="CONSUME_FROM_FIRST_OFFSET")
    body = headers.heartbeat_body("1.2.3.4@1", ["PG"], [data])
    doc = headers.parse_heartbeat(body)
    assert doc["consumerDataSet"][0]["subscriptionDataSet"][0]["tagsSet"] == ["a", "b"]
    assert headers.parse_consumer_list(headers.consumer_list_body(["c2", "c1"])) == ["c2", "c1"]
    for bad in (b"{", b"[]", b'{"clientID": 3}', b'{"clientID": "x", "consumerDataSet": [{"g": 1}]}',
                b'{"clientID": "x", "consumerDataSet": [{"groupName": "g", "subscriptionDataSet": 5}]}'):
        with pytest.raises(HeaderError):
            headers.parse_heartbeat(bad)
    with pytest.raises(HeaderError):
        headers.parse_consumer_list(b'{"consumerIdList": [1]}')


def test_tag_expressions():
    assert headers.parse_tag_expression("*") is None and headers.parse_tag_expression(None) is None
    assert headers.parse_tag_expression(" a ||b|| ") == {"a", "b"}


@given(st.dictionaries(st.sampled_from(list("abcdefghijklmn")), st.text(max_size=6), max_size=14))
def test_random_v2_headers_raise_only_header_error(ext):
    try:
        headers.SendMessageHeader.from_v2(ext)
    except HeaderError:
        pass


_V2_VALUES = st.one_of(st.sampled_from(["0", "7", "-1", "true", "FALSE", "", "x", "99999999999999999999",
                                        "１２", "0012", "9223372036854775807"]), st.text(max_size=6))


@given(st.dictionaries(st.sampled_from(list("abcdefghijklmn") + ["topic", "zz"]), _V2_VALUES, max_size=16))
def test_fast_v2_send_header_parses_as_the_table_does(ext):
    """send_header_v2 (the broker's per-message path) gives what SendMessageHeader.from_v2 gives,
    or the same HeaderError text."""
    try:
        expected = headers.SendMessageHeader.from_v2(ext)
    except HeaderError as exc:
        with pytest.raises(HeaderError) as got:
            headers.send_header_v2(ext)
        assert str(got.value) == str(exc)
        return
    assert headers.send_header_v2(ext) == expected
