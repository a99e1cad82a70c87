"""The name server over the wire (ephemeral ports on 127.0.0.1), and as a real process."""
import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from mqbench.broker.namesrv.routes import TopicEntry, register_body
from mqbench.broker.namesrv.server import NameServer
from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.client import connect
from mqbench.broker.formats.command import RemotingCommand

LEADER, FOLLOWER = "127.0.0.1:10911", "127.0.0.2:10911"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def register_cmd(addr, broker_id, term, topics=None, **extra):
    header = headers.RegisterBrokerHeader(broker_name="g0", broker_addr=addr, cluster_name="c1",
                                          broker_id=broker_id, raft_term=term).to_ext()
    header.update(extra)
    body = json.dumps(register_body(topics or {"Orders": TopicEntry(4, 4, 6)})).encode()
    return RemotingCommand.request(codes.REGISTER_BROKER, header, body)


async def route(client, topic):
    return await client.request(RemotingCommand.request(codes.GET_ROUTEINFO_BY_TOPIC, {"topic": topic}), 2000)


def test_register_route_failover_and_expiry_over_the_wire():
    async def main():
        now = [0]
        ns = NameServer(broker_expiry_ms=10_000, scan_interval_ms=3_600_000, clock_ms=lambda: now[0])
        host, port = await ns.start("127.0.0.1", 0)
        client = await connect(f"{host}:{port}")
        try:
            r = await client.request(register_cmd(LEADER, 0, 1), 2000)
            assert r.code == codes.SUCCESS and json.loads(r.body) == {"table": {}}
            r = await client.request(register_cmd(FOLLOWER, 1, 1), 2000)
            assert r.code == codes.SUCCESS and r.ext_fields["masterAddr"] == LEADER
            r = await route(client, "Orders")
            assert r.code == codes.SUCCESS
            doc = json.loads(r.body)  # standard JSON: quoted integer keys
            assert doc["brokerDatas"][0]["brokerAddrs"] == {"0": LEADER, "1": FOLLOWER}
            assert doc["queueDatas"][0]["writeQueueNums"] == 4

            assert (await client.request(register_cmd(FOLLOWER, 0, 2), 2000)).code == codes.SUCCESS
            stale = await client.request(register_cmd(LEADER, 0, 1), 2000)
            assert stale.code == codes.SYSTEM_ERROR and "term 1 < current term 2" in stale.remark
            doc = json.loads((await route(client, "Orders")).body)
            assert doc["brokerDatas"][0]["brokerAddrs"] == {"0": FOLLOWER}

            r = await client.request(RemotingCommand.request(codes.GET_BROKER_CLUSTER_INFO), 2000)
            assert json.loads(r.body)["clusterAddrTable"] == {"c1": ["g0"]}

            now[0] = 10_001
            assert sorted(ns.scan()) == sorted([FOLLOWER, LEADER]) and ns.routes.brokers == {}
            r = await route(client, "Orders")
            assert r.code == codes.TOPIC_NOT_EXIST and "Orders" in r.remark
        finally:
            await client.aclose()
            await ns.close()
    run(main())


@pytest.mark.parametrize("make, problem", [
    (lambda: RemotingCommand.request(codes.GET_ROUTEINFO_BY_TOPIC, {"topic": "../etc"}), "../etc"),
    (lambda: RemotingCommand.request(codes.GET_ROUTEINFO_BY_TOPIC, {}), "'topic'"),
    (lambda: RemotingCommand.request(codes.GET_ROUTEINFO_BY_TOPIC, {"topic": "Unknown"}), "Unknown"),
    (lambda: RemotingCommand.request(codes.REGISTER_BROKER, {"brokerName": "g0"}), "brokerAddr"),
    (lambda: RemotingCommand.request(codes.REGISTER_BROKER, register_cmd(LEADER, 0, 1).ext_fields, b"{nope"),
     "not JSON"),
    (lambda: RemotingCommand.request(codes.REGISTER_BROKER, register_cmd(LEADER, 0, 1).ext_fields,
                                     b'{"topicConfigSerializeWrapper":{"topicConfigTable":{"a/b":{}}}}'), "a/b"),
    (lambda: RemotingCommand.request(codes.REGISTER_BROKER, {**register_cmd(LEADER, 0, 1).ext_fields,
                                                             "brokerId": "zero"}), "'brokerId'"),
    (lambda: register_cmd(LEADER, 0, 1, compressed="true"), "compressed"),
    (lambda: register_cmd(LEADER, 0, 1, bodyCrc32="77"), "bodyCrc32"),
    (lambda: RemotingCommand.request(codes.GET_KV_CONFIG, {"namespace": "ns", "key": "k"}), "No config item"),
    (lambda: RemotingCommand.request(codes.SEND_MESSAGE_V2), "not supported"),
])
def test_bad_requests_get_error_responses_and_the_server_keeps_serving(make, problem):
    async def main():
        ns = NameServer()
        host, port = await ns.start("127.0.0.1", 0)
        client = await connect(f"{host}:{port}")
        try:
            r = await client.request(make(), 2000)
            assert r.code != codes.SUCCESS and problem in (r.remark or "")
            r = await client.request(register_cmd(LEADER, 0, 1), 2000)
            assert r.code == codes.SUCCESS and (await route(client, "Orders")).code == codes.SUCCESS
        finally:
            await client.aclose()
            await ns.close()
    run(main())


@pytest.mark.realproc
def test_python_dash_m_runs_a_name_server():
    proc = subprocess.Popen([sys.executable, "-m", "mqbench.broker.namesrv", "--listen", "127.0.0.1:0",
                             "--log-level", "WARNING"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("namesrv listening on 127.0.0.1:"), line + proc.stderr.read()
        addr = line.split()[-1]

        async def main():
            client = await connect(addr)
            assert (await client.request(register_cmd(LEADER, 0, 1), 2000)).code == codes.SUCCESS
            assert (await route(client, "Orders")).code == codes.SUCCESS
            await client.aclose()
        run(main())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_listen_flag_exits_2_with_one_line():
    result = subprocess.run([sys.executable, "-m", "mqbench.broker.namesrv", "--listen", "nowhere"],
                            capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 2 and result.stderr.strip() == "error: address 'nowhere' is not host:port"


def test_forged_register_and_unregister_are_refused_with_a_cluster_secret():
    """Finding 2: a forged REGISTER_BROKER with raftTerm=1000000 pointed broker-a's routes at a dead
    address and locked the real leader out; a forged UNREGISTER_BROKER dropped the route. With the
    cluster secret both are refused NO_PERMISSION and the real routes stay as they were."""
    from mqbench.broker.cluster_secret import sign_request
    from mqbench.broker.server.registration import Registrar, Registration

    secret = bytes(range(32))

    async def main():
        ns = NameServer(scan_interval_ms=3_600_000, secret=secret)
        host, port = await ns.start("127.0.0.1", 0)
        addr = f"{host}:{port}"
        real = Registration("c1", "g0", LEADER, 0, "127.0.0.1:20911", 3, {"Orders": TopicEntry(4, 4, 6)})
        registrar = Registrar(addr, lambda: real, secret=secret)
        attacker = await connect(addr)
        try:
            assert await registrar.register_once()
            before = json.loads((await route(attacker, "Orders")).body)
            assert before["brokerDatas"][0]["brokerAddrs"] == {"0": LEADER}

            forged = register_cmd("127.0.0.1:1", 0, 1_000_000, heartbeatTimeoutMillis="3600000")
            r = await attacker.request(forged, 2000)
            assert r.code == codes.NO_PERMISSION and "not signed" in r.remark
            # signed with a guessed secret, or a real signature on altered fields
            guessed = sign_request(register_cmd("127.0.0.1:1", 0, 1_000_000), b"x" * 32, ns.wall_clock_ms())
            assert (await attacker.request(guessed, 2000)).code == codes.NO_PERMISSION
            tampered = sign_request(register_cmd(LEADER, 0, 3), secret, ns.wall_clock_ms())
            tampered.ext_fields["raftTerm"] = "1000000"
            assert (await attacker.request(tampered, 2000)).code == codes.NO_PERMISSION
            # a real signature, captured and replayed much later
            old = sign_request(register_cmd("127.0.0.1:1", 0, 1_000_000), secret, ns.wall_clock_ms() - 3_600_000)
            r = await attacker.request(old, 2000)
            assert r.code == codes.NO_PERMISSION and "clock" in r.remark

            unregister = RemotingCommand.request(codes.UNREGISTER_BROKER, headers.UnregisterBrokerHeader(
                "g0", LEADER, "c1", 0).to_ext())
            r = await attacker.request(unregister, 2000)
            assert r.code == codes.NO_PERMISSION
            assert json.loads((await route(attacker, "Orders")).body) == before
            assert ns.routes.brokers["g0"].term == 3 and ns.refused_unsigned == 5

            # the real broker still registers a new term and unregisters
            real = Registration("c1", "g0", LEADER, 0, "127.0.0.1:20911", 4, {"Orders": TopicEntry(4, 4, 6)})
            assert await registrar.register_once() and ns.routes.brokers["g0"].term == 4
            await registrar.close(unregister=True)
            assert (await route(attacker, "Orders")).code == codes.TOPIC_NOT_EXIST
        finally:
            await registrar.close(unregister=False)
            await attacker.aclose()
            await ns.close()
    run(main())


def test_without_a_secret_unsigned_registrations_are_taken_as_rocketmq_does():
    async def main():
        ns = NameServer(scan_interval_ms=3_600_000)
        host, port = await ns.start("127.0.0.1", 0)
        client = await connect(f"{host}:{port}")
        try:
            assert (await client.request(register_cmd(LEADER, 0, None), 2000)).code == codes.SUCCESS
        finally:
            await client.aclose()
            await ns.close()
    run(main())
