"""RocketMQ's ACL with the official clients (issue 18): a ``single`` cluster started with
``cluster up --acl plain_acl.yml``. With the right accessKey/secretKey the C++ client
(``set_session_credentials``) and ali-ons (``accessKeyId``/``accessKeySecret``) produce and consume;
with a wrong secret, an unknown key or none, every send is refused with what a RocketMQ 4.9 broker
answers for an ``AclException`` (SYSTEM_ERROR, remark ``...AclException: Check signature failed
...``), and nothing reaches the topic."""
from __future__ import annotations

import asyncio
import uuid

import pytest

from clients import ensure_cpp_client, ensure_ons_client
from mqbench.cluster import launcher
from mqbench.cluster.control import ensure_topic, max_offsets
from test_official_clients import acked_keys, check_message, consume_all, produce

PORT_OFFSET = 4350
ENSURE = {"cpp": ensure_cpp_client, "ons": ensure_ons_client}
ACL_YML = """\
globalWhiteRemoteAddresses: []
accounts:
  - accessKey: mqbenchAK
    secretKey: mqbenchSK-0001
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: PUB|SUB
    topicPerms:
{topic_perms}
"""


@pytest.fixture(scope="module")
def acl_single(tmp_path_factory):
    """One ACL-checking ``single`` cluster for both clients (a cluster start costs seconds of CI's
    budget), each client with its own topic, the only ones the account may use."""
    topics = {client: f"Acl{client}{uuid.uuid4().hex[:6]}" for client in ENSURE}
    folder = tmp_path_factory.mktemp("acl")
    acl = folder / "plain_acl.yml"
    acl.write_text(ACL_YML.format(topic_perms="\n".join(f"      - {t}=PUB|SUB" for t in topics.values())))
    state = launcher.up("single", folder / "cluster", port_offset=PORT_OFFSET, wait_s=60, acl_file=acl)
    try:
        for topic in topics.values():
            asyncio.run(ensure_topic(state, "broker-a", topic))
        yield state, topics
    finally:
        launcher.down(state, timeout_s=5)


@pytest.fixture
def acl_cluster(acl_single, request):
    state, topics = acl_single
    return request.param, state, topics[request.param]


def refused_sends(driver) -> list[dict]:
    return [d for d in driver.docs if d.get("status") == "ERROR"]


@pytest.mark.realproc
@pytest.mark.parametrize("acl_cluster", ["cpp", "ons"], indirect=True)
def test_official_client_with_and_without_the_right_credentials(acl_cluster, tmp_path):
    client, state, topic = acl_cluster
    argv = ENSURE[client]()
    namesrv = launcher.cluster_layout(state).namesrv_addr
    right = ["--access-key", "mqbenchAK", "--secret-key", "mqbenchSK-0001"]

    good = produce(argv, namesrv, topic, 10, "G", tmp_path, *right)
    assert good.wait(90) == 0, good.stderr[-2000:]
    keys = acked_keys(good)
    assert keys == [f"G-{i}" for i in range(10)]

    for label, creds in (("wrong secret", ["--access-key", "mqbenchAK", "--secret-key", "not-the-secret"]),
                         ("unknown key", ["--access-key", "nobody-here", "--secret-key", "mqbenchSK-0001"]),
                         ("no credentials", [])):
        home = tmp_path / label.replace(" ", "-")
        home.mkdir()
        bad = produce(argv, namesrv, topic, 2, "B", home, *creds, "--attempts", "1")
        bad.wait(90)
        errors = refused_sends(bad)
        assert len(errors) == 2, (label, bad.docs, bad.stderr[-1500:])
        if client == "cpp":
            # the C++ client ends with a generic "No route info" error after its retries; the
            # broker's answer (code and remark) is in its log
            text = "".join(p.read_text(errors="replace") for p in (home / "logs").rglob("*.log*"))
            refusal = next(line for line in text.splitlines() if "processSendResponse error" in line)
            assert "error code:1" in refusal, refusal
        else:
            assert errors[0]["broker_code"] == 1, errors[0]
            refusal = errors[0]["broker_error"]
        print(f"{client} {label}: {refusal[:300]}")
        # a client without credentials still sends an empty AccessKey (C++) or none (ali-ons)
        expected = ("No accessKey is configured", "No acl config for ") if label == "no credentials" else (
            ("No acl config for nobody-here",) if label == "unknown key" else ("Check signature failed",))
        assert "AclException" in refusal and any(e in refusal for e in expected), (label, refusal)
    broker = launcher.cluster_layout(state).instance("broker-a/n0").addr
    stored = asyncio.run(max_offsets(broker, topic, credentials=launcher.cluster_credentials(state)))
    assert sum(stored.values()) == 10       # nothing the refused clients sent was stored

    received = consume_all(argv, namesrv, topic, len(keys), tmp_path, 60, *right)
    assert set(keys) <= set(received)
    for key in keys:
        check_message(received[key], key)
