"""fastjson JSON files: the spec's worked examples byte for byte, the dialect, typed round trips."""
import pytest
from hypothesis import given, strategies as st

from mqbench.broker.formats import configs as c
from mqbench.errors import CorruptDataError, UserError

V4_OFFSETS = ('{\n\t"offsetTable":{\n\t\t"%RETRY%group_a@group_a":{0:0\n\t\t},\n\t\t"TopicTest@group_a":'
              '{0:250,1:251,2:0,3:12\n\t\t}\n\t}\n}')
V5_OFFSETS = ('{\n\t"dataVersion":{\n\t\t"counter":3,\n\t\t"stateVersion":0,\n\t\t"timestamp":1700000000000\n\t},'
              '\n\t"groupTopicMap":{\n\t\t"group_a":["TopicTest","%RETRY%group_a"]\n\t},'
              '\n\t"offsetTable":{\n\t\t"%RETRY%group_a@group_a":{0:0\n\t\t},\n\t\t"TopicTest@group_a":'
              '{0:250,1:251,2:0,3:12\n\t\t}\n\t}\n}')
TOPIC_ENTRY = ('"TopicTest":{\n\t\t\t"attributes":{},\n\t\t\t"order":false,\n\t\t\t"perm":6,\n\t\t\t"readQueueNums":4,'
               '\n\t\t\t"topicFilterType":"SINGLE_TAG",\n\t\t\t"topicName":"TopicTest",\n\t\t\t"topicSysFlag":0,'
               '\n\t\t\t"writeQueueNums":4\n\t\t}')
OFFSETS = {("TopicTest", "group_a"): {0: 250, 1: 251, 2: 0, 3: 12}, ("%RETRY%group_a", "group_a"): {0: 0}}


def test_v4_consumer_offsets_example():
    assert c.dump_consumer_offsets_json(OFFSETS, "v4") == V4_OFFSETS
    assert c.parse_consumer_offsets_json(V4_OFFSETS).offsets == OFFSETS


def test_v5_consumer_offsets_example():
    text = c.dump_consumer_offsets_json(OFFSETS, "v5", data_version=c.DataVersion(3, 1700000000000, 0))
    assert text == V5_OFFSETS
    parsed = c.parse_consumer_offsets_json(V5_OFFSETS, where="config/consumerOffset.json")
    assert parsed.offsets == OFFSETS and parsed.data_version == c.DataVersion(3, 1700000000000, 0)
    assert c.dump_consumer_offsets_json(parsed, "v5") == V5_OFFSETS


def test_topics_json_entry_example():
    text = c.dump_topics_json({"TopicTest": c.TopicConfig("TopicTest", read_queue_nums=4, write_queue_nums=4)}, "v5")
    assert "\t\t" + TOPIC_ENTRY in text
    assert text.startswith('{\n\t"dataVersion":{\n\t\t"counter":0,\n\t\t"stateVersion":0,')
    assert not text.endswith("\n")
    back = c.parse_topics_json(text).topics["TopicTest"]
    assert back == c.TopicConfig("TopicTest", read_queue_nums=4, write_queue_nums=4)
    v4 = c.dump_topics_json({"TopicTest": c.TopicConfig("TopicTest", attributes={"queue.type": "BatchCQ"})}, "v4")
    assert "attributes" not in v4 and "stateVersion" not in v4


def test_delay_offsets_examples():
    assert c.dump_delay_offsets_json({3: 17, 1: 5, 18: 0}, "v4", pretty=False) == '{"offsetTable":{1:5,3:17,18:0}}'
    assert c.dump_delay_offsets_json({1: 5, 3: 17, 18: 0}, "v4") == '{\n\t"offsetTable":{1:5,3:17,18:0\n\t}\n}'
    v5 = c.dump_delay_offsets_json({1: 5}, "v5", data_version=c.DataVersion(1, 2, 0))
    assert v5.index('"dataVersion"') < v5.index('"offsetTable"')
    parsed = c.parse_delay_offsets_json(v5)
    assert parsed.offsets == {1: 5} and parsed.data_version == c.DataVersion(1, 2, 0)
    assert c.parse_delay_offsets_json('{"offsetTable":{"2":7}}').offsets == {2: 7}  # standard JSON too


def test_subscription_groups_round_trip():
    groups = {"group_a": c.SubscriptionGroupConfig("group_a", retry_max_times=3)}
    for flavour in ("v4", "v5"):
        text = c.dump_subscription_groups_json(groups, flavour)
        parsed = c.parse_subscription_groups_json(text)
        assert parsed.groups["group_a"].retry_max_times == 3
        assert ('"forbiddenTable"' in text) == (flavour == "v5")
        assert ('"groupRetryPolicy"' in text) == (flavour == "v5")
    v5 = c.parse_subscription_groups_json(c.dump_subscription_groups_json(groups, "v5"))
    assert v5.groups["group_a"].extra["groupRetryPolicy"] == {"type": "CUSTOMIZED"}
    with pytest.raises(CorruptDataError, match="true/false"):
        c.parse_subscription_groups_json('{"subscriptionGroupTable":{"g":{"consumeEnable":1}}}')


def test_unknown_fields_survive_read_write():
    text = '{"topicConfigTable":{"T":{"topicName":"T","newField":7}},"futureKey":{"a":1}}'
    parsed = c.parse_topics_json(text)
    out = c.dump_topics_json(parsed, "v5")
    assert '"newField":7' in out and '"futureKey"' in out


def test_fastjson_dialect():
    assert c.loads_fastjson('{0:1,"a":[1,2.5,true,false,null,"x\\u0041"],-3:{}}') == {
        0: 1, "a": [1, 2.5, True, False, None, "xA"], -3: {}}
    assert c.loads_fastjson(b"\xef\xbb\xbf{}") == {}
    assert c.dumps_fastjson({"a": {1: 2}, "b": [], "c": {}, "d": "é\n", "e": None}) == \
        '{\n\t"a":{1:2\n\t},\n\t"b":[],\n\t"c":{},\n\t"d":"é\\n"\n}'
    assert c.dumps_fastjson({"a": {1: 2}}, pretty=False) == '{"a":{1:2}}'


@pytest.mark.parametrize("text", ["", "{", '{"a"}', '{"a":1,}', "[1 2]", "{1.5:2}", '{"a":1} x', "nul", '"abc',
                                  b"\xff", "{" * 300 + "}" * 300, '{"a":tru}'])
def test_bad_json_is_corrupt(text):
    with pytest.raises(CorruptDataError, match="config/x.json"):
        c.loads_fastjson(text, where="config/x.json")


@pytest.mark.parametrize("text, problem", [
    ('{"offsetTable":{"nogroup":{0:1}}}', "topic@group"),
    ('{"offsetTable":{"T@g":{"x":1}}}', "not an integer"),
    ('{"offsetTable":{"T@g":{0:"big"}}}', "not an integer"),
    ('{"offsetTable":[]}', "not a JSON object"),
    ("[]", "not a JSON object"),
])
def test_bad_offsets_files(text, problem):
    with pytest.raises(CorruptDataError, match=problem):
        c.parse_consumer_offsets_json(text)


def test_java_map_order():
    assert c.java_map_order(["TopicTest", "%RETRY%group_a"], 8) == ["TopicTest", "%RETRY%group_a"]
    assert c.java_map_order(["TopicTest@group_a", "%RETRY%group_a@group_a"], 1024) == \
        ["%RETRY%group_a@group_a", "TopicTest@group_a"]
    assert c.java_map_order([5, 3, 17, 1], 16) == [17, 1, 3, 5]  # 17 shares bucket 1 with 1, inserted first
    assert c.java_map_order(list(range(40)), 16) == list(range(40))  # grows past 75 % load


def test_bad_flavour_and_unwritable():
    with pytest.raises(UserError, match="flavour"):
        c.dump_delay_offsets_json({}, "v6")
    with pytest.raises(UserError, match="cannot write"):
        c.dumps_fastjson({"a": object()})


_names = st.from_regex(r"[A-Za-z0-9_%-]{1,12}", fullmatch=True)


@given(st.dictionaries(st.tuples(_names, _names), st.dictionaries(st.integers(0, 1000), st.integers(-1, 2**62), max_size=4),
                       max_size=5), st.sampled_from(["v4", "v5"]), st.booleans())
def test_offsets_round_trip(offsets, flavour, pretty):
    assert c.parse_consumer_offsets_json(c.dump_consumer_offsets_json(offsets, flavour, pretty=pretty)).offsets == offsets


@given(st.dictionaries(_names, st.builds(c.TopicConfig, _names, st.integers(0, 64), st.integers(0, 64), st.integers(0, 15),
                                         st.sampled_from(["SINGLE_TAG", "MULTI_TAG"]), st.integers(0, 5), st.booleans(),
                                         st.dictionaries(st.sampled_from(["queue.type", "message.type"]), _names)),
                       max_size=4))
def test_topics_round_trip(topics):
    assert c.parse_topics_json(c.dump_topics_json(topics, "v5")).topics == topics


@given(st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                    | st.dictionaries(st.integers(-99, 99), inner, min_size=1, max_size=3), max_leaves=12),
       st.booleans())
def test_dialect_round_trip(value, pretty):
    def drop_none(v):
        if isinstance(v, dict):
            return {k: drop_none(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [drop_none(x) for x in v]
        return v
    assert c.loads_fastjson(c.dumps_fastjson(value, pretty)) == drop_none(value)


@given(st.text(max_size=60))
def test_fuzz_loads(text):
    try:
        c.loads_fastjson(text)
    except CorruptDataError:
        pass


@pytest.mark.parametrize("text", [V4_OFFSETS, V5_OFFSETS])
def test_json_truncated_at_every_character(text):
    for cut in range(len(text)):
        with pytest.raises(CorruptDataError):
            c.parse_consumer_offsets_json(text[:cut], where="config/consumerOffset.json")
    assert c.parse_consumer_offsets_json(text + "\n\t ").offsets == OFFSETS  # trailing whitespace is fine
    with pytest.raises(CorruptDataError, match="trailing"):
        c.parse_consumer_offsets_json(text + "}")
