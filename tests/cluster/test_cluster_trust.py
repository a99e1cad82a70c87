"""A real ``raft3`` cluster as ``mqbench cluster up`` starts it: the cluster secret is created with
mode 0600 and handed to every process; a frame forged as the leader's on a follower's Raft port is
refused and that connection closed, an unsigned registration is refused by the name server, and
the cluster keeps serving (findings 1 and 2 of issue 18, end to end)."""
from __future__ import annotations

import asyncio
import json
import stat

import pytest

from mqbench.broker.namesrv.routes import TopicEntry, register_body
from mqbench.broker.raft import auth
from mqbench.broker.raft.types import Entry, Message, MsgType
from mqbench.broker.raft.wire import encode_frame
from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.client import connect
from mqbench.broker.formats.command import RemotingCommand
from mqbench.cluster import launcher
from mqbench.cluster.control import ensure_topic


@pytest.mark.realproc
def test_cluster_up_authenticates_raft_peers_and_registrations(tmp_path, free_port_offset):
    state = launcher.up("raft3", tmp_path / "cluster", port_offset=free_port_offset("raft3"), wait_s=90)
    try:
        secret_file = tmp_path / "cluster" / "cluster.secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert all("--cluster-secret-file" in r.argv for r in state.processes.values())
        layout = launcher.cluster_layout(state)
        leader = launcher.leader(state, "broker-a")
        follower = next(i for i in layout.group_instances("broker-a") if i.name != leader.name)
        leader_id = int(leader.replica_id[1:]) + 1
        follower_id = int(follower.replica_id[1:]) + 1

        async def attack() -> None:
            reader, writer = await asyncio.open_connection(follower.address, follower.raft_port)
            await asyncio.wait_for(reader.readexactly(auth.CHALLENGE_BYTES), 5)
            writer.write(encode_frame(Message(MsgType.APP, leader_id, follower_id, leader.term, leader.term,
                                              leader.commit_index, (Entry(leader.commit_index + 1, leader.term,
                                                                          b"forged"),), leader.commit_index + 1)))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            ns = await connect(layout.namesrv_addr)
            try:
                header = headers.RegisterBrokerHeader(broker_name="broker-a", broker_addr="127.0.0.1:1",
                                                      cluster_name=layout.cluster, broker_id=0,
                                                      raft_term=1_000_000, heartbeat_timeout_ms=3_600_000)
                body = json.dumps(register_body({"T": TopicEntry(4, 4, 6)})).encode()
                r = await ns.request(RemotingCommand.request(codes.REGISTER_BROKER, header.to_ext(), body), 5000)
                assert r.code == codes.NO_PERMISSION
                unregister = headers.UnregisterBrokerHeader("broker-a", leader.addr, layout.cluster, 0)
                r = await ns.request(RemotingCommand.request(codes.UNREGISTER_BROKER, unregister.to_ext()), 5000)
                assert r.code == codes.NO_PERMISSION
            finally:
                await ns.aclose()
            await ensure_topic(state, "broker-a", "TrustTopic")

        asyncio.run(asyncio.wait_for(attack(), 60))
        assert launcher.namesrv_masters(state)["broker-a"] == leader.addr
        statuses = launcher.status(state)
        assert {s.role for s in statuses if s.group == "broker-a"} == {"leader", "follower"}
        assert all(s.process == "running" for s in statuses)
    finally:
        launcher.down(state, timeout_s=10)
