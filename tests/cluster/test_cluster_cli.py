"""``mqbench cluster``: real processes started, killed, restarted and stopped through the CLI.

The error cases need no broker: an unknown layout, no cluster in the directory, a busy port, a
directory whose cluster still runs (a real name server process stands in as "the cluster"), an
unknown kill target or group, --netns. The others start ``single`` and ``raft3`` for real.
"""
from __future__ import annotations

import json
import socket
import time

import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.cluster import launcher
from mqbench.cluster.processes import ClusterState, ProcessRecord, python_argv, spawn, stop

OFFSET_SINGLE = 4110
OFFSET_RAFT3 = 4120
OFFSET_ERRORS = 4130
OFFSET_3X3 = 4140


def run(*args: str):
    return CliRunner().invoke(cli, ["cluster", *args], catch_exceptions=False)


def error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mqbench: error: "), result.output
    return lines[0]


# --- errors (no broker needed) ------------------------------------------------------------------


def test_unknown_layout_is_one_line(tmp_path):
    line = error_line(run("up", "--layout", "nope", "--dir", str(tmp_path / "c")))
    assert "no layout 'nope'" in line and "raft3" in line
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("command", [["status"], ["down"], ["kill", "broker-a/n0"], ["start", "all"],
                                     ["leader", "broker-a"]])
def test_commands_without_a_cluster_say_so(tmp_path, command):
    line = error_line(run(*command, "--dir", str(tmp_path)))
    assert "no cluster in" in line and "mqbench cluster up" in line


def test_corrupt_state_file_is_named(tmp_path):
    (tmp_path / "cluster.json").write_text("{not json")
    line = error_line(run("status", "--dir", str(tmp_path)))
    assert "cluster.json is corrupt" in line


def test_busy_port_is_named(tmp_path):
    layout = launcher.load_layout("raft3").with_port_offset(OFFSET_ERRORS)
    busy = layout.instances[1]
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((busy.address, busy.raft_port))
        listener.listen()
        line = error_line(run("up", "--layout", "raft3", "--port-offset", str(OFFSET_ERRORS),
                              "--dir", str(tmp_path / "c")))
    assert f"port {busy.address}:{busy.raft_port} for broker-a/n1 (Raft peers) is busy" in line
    assert "--port-offset" in line


def test_a_layout_naming_node_addresses_is_refused_without_ray(tmp_path):
    layout = tmp_path / "nodes.toml"
    layout.write_text('name = "nodes"\n[rooms.r]\nhosts = ["a"]\n[hosts.a]\naddress = "10.9.8.7"\n'
                      '[groups.g]\nreplicas = ["a"]\n')
    line = error_line(run("up", "--layout", str(layout), "--dir", str(tmp_path / "c")))
    assert "host a has the node address 10.9.8.7" in line and "--cluster ray://" in line
    assert not (tmp_path / "c").exists()
    line = error_line(run("up", "--layout", "single", "--ray-head-workers", "--dir", str(tmp_path / "c")))
    assert "--ray-head-workers needs --cluster" in line


def test_netns_is_refused_clearly(tmp_path):
    line = error_line(run("up", "--layout", "single", "--netns", "--dir", str(tmp_path / "c")))
    assert "--netns is not available" in line


def test_bad_flags_are_refused(tmp_path):
    result = run("up", "--layout", "single", "--durability", "sometimes", "--dir", str(tmp_path))
    assert result.exit_code == 2 and "sometimes" in result.output
    result = run("kill", "x", "--signal", "HUP", "--dir", str(tmp_path))
    assert result.exit_code == 2 and "HUP" in result.output


@pytest.mark.realproc
def test_directory_with_a_running_cluster_is_refused(tmp_path):
    """A directory whose recorded processes still run cannot host a second ``up``; targets are checked."""
    layout = launcher.load_layout("single").with_port_offset(OFFSET_ERRORS)
    directory = tmp_path / "c"
    directory.mkdir()
    record = ProcessRecord(name="namesrv", kind="namesrv", host="h1", room="room1", addr=layout.namesrv_addr,
                           workdir=str(directory / "namesrv"),
                           argv=python_argv("mqbench.broker.namesrv", "--listen", layout.namesrv_addr))
    state = ClusterState(directory=directory, layout_source=layout.source, layout_name=layout.name,
                         port_offset=OFFSET_ERRORS, processes={"namesrv": record})
    spawn(record)
    state.save()
    try:
        line = error_line(run("up", "--layout", "single", "--port-offset", str(OFFSET_ERRORS + 1),
                              "--dir", str(directory)))
        assert "already running" in line and "namesrv" in line and "cluster down" in line
        line = error_line(run("kill", "broker-z/n9", "--dir", str(directory)))
        assert "nothing in this cluster is called 'broker-z/n9'" in line and "namesrv" in line
        line = error_line(run("leader", "broker-z", "--dir", str(directory)))
        assert "no group 'broker-z'" in line and "broker-a" in line
        result = run("down", "--dir", str(directory), "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert doc["schema"] == "mqbench.cluster-action/1"
        assert doc["processes"] == [{"process": "namesrv", "outcome": "stopped"}]
        assert not record.alive()
    finally:
        stop([record], timeout_s=2)


# --- real clusters ------------------------------------------------------------------------------------


def status_doc(directory) -> dict:
    result = run("status", "--dir", str(directory), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["schema"] == "mqbench.cluster-status/1"
    return doc


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.2)


@pytest.mark.realproc
def test_single_up_status_kill_start_down(tmp_path):
    directory = tmp_path / "single"
    result = run("up", "--layout", "single", "--port-offset", str(OFFSET_SINGLE), "--dir", str(directory), "--json")
    try:
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert doc["layout"] == "single" and doc["port_offset"] == OFFSET_SINGLE and doc["namesrv_running"]
        assert doc["namesrv_addr"] == f"127.0.0.1:{9876 + OFFSET_SINGLE}"
        [row] = doc["instances"]
        assert row["instance"] == "broker-a/n0" and row["role"] == "leader" and row["term"] >= 1
        assert row["address"] == f"127.0.0.1:{10911 + OFFSET_SINGLE}" and row["pid"] > 0
        first_pid = row["pid"]

        table = run("status", "--dir", str(directory))
        assert table.exit_code == 0
        header = table.output.splitlines()[1].split()
        assert header == ["group", "replica", "host", "room", "role", "term", "address", "pid"]
        assert "leader" in table.output and str(first_pid) in table.output

        again = run("up", "--layout", "single", "--port-offset", str(OFFSET_SINGLE), "--dir", str(directory))
        assert "already running" in error_line(again)

        killed = run("kill", "broker-a/n0", "--dir", str(directory))
        assert killed.exit_code == 0 and "sent SIGKILL to broker-a/n0" in killed.output
        [row] = status_doc(directory)["instances"]
        assert row["process"] == "down" and row["role"] == "down" and row["pid"] is None
        assert "no leader" in error_line(run("leader", "broker-a", "--dir", str(directory)))

        started = run("start", "broker-a", "--dir", str(directory))
        assert started.exit_code == 0 and "started broker-a/n0" in started.output
        row = wait_for(lambda: next((r for r in status_doc(directory)["instances"] if r["role"] == "leader"), None),
                       30, "single broker leading again after restart")
        assert row["pid"] != first_pid
        leader = run("leader", "broker-a", "--dir", str(directory), "--json")
        assert json.loads(leader.output)["instance"] == "broker-a/n0"
    finally:
        down = run("down", "--dir", str(directory), "--timeout", "5")
    assert down.exit_code == 0, down.output
    assert "broker-a/n0" in down.output and "namesrv" in down.output
    state = ClusterState.load(directory)
    assert not any(r.alive() for r in state.processes.values())
    assert (directory / "broker-a" / "n0" / "broker.log").exists()


@pytest.mark.realproc
def test_raft3_leader_kill_elects_another_and_restart_rejoins(tmp_path):
    directory = tmp_path / "raft3"
    result = run("up", "--layout", "raft3", "--port-offset", str(OFFSET_RAFT3), "--dir", str(directory), "--json")
    try:
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)["instances"]
        assert [r["host"] for r in rows] == ["h1", "h2", "h3"]
        assert sorted(r["role"] for r in rows) == ["follower", "follower", "leader"]
        old = json.loads(run("leader", "broker-a", "--dir", str(directory), "--json").output)
        killed = run("kill", old["instance"], "--dir", str(directory), "--json")
        assert json.loads(killed.output)["processes"] == [old["instance"]]

        def new_leader():
            rows = status_doc(directory)["instances"]
            return next((r for r in rows if r["role"] == "leader" and r["instance"] != old["instance"]), None)

        row = wait_for(new_leader, 30, "a new raft3 leader after SIGKILL")
        assert row["term"] > old["term"]

        assert "started" in run("start", old["host"], "--dir", str(directory)).output
        rows = wait_for(lambda: (lambda rs: rs if all(r["role"] in ("leader", "follower") for r in rs) else None)(
            status_doc(directory)["instances"]), 30, "the killed replica rejoining")
        assert sum(r["role"] == "leader" for r in rows) == 1

        # STOP freezes a follower (its process stays), CONT through `start` resumes it.
        follower = next(r for r in rows if r["role"] == "follower")
        assert run("kill", follower["instance"], "--signal", "STOP", "--dir", str(directory)).exit_code == 0
        frozen = next(r for r in status_doc(directory)["instances"] if r["instance"] == follower["instance"])
        assert frozen["process"] == "stopped" and frozen["pid"] == follower["pid"]
        assert f"started {follower['instance']}" in run("start", follower["instance"], "--dir", str(directory)).output
        wait_for(lambda: next(r for r in status_doc(directory)["instances"]
                              if r["instance"] == follower["instance"])["role"] in ("leader", "follower"),
                 30, "the frozen follower answering again")
    finally:
        down = run("down", "--dir", str(directory), "--timeout", "5")
    assert down.exit_code == 0
    assert not any(r.alive() for r in ClusterState.load(directory).processes.values())


@pytest.mark.realproc
def test_a_broker_that_dies_while_starting_is_reported_and_nothing_is_left_running(tmp_path):
    directory = tmp_path / "broken"
    (directory / "broker-a" / "n0").mkdir(parents=True)
    (directory / "broker-a" / "n0" / "store").write_text("a file where the store directory should be")
    result = run("up", "--layout", "single", "--port-offset", str(OFFSET_ERRORS + 2), "--dir", str(directory),
                 "--wait", "30")
    assert result.exit_code == 2, result.output
    first = result.output.splitlines()[0]
    assert first.startswith("mqbench: error: broker-a/n0 exited while starting; last lines of ")
    assert "broker.log" in first
    state = ClusterState.load(directory)
    assert not any(r.alive() for r in state.processes.values())


@pytest.mark.realproc
def test_3x3_comes_up_with_one_leader_per_host(tmp_path):
    directory = tmp_path / "3x3"
    result = run("up", "--layout", "3x3", "--port-offset", str(OFFSET_3X3), "--dir", str(directory), "--json")
    try:
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output)["instances"]
        assert len(rows) == 9 and len({r["address"] for r in rows}) == 9
        assert {r["group"] for r in rows if r["role"] == "leader"} == {"broker-a", "broker-b", "broker-c"}

        def one_leader_per_host():
            leaders = [r for r in status_doc(directory)["instances"] if r["role"] == "leader"]
            return sorted(r["host"] for r in leaders) == ["h1", "h2", "h3"] and leaders

        leaders = wait_for(one_leader_per_host, 30, "preferred leaders spreading the groups over the hosts")
        assert {(r["group"], r["host"]) for r in leaders} == {("broker-a", "h1"), ("broker-b", "h2"),
                                                               ("broker-c", "h3")}
        hit = json.loads(run("kill", "h2", "--dir", str(directory), "--json").output)["processes"]
        assert sorted(hit) == ["broker-a/n1", "broker-b/n1", "broker-c/n1"]
    finally:
        run("down", "--dir", str(directory), "--timeout", "5")
    assert not any(r.alive() for r in ClusterState.load(directory).processes.values())
