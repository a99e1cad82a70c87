"""`workloads record`: the real mqbench consumer captures live sends into a trace.

The cluster is the real name server plus the client suite's scripted broker (tests/client/conftest.py;
loaded from its path because conftest modules are not importable by name). It answers the same
requests a RocketMQ broker does, which is all the recorder touches.
"""
import asyncio
import importlib.util
import time
from pathlib import Path


from mqbench.broker.formats import record as rec
from mqbench.client import Consumer, OutgoingMessage, Producer
from mqbench.client.messages import ReceivedMessage
from mqbench.workloads.record import record_trace, to_trace_message
from mqbench.workloads.reorder import ReorderBuffer
from mqbench.workloads.trace import iter_trace_rows, read_trace_info

_spec = importlib.util.spec_from_file_location("client_suite_fixtures",
                                               Path(__file__).parents[1] / "client" / "conftest.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)


def received(properties, born_ms=1_000, topic="T", body=b"x"):
    return ReceivedMessage(topic=topic, broker_name="b", queue_id=0, queue_offset=0, body=body, properties=properties,
                           born_timestamp_ms=born_ms, store_timestamp_ms=born_ms, born_host=("127.0.0.1", 1),
                           store_host=("127.0.0.1", 2), physical_offset=0, sysflag=0, reconsume_times=0)


def test_to_trace_message_keeps_user_fields_and_delays():
    born_us, m = to_trace_message(received({"KEYS": "a  b", "TAGS": "PAID", "UNIQ_KEY": "X", "WAIT": "true",
                                            "DELAY": "16", "region": "hz"}, born_ms=5))
    assert born_us == 5000 and (m.key, m.tags, m.properties) == ("a b", "PAID", {"region": "hz"})
    assert (m.delay_ms, m.delay_level) == (1_800_000, 16)
    _, timer = to_trace_message(received({"TIMER_DELIVER_MS": "61000"}, born_ms=1000))
    assert (timer.delay_ms, timer.delay_level) == (60_000, 0)
    _, plain = to_trace_message(received({"DELAY": "99"}))
    assert (plain.delay_ms, plain.delay_level, plain.key, plain.tags) == (0, 0, "", "")


def test_reorder_buffer_releases_in_order_within_the_window():
    buffer = ReorderBuffer(10)
    released = []
    for t in (5, 1, 12, 3, 30, 25, 41):
        assert not buffer.is_late(t)
        released += [item for _t, item in buffer.push(t, t)]
    assert released == [1, 3, 5, 12, 25, 30]
    assert buffer.is_late(29) and not buffer.is_late(30)
    assert [item for _t, item in buffer.drain()] == [41] and len(buffer) == 0


def test_record_captures_live_sends(tmp_path):
    out = tmp_path / "rec.parquet"

    async def main():
        async with fixtures.Cluster() as cluster:
            broker = await cluster.add_broker(topics=("Orders", "Notes"))
            consumer = Consumer(cluster.namesrv_addr, "GID_record", consume_from="last", suspend_timeout_ms=300,
                                pull_error_backoff_ms=50, rebalance_interval_ms=200, commit_interval_ms=100)
            consumer.subscribe("Orders")
            consumer.subscribe("Notes")
            broker.append(rec.Message(topic="Orders", body=b"history", born_timestamp_ms=1_000))

            async def produce():
                # wait until the recorder has taken its start offsets ("last"), as an operator would
                for _ in range(500):
                    states = list(consumer.assigned.values())
                    if len(states) == 8 and all(state.next_offset >= 0 for state in states):
                        break
                    await asyncio.sleep(0.01)
                broker.append(rec.Message(topic="Orders", body=b"stale", queue_id=1, born_timestamp_ms=1_000))
                async with Producer(cluster.namesrv_addr) as producer:
                    for i in range(30):
                        topic = "Orders" if i % 3 else "Notes"
                        await producer.send(OutgoingMessage(topic, f"body-{i}".encode(), tags=f"t{i % 2}",
                                                            keys=[f"k{i}"], properties={"seq": str(i)},
                                                            delay_level=3 if i == 7 else 0))
                        await asyncio.sleep(0.005)

            producing = asyncio.ensure_future(produce())
            result = await record_trace(consumer, out, duration_ms=10_000, clock_ms=lambda: int(time.time() * 1000),
                                        messages_max=30, source_detail="test")
            await producing
            return result

    result = asyncio.run(asyncio.wait_for(main(), 20))
    rows = list(iter_trace_rows(out))
    assert result.messages == 30 == len(rows) and result.before_start == 1  # the stale one
    assert dict(result.topics) == {"Orders": 20, "Notes": 10}
    assert sorted(int(m.properties["seq"]) for m in rows) == list(range(30))
    offsets = [m.send_offset_us for m in rows]
    assert offsets == sorted(offsets) and offsets[0] == 0 and offsets[-1] < 5_000_000
    by_seq = {int(m.properties["seq"]): m for m in rows}
    assert (by_seq[4].topic, by_seq[4].key, by_seq[4].tags, by_seq[4].body) == ("Orders", "k4", "t0", b"body-4")
    assert (by_seq[7].delay_level, by_seq[7].delay_ms) == (3, 10_000)
    assert set(by_seq[4].properties) == {"seq"}
    info = read_trace_info(out)
    assert info.source == "recorded" and info.messages == 30


def test_record_cli_reports_an_unreachable_name_server_in_one_line(tmp_path):
    from click.testing import CliRunner

    from mqbench.cli import cli

    result = CliRunner().invoke(cli, ["workloads", "record", "--namesrv", "127.0.0.1:1", "--topic", "T",
                                      "--duration", "1s", "--out", str(tmp_path / "r.parquet")])
    assert result.exit_code == 2 and "no name server answered" in result.stderr
    assert not list(tmp_path.iterdir())


def test_record_cli_against_a_live_cluster(tmp_path):
    import json
    import threading

    from click.testing import CliRunner

    from mqbench.cli import cli

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    state = {}

    async def serve():
        async with fixtures.Cluster() as cluster:
            await cluster.add_broker(topics=("Clicks",))
            state["addr"] = cluster.namesrv_addr
            ready.set()
            async with Producer(cluster.namesrv_addr) as producer:
                index = 0
                while not stop.is_set():
                    await producer.send(OutgoingMessage("Clicks", f"click-{index}".encode(), tags="view"))
                    index += 1
                    await asyncio.sleep(0.01)

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    try:
        assert ready.wait(10)
        out = tmp_path / "clicks.parquet"
        result = CliRunner().invoke(cli, ["workloads", "record", "--namesrv", state["addr"], "--topic", "Clicks",
                                          "--duration", "1500ms", "--out", str(out), "--json"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["schema"] == "mqbench.workloads-write/1" and doc["messages"] > 10
        assert doc["topics"] == {"Clicks": doc["messages"]}
        rows = list(iter_trace_rows(out))
        assert len(rows) == doc["messages"] and all(m.tags == "view" for m in rows)
        numbers = [int(m.body.split(b"-")[1]) for m in rows]
        assert numbers == sorted(numbers)  # one producer, so born order is send order
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def test_cancelling_a_capture_keeps_what_was_recorded(tmp_path):
    out = tmp_path / "cut.parquet"

    async def main():
        async with fixtures.Cluster() as cluster:
            await cluster.add_broker(topics=("Orders",), queue_nums=1)
            consumer = Consumer(cluster.namesrv_addr, "GID_cut", consume_from="first", suspend_timeout_ms=300)
            consumer.subscribe("Orders")
            async with Producer(cluster.namesrv_addr) as producer:
                for i in range(10):
                    await producer.send(OutgoingMessage("Orders", f"m{i}".encode()))
            enough = asyncio.Event()
            recording = asyncio.ensure_future(record_trace(
                consumer, out, duration_ms=60_000, clock_ms=lambda: int(time.time() * 1000), reorder_window_ms=0,
                progress=lambda done: enough.set() if done >= 10 else None))
            await asyncio.wait_for(enough.wait(), 10)
            recording.cancel()
            return await recording

    result = asyncio.run(asyncio.wait_for(main(), 20))
    assert result.interrupted and result.messages == 10
    assert [m.body for m in iter_trace_rows(out)] == [f"m{i}".encode() for i in range(10)]
