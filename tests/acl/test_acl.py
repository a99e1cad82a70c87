"""RocketMQ's plain ACL: the signature its clients send, plain_acl.yml, permissions and admin codes."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from mqbench.broker.formats import codes, headers, signature
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.server.acl import (ADMIN_CODES, DENY, PUB, SUB, AclChecker, AclDenied, AddressPattern,
                                       load_acl_file, needed_resources, perm_allows, with_cluster_account)
from mqbench.errors import UserError

HERE = Path(__file__).parent
ACL = load_acl_file(HERE / "plain_acl.yml")
CLIENT = "127.0.0.1"


def signed(cmd: RemotingCommand, key: str = "RocketMQ", secret: str = "12345678", **extra) -> RemotingCommand:
    cmd.ext_fields.update(extra)
    signature.Credentials(key, secret).apply(cmd)
    return cmd


def send(topic: str, group: str = "PID_x", body: bytes = b"hello") -> RemotingCommand:
    return RemotingCommand.request(codes.SEND_MESSAGE_V2, {"a": group, "b": topic, "c": "TBW102", "d": 4, "e": 0,
                                                           "f": 0, "g": 1700000000000, "h": 0, "i": "KEYSk1"}, body)


def pull(topic: str, group: str) -> RemotingCommand:
    return RemotingCommand.request(codes.PULL_MESSAGE, {"consumerGroup": group, "topic": topic, "queueId": 0,
                                                        "queueOffset": 0, "maxMsgNums": 32, "sysFlag": 0,
                                                        "commitOffset": 0, "suspendTimeoutMillis": 0,
                                                        "subscription": "*", "subVersion": 0})


def test_signature_is_hmac_sha1_over_sorted_values_then_body():
    """Worked example, computed by hand from the rule (RocketMQ AclUtils.combineRequestContent)."""
    fields = {"topic": "T", "AccessKey": "ak", "queueId": "3", "OnsChannel": "ALIYUN"}
    # keys sorted: AccessKey, OnsChannel, queueId, topic -> "ak" "ALIYUN" "3" "T", then the body
    content = b"akALIYUN3T" + b"body"
    assert signature.content(fields, b"body") == content
    expected = base64.b64encode(hmac.new(b"sk", content, hashlib.sha1).digest()).decode()
    assert signature.signature(content, "sk") == expected
    signed_fields = signature.sign({"topic": "T", "queueId": "3", "OnsChannel": "ALIYUN"}, b"body", "ak", "sk")
    assert signed_fields["Signature"] == expected and signed_fields["AccessKey"] == "ak"
    assert signature.verify(signed_fields, b"body", "sk")
    assert not signature.verify(signed_fields, b"bodY", "sk")
    assert not signature.verify({**signed_fields, "queueId": "4"}, b"body", "sk")
    # the unique-key query flag is not signed (RocketMQ leaves it out)
    assert signature.verify({**signed_fields, "_UNIQUE_KEY_QUERY": "true"}, b"body", "sk")


def test_plain_acl_yml_is_read_as_rocketmq_reads_it():
    account = ACL.accounts["RocketMQ"]
    assert account.secret_key == "12345678"       # YAML made it an int; RocketMQ's keys are strings
    assert (account.default_topic_perm, account.default_group_perm, account.admin) == (DENY, SUB, False)
    assert account.perms == {"topicA": DENY, "topicB": PUB | SUB, "topicC": SUB, "topicP": PUB,
                             "%RETRY%groupA": DENY, "%RETRY%groupB": PUB | SUB, "%RETRY%groupC": SUB}
    assert ACL.accounts["rocketmq2"].admin and ACL.accounts["rocketmq2"].white_address.match("192.168.1.9")


@pytest.mark.parametrize("text, problem", [
    ("accounts: [{accessKey: abcdef}]", "accessKey and a secretKey"),
    ("accounts: [{accessKey: abc, secretKey: abcdef}]", "at least 6"),
    ("accounts: [{accessKey: abcdef, secretKey: abcdef, topicPerms: [nope]}]", "NAME=PERM"),
    ("globalWhiteRemoteAddresses: [1.2.3.999]", "outside 0-255"),
    ("accounts: [{accessKey: abcdef, secretKey: abcdef}, {accessKey: abcdef, secretKey: ghijkl}]", "twice"),
    ("[1, 2", "does not parse"),
])
def test_bad_acl_files_are_user_errors(tmp_path, text, problem):
    path = tmp_path / "plain_acl.yml"
    path.write_text(text)
    with pytest.raises(UserError, match=problem):
        load_acl_file(path)


def test_json_acl_files_are_read_too(tmp_path):
    path = tmp_path / "acl.json"
    path.write_text(json.dumps({"accounts": [{"accessKey": "abcdef", "secretKey": "ghijkl", "admin": True}]}))
    assert load_acl_file(path).accounts["abcdef"].admin


def test_permission_rules_are_rocketmqs():
    assert perm_allows(PUB, PUB) and perm_allows(SUB, PUB | SUB) and not perm_allows(PUB, SUB)
    assert not perm_allows(SUB, DENY | SUB)


@pytest.mark.parametrize("pattern, host, expected", [
    ("*", "1.2.3.4", True), ("192.168.0.*", "192.168.0.8", True), ("192.168.0.*", "192.168.1.8", False),
    ("192.168.1.1-5", "192.168.1.5", True), ("192.168.1.1-5", "192.168.1.6", False),
    ("192.168.0.{1,7}", "192.168.0.7", True), ("192.168.0.{1,7}", "192.168.0.2", False),
    ("10.0.0.1", "10.0.0.1", True), ("::1", "::1", True), ("", "1.2.3.4", False), ("10.*", "10.9.9.9", True),
])
def test_address_patterns(pattern, host, expected):
    assert AddressPattern(pattern).match(host) is expected


def test_right_credentials_pass_and_wrong_ones_are_refused_with_rocketmqs_messages():
    checker = AclChecker(ACL)
    checker.check(signed(send("topicB")), CLIENT)
    checker.check(signed(send("topicP")), CLIENT)
    with pytest.raises(AclDenied, match="No accessKey is configured"):
        checker.check(send("topicB"), CLIENT)
    with pytest.raises(AclDenied, match="No acl config for Nobody"):
        checker.check(signed(send("topicB"), key="Nobody"), CLIENT)
    with pytest.raises(AclDenied, match="Check signature failed for accessKey=RocketMQ"):
        checker.check(signed(send("topicB"), secret="wrong-secret"), CLIENT)
    tampered = signed(send("topicB"))
    tampered.body = b"other body"
    with pytest.raises(AclDenied, match="Check signature failed"):
        checker.check(tampered, CLIENT)


def test_topic_and_group_permissions_and_defaults():
    checker = AclChecker(ACL)
    for topic in ("topicA", "topicC", "unlisted"):     # DENY, SUB only, default DENY
        with pytest.raises(AclDenied):
            checker.check(signed(send(topic)), CLIENT)
    checker.check(signed(pull("topicC", "groupC")), CLIENT)
    checker.check(signed(pull("topicB", "unlistedGroup")), CLIENT)      # default group perm SUB
    with pytest.raises(AclDenied, match="%RETRY%groupA"):
        checker.check(signed(pull("topicC", "groupA")), CLIENT)
    with pytest.raises(AclDenied, match="topicP"):
        checker.check(signed(pull("topicP", "groupC")), CLIENT)
    offset = RemotingCommand.request(codes.UPDATE_CONSUMER_OFFSET, headers.UpdateConsumerOffsetHeader(
        "groupA", "topicB", 0, 10 ** 15).to_ext())
    with pytest.raises(AclDenied):                                      # another group's offset
        checker.check(signed(offset), CLIENT)
    heartbeat = RemotingCommand.request(codes.HEART_BEAT, body=json.dumps({
        "clientID": "c", "producerDataSet": [], "consumerDataSet": [
            {"groupName": "groupC", "subscriptionDataSet": [{"topic": "topicA"}]}]}).encode())
    assert needed_resources(heartbeat) == {"%RETRY%groupC": SUB, "topicA": SUB}
    with pytest.raises(AclDenied, match="topicA"):
        checker.check(signed(heartbeat), CLIENT)


def test_admin_codes_need_an_admin_and_white_addresses_skip_checks():
    checker = AclChecker(ACL)
    create = RemotingCommand.request(codes.UPDATE_AND_CREATE_TOPIC, {"topic": "topicB", "perm": 0,
                                                                     "readQueueNums": 1, "writeQueueNums": 1})
    assert codes.UPDATE_AND_CREATE_TOPIC in ADMIN_CODES
    with pytest.raises(AclDenied, match="Need admin permission"):
        checker.check(signed(create), CLIENT)
    checker.check(signed(create, key="rocketmq2"), CLIENT)
    # rocketmq2's white address: the access key is enough there, the signature is not checked
    checker.check(signed(create, key="rocketmq2", secret="not-the-secret"), "192.168.1.3")
    with pytest.raises(AclDenied, match="Check signature failed"):
        checker.check(signed(create, key="rocketmq2", secret="not-the-secret"), "192.168.2.3")
    checker.check(send("anything"), "10.10.103.5")  # global white address
    checker.check(send("anything"), "192.168.0.7")


def test_the_cluster_account_is_an_admin_signed_with_the_cluster_secret():
    checker = AclChecker(with_cluster_account(ACL, "mqbench-cluster", "ab" * 32))
    runtime = RemotingCommand.request(codes.GET_BROKER_RUNTIME_INFO)
    checker.check(signed(runtime, key="mqbench-cluster", secret="ab" * 32), CLIENT)
    with pytest.raises(AclDenied):
        checker.check(signed(RemotingCommand.request(codes.GET_BROKER_RUNTIME_INFO), key="mqbench-cluster",
                             secret="cd" * 32), CLIENT)
