"""``mqbench admin``: the CLI against a real raft3 reference cluster (through --target and --dir),
with a producer and a consumer group making a real backlog, and its one-line errors."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.client import Consumer, OutgoingMessage, Producer

pytestmark = pytest.mark.realproc

GROUP = "GID_admin_cli"


def admin(*args: str):
    return CliRunner().invoke(cli, ["admin", *args], catch_exceptions=False)


def ok_json(*args: str) -> dict:
    result = admin(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def error_line(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mqbench: error: "), result.output
    return lines[0]


@pytest.fixture(scope="module")
def target(raft3):
    _state, layout = raft3
    return layout.namesrv_addr


def test_cluster_by_target_and_by_dir(raft3, target):
    state, layout = raft3
    doc = ok_json("cluster", "--target", target)
    assert doc["schema"] == "mqbench.admin-cluster/1" and doc["groups_count"] == 1 and doc["replicas_count"] == 3
    roles = sorted(r["role"] for r in doc["groups"][0]["replicas"])
    assert roles == ["follower", "follower", "leader"] and len(doc["hosts"]) == 3
    text = admin("cluster", "--dir", str(state.directory))
    assert text.exit_code == 0 and "3 replica(s) on 3 host(s)" in text.output and "leader" in text.output


def test_topic_create_update_list(target):
    created = ok_json("topic", "create", "CliOrders", "--queues", "4", "--target", target)
    assert created["schema"] == "mqbench.admin-topic-change/1"
    assert (created["action"], created["brokers"], created["routed"], created["write_queues"]) == (
        "created", ["broker-a"], True, 4)
    line = error_line(admin("topic", "create", "CliOrders", "--target", target))
    assert "already exists" in line and "topic update" in line
    updated = ok_json("topic", "update", "CliOrders", "--queues", "6", "--read-queues", "4", "--target", target)
    assert (updated["write_queues"], updated["read_queues"], updated["routed"]) == (6, 4, True)
    assert "does not exist" in error_line(admin("topic", "update", "CliNope", "--target", target))
    batch = ok_json("topic", "create", "CliBatch", "--queues", "2", "--attribute", "queue.type=BatchCQ",
                    "--target", target)
    assert batch["attributes"] == {"queue.type": "BatchCQ"}
    topics = {t["topic"]: t for t in ok_json("topic", "list", "--target", target)["topics"]}
    assert topics["CliOrders"]["brokers"] == [{"broker_name": "broker-a", "read_queues": 4, "write_queues": 6,
                                               "perm": 6}]
    assert "TBW102" not in topics
    everything = {t["topic"]: t["kind"] for t in ok_json("topic", "list", "--all", "--target", target)["topics"]}
    assert everything["TBW102"] == "system"
    assert "no broker group nob" in error_line(admin("topic", "create", "X1", "--broker", "nob", "--target", target))


async def _traffic(namesrv: str, sent: int, consumed: int) -> None:
    async with Producer(namesrv) as producer:
        for i in range(sent):
            await producer.send(OutgoingMessage("CliLag", f"m{i}".encode()))
    consumer = Consumer(namesrv, GROUP, consume_from="first", suspend_timeout_ms=500, pull_batch_size=1)
    consumer.subscribe("CliLag")
    async with consumer:
        got = []
        deadline = time.monotonic() + 20
        while len(got) < sent and time.monotonic() < deadline:
            got += await consumer.receive(32, 300)
    assert len(got) == sent
    async with Producer(namesrv) as producer:
        for i in range(sent - consumed):
            await producer.send(OutgoingMessage("CliLag", f"late{i}".encode()))


def test_group_offsets_show_lag_per_queue(target):
    assert ok_json("topic", "create", "CliLag", "--queues", "4", "--target", target)["routed"]
    asyncio.run(asyncio.wait_for(_traffic(target, 24, 17), 60))   # 24 consumed, then 7 more sent
    doc = ok_json("group", "offsets", GROUP, "--target", target)
    assert doc["schema"] == "mqbench.admin-group-offsets/1"
    queues = [q for q in doc["queues"] if q["topic"] == "CliLag"]
    assert [q["queue_id"] for q in queues] == [0, 1, 2, 3]
    assert all(q["lag_msgs"] == q["broker_offset"] - q["consumer_offset"] for q in queues)
    assert sum(q["broker_offset"] for q in queues) == 31 and doc["lag_total_msgs"] == 7
    assert doc["consume_msgs_per_s"] > 0 and doc["consumers_online"] == 0
    text = admin("group", "offsets", GROUP, "--topic", "CliLag", "--target", target)
    assert text.exit_code == 0 and "lag 7 msgs" in text.output
    groups = {g["group"]: g for g in ok_json("group", "list", "--target", target)["groups"]}
    assert groups[GROUP]["lag_total_msgs"] == 7 and groups[GROUP]["error"] is None
    assert "no offsets" in error_line(admin("group", "offsets", "GID_never", "--target", target))


def test_errors_are_one_line(tmp_path):
    assert "no cluster in" in error_line(admin("cluster", "--dir", str(tmp_path)))
    assert "no name server answered" in error_line(admin("cluster", "--target", "127.0.0.1:1", "--timeout", "0.5"))
    assert "not host:port" in error_line(admin("group", "list", "--target", "nohost"))
    assert "not key=value" in error_line(admin("topic", "create", "T", "--attribute", "x", "--target", "127.0.0.1:1"))
