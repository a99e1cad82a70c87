"""The official clients against the real broker process (started by the launcher): the C++ client
(PyPI ``rocketmq`` 0.4.4: SEND_MESSAGE 10 with long header names, offsets of a group it never
committed, auto-created topics through TBW102) and npm's ali-ons (SEND_MESSAGE_V2 with JSON
numbers in extFields). Drivers and installation: ``tests/official``."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mqbench.admin.calls import create_topic
from mqbench.cluster import launcher

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "official"))
import clients  # noqa: E402  (installs the official clients under .cache/, or skips)

OFFICIAL = Path(__file__).resolve().parents[1] / "official"


def drive(argv: list[str], timeout_s: float = 90) -> tuple[int, list[dict], str]:
    import json
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")], proc.stderr


@pytest.fixture
def single(tmp_path, free_port_offset):
    state = launcher.up("single", tmp_path / "cluster", port_offset=free_port_offset("single"), wait_s=30)
    yield state
    assert launcher.down(state)["broker-a/n0"] == "stopped"


def _leader_addr(state) -> str:
    return launcher.leader(state, "broker-a").addr


@pytest.mark.realproc
def test_official_cpp_client_produces_and_consumes(single):
    import asyncio
    argv = clients.ensure_cpp_client()
    namesrv = launcher.cluster_layout(single).namesrv_addr
    # a topic nobody created: the C++ client sends with the TBW102 route and the broker creates it
    rc, lines, err = drive([*argv, "produce", "--namesrv", namesrv, "--topic", "CppOrders", "--count", "6",
                            "--prefix", "cpp"])
    assert rc == 0, err
    assert [line["status"] for line in lines] == ["OK"] * 6
    rc, lines, err = drive([*argv, "consume", "--namesrv", namesrv, "--topic", "CppOrders", "--group", "GID_cpp",
                            "--expect", "6", "--timeout-s", "30"])
    assert rc == 0, err
    got = {line["key"]: line for line in lines if "key" in line}
    assert sorted(got) == [f"cpp-{i}" for i in range(6)]
    assert got["cpp-4"]["body"] == "body-cpp-4" and got["cpp-4"]["tags"] == "tag1" and got["cpp-4"]["seq"] == "4"
    asyncio.run(create_topic(_leader_addr(single), "CppOrders", queues=4))   # the admin path agrees it exists


@pytest.mark.realproc
def test_ali_ons_produces_and_consumes(single):
    import asyncio
    argv = clients.ensure_ons_client()
    namesrv = launcher.cluster_layout(single).namesrv_addr
    asyncio.run(create_topic(_leader_addr(single), "OnsOrders", queues=2))
    rc, lines, err = drive([*argv, "produce", "--namesrv", namesrv, "--topic", "OnsOrders", "--count", "5",
                            "--prefix", "ons"])
    assert rc == 0, err
    assert [line["status"] for line in lines] == ["SEND_OK"] * 5
    rc, lines, err = drive([*argv, "consume", "--namesrv", namesrv, "--topic", "OnsOrders", "--group", "GID_ons",
                            "--expect", "5", "--timeout-s", "30"])
    assert rc == 0, err
    assert sorted(line["key"] for line in lines if "key" in line) == [f"ons-{i}" for i in range(5)]
