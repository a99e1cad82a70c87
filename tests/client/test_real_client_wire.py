"""A real remoting client (npm ali-ons 3.x) against mqbench's name server and remoting stack.

The broker side is the scripted test broker (see conftest), so this proves the wire: frames, JSON
headers with ali-ons' non-string ext values, route JSON, SEND_MESSAGE_V2, heartbeats, consumer
list, offsets and long-poll PULL_MESSAGE bodies of stored-message records. The real broker is
tested with the same drivers in its own suite.
"""
import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "official"))
import clients  # noqa: E402  (tests/official/clients.py installs the client under .cache/)


async def _drive(argv, *args, timeout_s=90):
    proc = await asyncio.create_subprocess_exec(*argv, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    lines = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    return proc.returncode, lines, err.decode()


@pytest.mark.realproc
def test_ali_ons_produces_and_consumes_through_our_stack(cluster, run):
    argv = clients.ensure_ons_client()

    async def main():
        async with cluster:
            broker = await cluster.add_broker(topics=("Orders",), queue_nums=2)
            rc, lines, err = await _drive(argv, "produce", "--namesrv", cluster.namesrv_addr, "--topic", "Orders",
                                          "--count", "6", "--prefix", "ons")
            assert rc == 0, err
            assert [line["status"] for line in lines] == ["SEND_OK"] * 6
            stored = {m.body: m for m in broker.stored("Orders")}
            assert stored[b"body-ons-4"].properties["KEYS"] == "ons-4"
            assert stored[b"body-ons-4"].properties["seq"] == "4"
            rc, lines, err = await _drive(argv, "consume", "--namesrv", cluster.namesrv_addr, "--topic", "Orders",
                                          "--group", "GID_ons", "--expect", "6", "--timeout-s", "30")
            assert rc == 0, err
            got = {line["key"]: line for line in lines if "key" in line}
            assert sorted(got) == [f"ons-{i}" for i in range(6)]
            assert got["ons-5"]["body"] == "body-ons-5" and got["ons-5"]["tags"] == "tag2"
            assert sum(broker.offsets.get(("GID_ons", "Orders", q), 0) for q in range(2)) >= 1
    run(main(), timeout_s=200)


CPP_PRODUCE = """
import json, sys
from rocketmq.client import Message, Producer
producer = Producer("PID_cpp", timeout=3000)
producer.set_namesrv_addr(sys.argv[1])
producer.start()
for i in range(4):
    msg = Message("Orders")
    msg.set_keys(f"cpp-{i}")
    msg.set_tags("t")
    msg.set_property("seq", str(i))
    msg.set_body(f"body-cpp-{i}")
    result = producer.send_sync(msg)
    print(json.dumps({"key": f"cpp-{i}", "status": result.status.name, "offset": result.offset}), flush=True)
producer.shutdown()
"""

CPP_CONSUME = """
import json, sys, threading
from rocketmq.client import PushConsumer
seen, done = set(), threading.Event()
def on_message(msg):
    seen.add(msg.keys if isinstance(msg.keys, str) else msg.keys.decode())
    if len(seen) >= 4:
        done.set()
consumer = PushConsumer("GID_cpp")
consumer.set_namesrv_addr(sys.argv[1])
consumer.subscribe("Orders", on_message)
consumer.start()
done.wait(30)
consumer.shutdown()
print(json.dumps({"seen": sorted(seen)}), flush=True)
"""


@pytest.mark.realproc
def test_official_cpp_client_produces_and_consumes_through_our_stack(cluster, run):
    python = clients.ensure_cpp_client()[0]

    async def main():
        async with cluster:
            broker = await cluster.add_broker(topics=("Orders",), queue_nums=2, unknown_group_offset_zero=True)
            rc, lines, err = await _drive([python, "-c", CPP_PRODUCE], cluster.namesrv_addr)
            assert rc == 0, err
            assert [line["status"] for line in lines] == ["OK"] * 4
            assert {c.code for c in broker.requests} == {10}  # SEND_MESSAGE with the long-name header
            stored = {m.body: m for m in broker.stored("Orders")}
            assert stored[b"body-cpp-2"].properties["KEYS"] == "cpp-2"
            rc, lines, err = await _drive([python, "-c", CPP_CONSUME], cluster.namesrv_addr)
            assert rc == 0, err
            assert lines[-1]["seen"] == [f"cpp-{i}" for i in range(4)]
    run(main(), timeout_s=200)
