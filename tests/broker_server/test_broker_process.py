"""``python -m mqbench.broker.server.main``: flags, start-up failures, and a real process started by
``mqbench.cluster.launcher`` that a producer and a consumer use."""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time

import pytest

from mqbench.broker.server import main as broker_main
from mqbench.broker.store.store import Store
from mqbench.client import Consumer, OutgoingMessage, Producer
from mqbench.cluster import launcher

LAYOUT_TOML = """
name = "portbusy"
cluster = "c"
namesrv_host = "h1"
namesrv_port = {namesrv}
broker_port = {broker}
[rooms.r1]
hosts = ["h1"]
[hosts.h1]
address = "127.0.77.200"
[groups.g]
replicas = ["h1"]
"""


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


@pytest.mark.parametrize("argv, expected", [
    ([], "required"),
    (["--layout", "single", "--instance", "broker-a/n0", "--store", "s", "--durability", "sometimes"],
     "invalid choice: 'sometimes'"),
    (["--layout", "single", "--instance", "broker-a/n0", "--store", "s", "--port-offset", "x"], "invalid int value"),
    (["--layout", "single", "--instance", "broker-a/n0", "--store", "s", "--bogus"], "unrecognized arguments: --bogus"),
    (["--layout", "single", "--instance", "broker-a/n0", "--store", "s", "--store-version", "v5"],
     "invalid choice: 'v5'"),
    (["--layout", "no-such-layout", "--instance", "broker-a/n0", "--store", "s"], "no layout 'no-such-layout'"),
    (["--layout", "single", "--instance", "broker-z/n9", "--store", "s"], "has no instance 'broker-z/n9'"),
    (["--layout", "single", "--instance", "broker-a/n0", "--store", "s", "--port-offset", "60000"], "out of range"),
])
def test_bad_flags_give_one_line_and_exit_2(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert broker_main.main(argv) == 2
    assert expected in one_error_line(capsys)


def test_port_in_use_is_one_line_and_the_store_is_released(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.77.200", 0))
        busy.listen()
        port = busy.getsockname()[1]
        layout = tmp_path / "busy.toml"
        # the instance's client port is taken; its Raft port (port + 1) and the name server's are not
        layout.write_text(LAYOUT_TOML.format(namesrv=port + 5, broker=port))
        argv = ["--layout", str(layout), "--instance", "g/n0", "--store", str(tmp_path / "store")]
        assert broker_main.main(argv) == 2
        assert "in use" in one_error_line(capsys)
    # the store was closed on the way out (its lock released): it opens again
    Store.open(tmp_path / "store", "v5-dledger", raft_mode=True).close()


@pytest.mark.realproc
def test_real_process_serves_a_producer_and_a_consumer_and_stops_cleanly(tmp_path, free_port_offset):
    state = launcher.up("single", tmp_path / "cluster", port_offset=free_port_offset("single"), wait_s=30)
    try:
        namesrv = launcher.cluster_layout(state).namesrv_addr
        leader = launcher.leader(state, "broker-a")
        assert leader.role == "leader"

        async def scenario():
            from mqbench.admin.calls import create_topic
            await create_topic(leader.addr, "Proc", queues=2)
            deadline = time.monotonic() + 10
            async with Producer(namesrv, "PID_proc") as producer:
                while True:
                    try:
                        sent = [await producer.send(OutgoingMessage("Proc", f"p{i}".encode())) for i in range(10)]
                        break
                    except Exception:
                        if time.monotonic() > deadline:   # the route appears with the next registration
                            raise
                        await asyncio.sleep(0.2)
                await producer.send_batch([OutgoingMessage("Proc", f"b{i}".encode()) for i in range(4)])
            consumer = Consumer(namesrv, "GID_proc", consume_from="first", suspend_timeout_ms=1000)
            consumer.subscribe("Proc")
            got = []
            async with consumer:
                while len(got) < 14 and time.monotonic() < deadline + 10:
                    got += await consumer.receive(32, 500)
            return sent, got

        sent, got = asyncio.run(asyncio.wait_for(scenario(), 40))
        assert sorted(m.body for m in got) == sorted([f"p{i}".encode() for i in range(10)]
                                                     + [f"b{i}".encode() for i in range(4)])
        assert all(r.status == "SEND_OK" for r in sent)
    finally:
        outcome = launcher.down(state, timeout_s=10)
    assert outcome == {"broker-a/n0": "stopped", "namesrv": "stopped"}
    log_text = state.processes["broker-a/n0"].log_path.read_text()
    assert "broker broker-a/n0 stopped" in log_text and "Traceback" not in log_text


@pytest.mark.realproc
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_process_cleanly_with_exit_0(tmp_path, sig):
    with socket.socket() as probe:
        probe.bind(("127.0.77.201", 0))
        port = probe.getsockname()[1]
    layout = tmp_path / "one.toml"
    layout.write_text(LAYOUT_TOML.replace("127.0.77.200", "127.0.77.201").format(namesrv=port + 5, broker=port))
    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "mqbench.broker.server.main", "--layout", str(layout),
                             "--instance", "g/n0", "--store", str(store), "--register-interval-ms", "200"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "serving on" in line or not line:
                break
        assert "serving on 127.0.77.201:%d" % port in lines[-1], lines
        assert (store / "abort").exists()
        # the name server is not up: the failed registration is logged, and the broker keeps serving
        while time.monotonic() < deadline and "registration of" not in lines[-1]:
            lines.append(proc.stderr.readline())
        assert "name server 127.0.77.201:%d unreachable" % (port + 5) in lines[-1], lines
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "broker g/n0 stopped" in err and "Traceback" not in err
    assert not (store / "abort").exists()      # the store was closed: a clean shutdown


@pytest.mark.realproc
def test_raft3_processes_survive_a_leader_sigkill(tmp_path, free_port_offset):
    state = launcher.up("raft3", tmp_path / "cluster", port_offset=free_port_offset("raft3"), wait_s=60)
    try:
        namesrv = launcher.cluster_layout(state).namesrv_addr
        first = launcher.leader(state, "broker-a")

        async def scenario():
            from mqbench.admin.calls import create_topic, query_runtime_info
            await create_topic(first.addr, "Kill", queues=2)
            acked = []
            deadline = time.monotonic() + 40
            async with Producer(namesrv, "PID_kill", send_timeout_ms=2000) as producer:
                async def send(body):
                    while True:   # what a user does across a failover: retry until the deadline
                        try:
                            acked.append((await producer.send(OutgoingMessage("Kill", body))).msg_id)
                            return
                        except Exception:
                            if time.monotonic() > deadline:
                                raise
                            await asyncio.sleep(0.2)
                for i in range(10):
                    await send(b"before-%d" % i)
                assert launcher.kill(state, first.name) == [first.name]
                for i in range(10):
                    await send(b"after-%d" % i)
            rows = [r for r in await launcher.status_async(state, 2.0) if r.role == "leader"]
            assert len(rows) == 1 and rows[0].name != first.name
            info = await query_runtime_info(rows[0].addr)
            assert int(info["raftTerm"]) > 1 and info["raftLeaderId"] == rows[0].name
            consumer = Consumer(namesrv, "GID_kill", consume_from="first", suspend_timeout_ms=1000)
            consumer.subscribe("Kill")
            got = []
            async with consumer:
                while len({m.msg_id for m in got}) < len(acked) and time.monotonic() < deadline + 20:
                    got += await consumer.receive(32, 500)
            return acked, got

        acked, got = asyncio.run(asyncio.wait_for(scenario(), 90))
        assert len(acked) == 20 and set(acked) <= {m.msg_id for m in got}   # every acknowledged send survived
    finally:
        launcher.down(state, timeout_s=10)
