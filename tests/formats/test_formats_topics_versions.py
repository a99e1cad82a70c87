"""Topic/group name rules and store-version detection."""

import pytest

from mqbench.broker.formats import topics
from mqbench.broker.store import versions
from mqbench.errors import CorruptDataError, UserError


@pytest.mark.parametrize("name", ["TopicTest", "a", "%RETRY%group_a", "%DLQ%g", "a|b", "x-y_z", "T" * 127,
                                  "SCHEDULE_TOPIC_XXXX", "rmq_sys_wheel_timer", "RMQ_SYS_TRANS_HALF_TOPIC",
                                  "TBW102", "%LMQ%abc", "%RETRY%" + "g" * 248])
def test_valid_topics(name):
    assert topics.validate_topic(name) == name


@pytest.mark.parametrize("name, problem", [
    ("../x", "illegal character '.'"), ("a/b", "illegal character '/'"), ("", "empty"), ("   ", "empty"),
    ("T" * 128, "too long"), ("%RETRY%" + "g" * 249, "too long"), ("a b", "illegal character ' '"),
    ("tópico", "illegal character 'ó'"), ("a\x00", "illegal"), ("..", "illegal"), ("a\\b", "illegal"),
    (None, "must be text"),
])
def test_invalid_topics(name, problem):
    with pytest.raises(UserError, match=problem.replace("(", r"\(")):
        topics.validate_topic(name)


def test_groups_and_send_rules():
    assert topics.validate_group("g" * 255) == "g" * 255
    with pytest.raises(UserError, match="too long"):
        topics.validate_group("g" * 256)
    with pytest.raises(UserError, match="illegal"):
        topics.validate_group("../etc")
    assert topics.validate_send_topic("TopicTest") == "TopicTest"
    with pytest.raises(UserError, match="forbidden"):
        topics.validate_send_topic("SCHEDULE_TOPIC_XXXX")
    assert topics.is_system_topic("rmq_sys_wheel_timer") and topics.is_system_topic("TBW102")
    assert not topics.is_system_topic("TopicTest")
    assert topics.retry_topic("g") == "%RETRY%g" and topics.dlq_topic("g") == "%DLQ%g"
    assert topics.is_safe_path_component("TopicTest") and not topics.is_safe_path_component("..")
    assert not topics.is_safe_path_component("a/b") and not topics.is_safe_path_component("")


def test_group_check_is_remembered_only_for_accepted_names():
    class Text(str):
        pass

    for _ in range(2):     # the second call answers from the set of accepted names
        assert topics.validate_group("orders_group") == "orders_group"
        with pytest.raises(UserError, match="illegal"):
            topics.validate_group("bad group")
        with pytest.raises(UserError, match="too long"):
            topics.validate_group("g" * 256)
    assert "orders_group" in topics._VALID_GROUPS and "bad group" not in topics._VALID_GROUPS
    assert topics.validate_group(Text("sub_class")) == "sub_class"
    assert "sub_class" not in topics._VALID_GROUPS     # only exact str instances are remembered


def test_version_predicates():
    assert versions.STORE_VERSIONS == ("v4", "v5", "v4-dledger", "v5-dledger")
    assert [versions.is_dledger(v) for v in versions.STORE_VERSIONS] == [False, False, True, True]
    assert [versions.has_timer_store(v) for v in versions.STORE_VERSIONS] == [False, True, False, True]
    assert versions.has_batch_cq("v5-dledger") and not versions.has_batch_cq("v4")
    assert versions.checkpoint_bytes_used("v4") == 24 and versions.checkpoint_bytes_used("v5") == 40
    assert versions.with_dledger("v4", True) == "v4-dledger" and versions.with_dledger("v5-dledger", False) == "v5"
    with pytest.raises(UserError, match="unknown store version"):
        versions.is_dledger("v6")


def test_marker_round_trip(tmp_path):
    versions.write_marker(str(tmp_path), "v4-dledger")
    assert versions.detect_version(str(tmp_path)) == "v4-dledger"
    (tmp_path / versions.MARKER_FILE).write_text("{broken")
    with pytest.raises(CorruptDataError, match=versions.MARKER_FILE):
        versions.detect_version(str(tmp_path))


def test_not_a_store(tmp_path):
    with pytest.raises(UserError, match="not a RocketMQ or mqbench store"):
        versions.detect_version(str(tmp_path))
    with pytest.raises(UserError, match="no such store"):
        versions.detect_version(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        versions.detect_version(str(tmp_path / "file"))


def test_detect_real_layouts(tmp_path):
    root = tmp_path / "s4"
    (root / "commitlog").mkdir(parents=True)
    (root / "checkpoint").write_bytes(b"\1" * 24 + b"\0" * 4072)
    assert versions.detect(str(root)).version == "v4"
    (root / "checkpoint").write_bytes(b"\1" * 40 + b"\0" * 4056)
    assert versions.detect_version(str(root)) == "v5"

    root = tmp_path / "s5d"
    (root / "dledger-n0" / "data").mkdir(parents=True)
    (root / "config").mkdir()
    (root / "config" / "consumerOffset.json").write_text('{"dataVersion":{"counter":1,"stateVersion":0,"timestamp":1}}')
    det = versions.detect(str(root))
    assert det.version == "v5-dledger" and det.dledger_dirs == ["dledger-n0"]
    assert any("stateVersion" in e for e in det.evidence)

    root = tmp_path / "s4d"
    (root / "dledger-a" / "data").mkdir(parents=True)
    assert versions.detect_version(str(root)) == "v4-dledger"
    (root / "timerwheel").write_bytes(b"")
    assert versions.detect_version(str(root)) == "v5-dledger"

    root = tmp_path / "sbcq"
    (root / "consumequeue").mkdir(parents=True)
    (root / "batchconsumequeue").mkdir()
    assert versions.detect_version(str(root)) == "v5"
