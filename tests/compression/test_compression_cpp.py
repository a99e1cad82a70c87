"""zlib compatibility with the official RocketMQ C++ client (PyPI ``rocketmq`` 0.4.4, librocketmq.so),
through mqbench's name server and the scripted broker of ``tests/client/conftest.py``:

* what the C++ producer sends for a body over 4 KiB is what mqbench's producer sends with
  ``compression="zlib:5"``: sysflag 0x1 and the same zlib bytes;
* the C++ consumer reads the zlib bodies mqbench's producer compressed (and the plain ones).
"""
import asyncio
import importlib.util
import json
import sys
import zlib
from pathlib import Path

import pytest

from mqbench.broker.formats import record_layout
from mqbench.client import OutgoingMessage, Producer

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "official"))
import clients  # noqa: E402  (tests/official/clients.py installs the client under .cache/)

_spec = importlib.util.spec_from_file_location("client_scripted_broker_cpp", TESTS / "client" / "conftest.py")
scripted = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scripted)

BIG = ('{"order_id": "o-%d", "lines": [' + ", ".join('{"sku": "s%d", "qty": 2}' % i for i in range(400)) + "]}")

CPP_PRODUCE = """
import json, sys
from rocketmq.client import Message, Producer
producer = Producer("PID_cppz", timeout=3000)
producer.set_namesrv_addr(sys.argv[1])
producer.start()
for i, body in enumerate(json.loads(sys.argv[2])):
    msg = Message("Orders")
    msg.set_keys(f"cpp-{i}")
    msg.set_body(body)
    print(json.dumps({"status": producer.send_sync(msg).status.name}), flush=True)
producer.shutdown()
"""

CPP_CONSUME = """
import json, sys, threading
from rocketmq.client import PushConsumer
got, done = {}, threading.Event()
def on_message(msg):
    key = msg.keys if isinstance(msg.keys, str) else msg.keys.decode()
    body = msg.body if isinstance(msg.body, str) else msg.body.decode()
    got[key] = body
    if len(got) >= int(sys.argv[2]):
        done.set()
consumer = PushConsumer("GID_cppz")
consumer.set_namesrv_addr(sys.argv[1])
consumer.subscribe("Orders", on_message)
consumer.start()
done.wait(30)
consumer.shutdown()
print(json.dumps(got), flush=True)
"""


async def _drive(argv, timeout_s=90):
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode, [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")], \
        err.decode()


@pytest.mark.realproc
def test_cpp_client_and_mqbench_send_the_same_zlib_and_read_each_others():
    python = clients.ensure_cpp_client()[0]
    bodies = ["short plain body", BIG % 1, (BIG % 2)[:4096]]   # under, over and exactly at 4 KiB

    async def main():
        async with scripted.Cluster() as cluster:
            broker = await cluster.add_broker(topics=("Orders",), queue_nums=1, unknown_group_offset_zero=True)
            rc, lines, err = await _drive([python, "-c", CPP_PRODUCE, cluster.namesrv_addr, json.dumps(bodies)])
            assert rc == 0, err
            assert [line["status"] for line in lines] == ["OK"] * 3
            cpp = {m.properties["KEYS"]: m for m in broker.stored("Orders")}
            async with Producer(cluster.namesrv_addr, compression="zlib:5") as producer:
                for i, body in enumerate(bodies):
                    await producer.send(OutgoingMessage("Orders", body.encode(), keys=[f"mq-{i}"]))
            ours = {m.properties["KEYS"]: m for m in broker.stored("Orders") if m.properties["KEYS"].startswith("mq")}
            for i in range(len(bodies)):
                a, b = cpp[f"cpp-{i}"], ours[f"mq-{i}"]
                assert (a.sysflag, a.body) == (b.sysflag, b.body), f"body {i}"
            assert cpp["cpp-0"].sysflag == 0 and cpp["cpp-1"].sysflag == record_layout.SYSFLAG_COMPRESSED
            assert cpp["cpp-1"].body == zlib.compress(bodies[1].encode(), 5)
            rc, lines, err = await _drive([python, "-c", CPP_CONSUME, cluster.namesrv_addr, "6"])
            assert rc == 0, err
            assert lines[-1] == {**{f"cpp-{i}": b for i, b in enumerate(bodies)},
                                 **{f"mq-{i}": b for i, b in enumerate(bodies)}}
    asyncio.run(asyncio.wait_for(main(), 200))
