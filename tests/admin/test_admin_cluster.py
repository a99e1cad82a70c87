"""The cluster query (``mqbench.admin.cluster``) and the ``--target`` run's layout field, against a
real raft3 reference cluster, and the parsing of a real RocketMQ name server's answer."""
from __future__ import annotations

import asyncio

import pytest

from mqbench.admin.calls import AdminError
from mqbench.admin.cluster import query_cluster, replica_from_runtime
from mqbench.broker.formats import admin_bodies as bodies
from mqbench.broker.remoting.server import RemotingServer
from mqbench.run.environment import target_layout

pytestmark = pytest.mark.realproc


def test_cluster_view_names_every_replica_and_the_leader(raft3):
    state, layout = raft3
    view = asyncio.run(query_cluster(layout.namesrv_addr))
    assert [g.broker_name for g in view.groups] == ["broker-a"]
    group = view.groups[0]
    assert sorted(r.addr for r in group.replicas) == sorted(i.addr for i in layout.instances)
    assert group.master is not None and group.master.role == "leader"
    assert sorted(r.role for r in group.replicas) == ["follower", "follower", "leader"]
    assert len({r.term for r in group.replicas}) == 1
    assert view.hosts == sorted({i.address for i in layout.instances}) and len(view.hosts) == 3
    assert all(r.version.startswith("mqbench") and r.put_10s_msgs_per_s is not None for r in group.replicas)
    doc = view.to_json()
    assert doc["schema"] == "mqbench.admin-cluster/1" and doc["replicas_count"] == 3


def test_target_run_layout_is_the_real_cluster(raft3):
    _state, layout = raft3
    summary = asyncio.run(target_layout(layout.namesrv_addr, brokers_routed=1))
    assert summary["hosts"] == 3 and summary["groups"] == 1 and summary["replicas_per_group"] == 3
    assert summary["instances"] == 3 and summary["source"] == "cluster info"
    assert sorted(summary["brokers"]["broker-a"]) == sorted(i.addr for i in layout.instances)


def test_target_layout_falls_back_to_routes_when_cluster_info_is_refused():
    async def scenario():
        server = RemotingServer({})  # answers every code with REQUEST_CODE_NOT_SUPPORTED
        host, port = await server.start("127.0.0.1", 0)
        try:
            return await target_layout(f"{host}:{port}", brokers_routed=2)
        finally:
            await server.close()

    summary = asyncio.run(scenario())
    assert summary["hosts"] == 2 and summary["replicas_per_group"] == 1
    assert summary["source"].startswith("topic routes") and "REQUEST_CODE_NOT_SUPPORTED" in summary["source"]


def test_unreachable_name_server_is_one_admin_error():
    with pytest.raises(AdminError, match="no name server answered"):
        asyncio.run(query_cluster("127.0.0.1:1", timeout_s=0.5))


def test_real_rocketmq_cluster_info_with_bare_integer_keys():
    # what a 4.9.8 name server sends: fastjson, brokerAddrs keyed by bare integers
    body = (b'{"brokerAddrTable":{"broker-b":{"brokerAddrs":{0:"10.0.0.2:10911",1:"10.0.0.3:10911"},'
            b'"brokerName":"broker-b","cluster":"DefaultCluster"},"broker-a":{"brokerAddrs":{0:"10.0.0.1:10911"},'
            b'"brokerName":"broker-a","cluster":"DefaultCluster"}},"clusterAddrTable":{"DefaultCluster":'
            b'["broker-a","broker-b"]}}')
    brokers = bodies.parse_cluster_info(body)
    assert [(b.broker_name, b.addrs) for b in brokers] == [
        ("broker-a", {0: "10.0.0.1:10911"}), ("broker-b", {0: "10.0.0.2:10911", 1: "10.0.0.3:10911"})]
    # a real broker's runtime info has no Raft role: brokerId decides master/slave
    info = {"brokerVersionDesc": "V4_9_8", "putTps": "12.5 10.0 9.1", "getTransferedTps": "3.0 2.0 1.0"}
    assert replica_from_runtime(0, "10.0.0.2:10911", info).role == "master"
    slave = replica_from_runtime(1, "10.0.0.3:10911", info)
    assert (slave.role, slave.version, slave.put_10s_msgs_per_s, slave.get_10s_msgs_per_s) == (
        "slave", "V4_9_8", 12.5, 3.0)


def test_malformed_cluster_info_is_a_peer_error():
    from mqbench.errors import PeerError

    for body in (b"", b"[1]", b'{"brokerAddrTable":{"a":{"brokerAddrs":{"x":"1"}}}}'):
        with pytest.raises(PeerError):
            bodies.parse_cluster_info(body)


@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_target_run_result_records_the_real_brokers_and_replicas(raft3, tmp_path):
    import glob
    import json
    import subprocess
    import sys

    _state, layout = raft3
    namesrv = layout.namesrv_addr
    for topic, queues in (("order_events", "16"), ("order_payment_timeout", "8")):
        made = subprocess.run([sys.executable, "-m", "mqbench", "admin", "topic", "create", topic, "--queues", queues,
                               "--target", namesrv], capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stderr
    run = subprocess.run([sys.executable, "-m", "mqbench", "run", "orders", "--target", namesrv, "--rate", "100",
                          "--duration", "3s", "--warmup", "1s", "--drain", "2s", "--limits", "none",
                          "--out", str(tmp_path / "results")], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    (path,) = glob.glob(str(tmp_path / "results" / "*" / "result.json"))
    doc = json.load(open(path))
    assert doc["layout"]["source"] == "cluster info"
    assert (doc["layout"]["hosts"], doc["layout"]["groups"], doc["layout"]["replicas_per_group"]) == (3, 1, 3)
    assert sorted(doc["layout"]["brokers"]["broker-a"]) == sorted(i.addr for i in layout.instances)
