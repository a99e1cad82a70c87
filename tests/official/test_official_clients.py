"""The official RocketMQ clients against the reference broker, as separate OS processes.

* The C++ client (PyPI ``rocketmq`` 0.4.4, librocketmq.so): ``send_sync`` and ``send_oneway`` with
  keys, tags and a property, consumed by its PushConsumer.
* npm ``ali-ons`` (pure JS): send with keys, tags and a property, consumed by its Consumer.

Each is run against ``single`` and against ``raft3``; on ``raft3`` the leader is SIGKILLed while the
client produces (and restarted a second later): the client must recover on its own and every
message it saw acknowledged must then be consumed, with body, tags and property intact. Messages
also cross between the clients and mqbench's own, both ways.
``clients.py`` installs the clients once under ``.cache/`` or skips with the reason where the
platform cannot run them.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
import uuid

import pytest

from clients import ensure_cpp_client, ensure_ons_client
from mqbench.cluster import launcher
from mqbench.cluster.control import ensure_topic, wait_healthy

OFFSETS = {("cpp", "single"): 4310, ("cpp", "raft3"): 4320, ("ons", "single"): 4330, ("ons", "raft3"): 4340}
TEST_OFFSETS = {"test_official_client_recovers_from_a_leader_kill": 2000,
                "test_messages_cross_between_official_clients_and_mqbench": 2100}
ENSURE = {"cpp": ensure_cpp_client, "ons": ensure_ons_client}


# The tests that only produce and consume (each on its own topic) share one cluster per layout:
# a raft3 start costs seconds of CI's budget. A test that kills a broker gets its own.
SHARED_BY = {"test_official_client_produces_and_consumes", "test_messages_cross_between_official_clients_and_mqbench"}
SHARED_OFFSETS = {"single": 4310, "raft3": 4320}


@pytest.fixture(scope="module")
def shared_clusters(tmp_path_factory):
    """``get(layout) -> ClusterState``: started at first use, stopped after the module's last test."""
    states = {}

    def get(layout):
        if layout not in states:
            states[layout] = launcher.up(layout, tmp_path_factory.mktemp(f"shared-{layout}") / "cluster",
                                         port_offset=SHARED_OFFSETS[layout], wait_s=60)
        return states[layout]
    try:
        yield get
    finally:
        for state in states.values():
            launcher.down(state, timeout_s=5)


@pytest.fixture
def cluster(tmp_path, request, shared_clusters):
    client, layout = request.param
    if request.node.originalname in SHARED_BY:
        yield client, shared_clusters(layout)
        return
    # each test its own ports: the cpp/raft3 cluster of one test was still on its name server port when
    # the next test started it again, at load (CI: "port 127.0.1.1:14196 for the name server is busy")
    offset = OFFSETS[(client, layout)] + TEST_OFFSETS.get(request.node.originalname, 0)
    state = launcher.up(layout, tmp_path / "cluster", port_offset=offset, wait_s=60)
    try:
        yield client, state
    finally:
        launcher.down(state, timeout_s=5)


class Driver:
    """One run of a driver script; collects its JSON lines as they come (for kills mid-run)."""

    def __init__(self, argv: list[str], home) -> None:
        # The C++ client writes its own logs under $HOME/logs: keep them in the test's tmp dir.
        env = {**os.environ, "HOME": str(home)}
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.docs: list[dict] = []
        self.arrived_s: list[float] = []  # time.monotonic() when each doc was read
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                self.docs.append(json.loads(line))
                self.arrived_s.append(time.monotonic())

    def wait(self, timeout_s: float) -> int:
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"driver {self.proc.args[1:3]} did not finish in {timeout_s} s; "
                                 f"{len(self.docs)} lines so far; stderr: {self.proc.stderr.read()[-2000:]}") from None
        self._reader.join(5)
        self.stderr = self.proc.stderr.read()
        return rc


def produce(prefix_argv, namesrv, topic, count, prefix, home, *extra) -> Driver:
    return Driver([*prefix_argv, "produce", "--namesrv", namesrv, "--topic", topic, "--count", str(count),
                   "--prefix", prefix, *extra], home)


def consume_all(prefix_argv, namesrv, topic, expect, home, timeout_s=60, *extra) -> dict[str, dict]:
    driver = Driver([*prefix_argv, "consume", "--namesrv", namesrv, "--topic", topic,
                     "--group", f"GID_{uuid.uuid4().hex[:8]}", "--expect", str(expect), "--timeout-s", str(timeout_s),
                     *extra], home)
    rc = driver.wait(timeout_s + 60)
    received = {d["key"]: d for d in driver.docs if "key" in d}
    assert rc == 0, f"consumer saw {len(received)} of {expect} distinct keys; stderr: {driver.stderr[-2000:]}"
    return received


def check_message(doc: dict, key: str) -> None:
    i = int(key.rsplit("-", 1)[1])
    assert doc["body"] == f"body-{key}", doc
    assert doc["tags"] == f"tag{i % 3}", doc
    assert doc["seq"] == str(i), doc
    assert doc["queue_offset"] >= 0 and 0 <= doc["queue_id"] < 4, doc


def acked_keys(driver: Driver) -> list[str]:
    errors = [d for d in driver.docs if d.get("status") == "ERROR"]
    assert not errors, f"sends failed after every attempt: {errors[:3]}"
    return [d["key"] for d in driver.docs if d.get("status") in ("SEND_OK", "OK")]


@pytest.mark.realproc
@pytest.mark.parametrize("cluster", [("cpp", "raft3"), ("ons", "raft3")], indirect=True, ids=["cpp", "ons"])
def test_official_client_recovers_from_a_leader_kill(cluster, tmp_path):
    client, state = cluster
    argv = ENSURE[client]()
    namesrv = launcher.cluster_layout(state).namesrv_addr
    topic = f"Failover{client}{uuid.uuid4().hex[:6]}"
    asyncio.run(ensure_topic(state, "broker-a", topic))
    count = 120
    driver = produce(argv, namesrv, topic, count, "K", tmp_path, "--attempts", "120", "--interval-ms", "20")
    deadline = time.monotonic() + 60
    while len(driver.docs) < 30:
        assert driver.proc.poll() is None, f"producer ended early: {driver.proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "producer did not get 30 acknowledgements in 60 s"
        time.sleep(0.05)
    victim = launcher.leader(state, "broker-a")
    killed_at = time.monotonic()
    assert launcher.kill(state, victim.name) == [victim.name]
    acked_at_kill = len(driver.docs)
    time.sleep(1.0)
    launcher.start(state, victim.name)
    assert driver.wait(150) == 0, driver.stderr[-2000:]
    keys = acked_keys(driver)
    assert len(keys) == count and len(keys) > acked_at_kill
    recovery_s = driver.arrived_s[acked_at_kill] - killed_at
    print(f"{client}: first acknowledgement {recovery_s:.1f} s after the leader was killed")
    # Both clients poll the name server for routes every 30 s; ali-ons also refreshes on a failed send.
    assert recovery_s < 45
    asyncio.run(wait_healthy(state, "broker-a", 30))
    received = consume_all(argv, namesrv, topic, len(keys), tmp_path, timeout_s=90)
    missing = sorted(set(keys) - set(received), key=lambda k: int(k.split("-")[1]))
    assert not missing, f"{len(missing)} acknowledged messages never consumed: {missing[:10]}"
    for key in keys:
        check_message(received[key], key)


@pytest.mark.realproc
@pytest.mark.parametrize("cluster", [("cpp", "single"), ("cpp", "raft3"), ("ons", "single"), ("ons", "raft3")],
                         indirect=True, ids=["cpp-single", "cpp-raft3", "ons-single", "ons-raft3"])
def test_official_client_produces_and_consumes(cluster, tmp_path):
    client, state = cluster
    argv = ENSURE[client]()
    namesrv = launcher.cluster_layout(state).namesrv_addr
    topic = f"Official{client}{uuid.uuid4().hex[:6]}"
    asyncio.run(ensure_topic(state, "broker-a", topic))
    sync = produce(argv, namesrv, topic, 30, "S", tmp_path)
    assert sync.wait(90) == 0, sync.stderr[-2000:]
    keys = acked_keys(sync)
    assert keys == [f"S-{i}" for i in range(30)]
    assert all(d["msg_id"] for d in sync.docs)
    if client == "cpp":  # ali-ons has no one-way send
        oneway = produce(argv, namesrv, topic, 10, "O", tmp_path, "--oneway")
        assert oneway.wait(60) == 0, oneway.stderr[-2000:]
        assert [d["status"] for d in oneway.docs] == ["ONEWAY"] * 10
        keys += [f"O-{i}" for i in range(10)]
    received = consume_all(argv, namesrv, topic, len(keys), tmp_path)
    assert set(keys) <= set(received)
    for key in keys:
        check_message(received[key], key)


@pytest.mark.realproc
@pytest.mark.parametrize("cluster", [("cpp", "raft3")], indirect=True, ids=["raft3"])
def test_messages_cross_between_official_clients_and_mqbench(cluster, tmp_path):
    """What one client writes, the others read with keys, tags and properties intact: mqbench's
    producer -> the C++ PushConsumer and ali-ons; the C++ producer -> mqbench's consumer."""
    from mqbench.client import Consumer, OutgoingMessage, Producer

    _, state = cluster
    namesrv = launcher.cluster_layout(state).namesrv_addr
    ours, theirs = f"FromMqbench{uuid.uuid4().hex[:6]}", f"FromCpp{uuid.uuid4().hex[:6]}"

    async def produce_ours() -> None:
        await ensure_topic(state, "broker-a", ours)
        await ensure_topic(state, "broker-a", theirs)
        async with Producer(namesrv, "PID_cross") as producer:
            for i in range(20):
                key = f"M-{i}"
                await producer.send(OutgoingMessage(ours, f"body-{key}".encode(), tags=f"tag{i % 3}", keys=[key],
                                                    properties={"seq": str(i)}))

    asyncio.run(produce_ours())
    keys = [f"M-{i}" for i in range(20)]
    for client in ("cpp", "ons"):
        received = consume_all(ENSURE[client](), namesrv, ours, len(keys), tmp_path)
        assert set(keys) <= set(received), client
        for key in keys:
            check_message(received[key], key)

    driver = produce(ensure_cpp_client(), namesrv, theirs, 20, "C", tmp_path)
    assert driver.wait(60) == 0, driver.stderr[-2000:]
    assert len(acked_keys(driver)) == 20

    async def consume_theirs() -> dict[str, object]:
        consumer = Consumer(namesrv, "GID_cross", consume_from="first")
        consumer.subscribe(theirs)
        got = {}
        async with consumer:
            deadline = time.monotonic() + 30
            while len(got) < 20 and time.monotonic() < deadline:
                for msg in await consumer.receive(64, timeout_ms=500):
                    got[msg.keys[0]] = msg
        return got

    got = asyncio.run(consume_theirs())
    assert sorted(got) == sorted(f"C-{i}" for i in range(20))
    for key, msg in got.items():
        i = int(key.split("-")[1])
        assert msg.body == f"body-{key}".encode() and msg.tags == f"tag{i % 3}"
        assert msg.properties["seq"] == str(i) and msg.topic == theirs
