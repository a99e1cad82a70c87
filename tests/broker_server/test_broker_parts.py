"""The broker's smaller parts: name server registration (against the real name server), suspended
pulls, the client registry, the admin header parsers (fuzzed), and a fuzzed live broker: whatever
a peer sends, it answers or closes that connection, and keeps serving."""
from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.broker.namesrv.routes import TopicEntry, parse_topic_config_table
from mqbench.broker.namesrv.server import NameServer
from mqbench.broker.formats import codes
from mqbench.broker.remoting.client import connect
from mqbench.broker.formats.command import LENGTH, RemotingCommand
from mqbench.broker.formats.headers import parse_json_body
from mqbench.broker.server.clients import ClientRegistry
from mqbench.broker.server.handlers import Refused
from mqbench.broker.server.handlers_admin import format_attributes, parse_attributes, topic_config_from_request
from mqbench.broker.server.longpoll import PullWaiters
from mqbench.broker.server.registration import Registrar, Registration, build_request
from mqbench.errors import UserError
from test_broker_inprocess import InProcessCluster


def registration(addr: str, broker_id: int, term: int, topics=("Orders",)) -> Registration:
    return Registration(cluster_name="c", broker_name="broker-x", broker_addr=addr, broker_id=broker_id,
                        ha_server_addr="127.0.0.1:1", raft_term=term,
                        topics={t: TopicEntry(4, 4, 6) for t in topics})


def test_register_body_is_what_the_name_server_reads():
    cmd = build_request(registration("127.0.0.1:10911", 0, 3, topics=("A", "%RETRY%G")), 30_000)
    assert cmd.ext_fields["raftTerm"] == "3" and cmd.ext_fields["heartbeatTimeoutMillis"] == "30000"
    table = parse_topic_config_table(parse_json_body(cmd.body, "body"), body_crc32=int(cmd.ext_fields["bodyCrc32"]),
                                     raw=cmd.body)
    assert table == {"A": TopicEntry(4, 4, 6), "%RETRY%G": TopicEntry(4, 4, 6)}


def test_registrar_registers_follows_role_changes_and_unregisters():
    async def scenario():
        namesrv = NameServer()
        host, port = await namesrv.start("127.0.0.1", 0)
        current = {"reg": registration("127.0.0.1:10911", 1, 1)}
        registrar = Registrar(f"{host}:{port}", lambda: current["reg"], interval_ms=60_000, retry_ms=50)
        registrar.start()
        try:
            for _ in range(200):
                if registrar.registrations:
                    break
                await asyncio.sleep(0.01)
            assert namesrv.routes.brokers["broker-x"].broker_addrs == {1: "127.0.0.1:10911"}
            assert namesrv.routes.topic_route("Orders") is None   # only a leader's topics are routed
            current["reg"] = registration("127.0.0.1:10911", 0, 2)      # became leader in term 2
            registrar.trigger()                                          # long before the 60 s interval
            for _ in range(200):
                if registrar.registrations >= 2:
                    break
                await asyncio.sleep(0.01)
            assert namesrv.routes.brokers["broker-x"].broker_addrs == {0: "127.0.0.1:10911"}
            assert namesrv.routes.topic_route("Orders") is not None
            # a deposed leader's registration with an older term is refused, not applied
            stale = Registrar(f"{host}:{port}", lambda: registration("127.0.0.1:10921", 0, 1))
            assert await stale.register_once() is False and "stale" in stale.last_error
            await stale.close(unregister=False)
        finally:
            await registrar.close()
        assert "broker-x" not in namesrv.routes.brokers       # unregistered on close
        await namesrv.close()
        # a name server that is down: counted and logged, never raised
        down = Registrar(f"{host}:{port}", lambda: registration("127.0.0.1:10911", 0, 1), request_timeout_ms=500)
        assert await down.register_once() is False and down.failures == 1 and "unreachable" in down.last_error
        await down.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_a_trigger_is_done_once_the_name_server_routes_what_changed():
    # UPDATE_AND_CREATE_TOPIC answers after this (as RocketMQ registers before answering): a client that
    # looked the route up right after the answer found none under load (the admin wire test, in CI)
    async def scenario():
        namesrv = NameServer()
        host, port = await namesrv.start("127.0.0.1", 0)
        current = {"reg": registration("127.0.0.1:10911", 0, 1)}
        registrar = Registrar(f"{host}:{port}", lambda: current["reg"], interval_ms=60_000, retry_ms=50)
        registrar.start()
        try:
            assert await asyncio.wait_for(registrar.trigger(), 5) is True
            current["reg"] = registration("127.0.0.1:10911", 0, 1, topics=("Orders", "New"))
            done = registrar.trigger()
            assert not done.done() and namesrv.routes.topic_route("New") is None
            assert await asyncio.wait_for(done, 5) is True
            assert namesrv.routes.topic_route("New") is not None
        finally:
            await registrar.close()
        late = registrar.trigger()
        assert late.done() and late.result() is False      # closed: never left hanging
        await namesrv.close()
        down = Registrar(f"{host}:{port}", lambda: registration("127.0.0.1:10911", 0, 1), request_timeout_ms=300,
                         retry_ms=60_000)
        down.start()
        try:
            assert await asyncio.wait_for(down.trigger(), 5) is False     # the name server is gone
        finally:
            await down.close(unregister=False)

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_pull_waiters_notify_from_wakes_only_satisfied_queues():
    async def scenario():
        waiters = PullWaiters()
        grown = asyncio.ensure_future(waiters.wait("T", 0, 5, 5000))
        same = asyncio.ensure_future(waiters.wait("T", 1, 5, 300))
        await asyncio.sleep(0)
        assert len(waiters) == 2
        assert waiters.notify_from(lambda topic, queue_id: 6 if queue_id == 0 else 5) == 1
        assert await grown is True and await same is False
        assert len(waiters) == 0

    asyncio.run(scenario())


def test_pull_waiters_notify_from_checks_only_the_queues_that_grew():
    async def scenario():
        waiters = PullWaiters()
        woken = asyncio.ensure_future(waiters.wait("T", 0, 5, 5000))
        other = asyncio.ensure_future(waiters.wait("T", 1, 5, 300))
        await asyncio.sleep(0)
        asked = []

        def max_offset(topic, queue_id):
            asked.append((topic, queue_id))
            return 6
        assert waiters.notify_from(max_offset, {("T", 0), ("U", 3)}) == 1
        assert asked == [("T", 0)]          # only a grown queue someone waits on is looked up
        assert await woken is True and await other is False

    asyncio.run(scenario())


def test_dispatch_names_every_queue_it_wrote(tmp_path):
    from mqbench.broker.formats.batch import BatchItem
    from mqbench.broker.formats.record import Message
    from mqbench.broker.store.store import Store

    store = Store.open(tmp_path / "s", "v5", create=True)
    store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    store.queues.take_grown()
    store.append(Message(topic="T", queue_id=2, body=b"x"))
    store.append_batch("B", 1, [BatchItem(b"i", {}), BatchItem(b"j", {})], consolidate=True)
    assert store.queues.take_grown() == {("T", 2), ("B", 1)}
    assert store.queues.take_grown() == set()
    store.close()


def test_pull_waiter_wakes_times_out_and_cleans_up():
    """A notified wait returns True in the next loop turn; a timed-out one False; a timed-out or
    cancelled wait leaves nothing behind (its own timer since it no longer uses ``wait_for``)."""
    async def scenario():
        waiters = PullWaiters()
        woken = asyncio.ensure_future(waiters.wait("T", 0, 5, 5000))
        await asyncio.sleep(0)
        waiters.notify("T", 0, 6)
        await asyncio.sleep(0)
        assert woken.done() and woken.result() is True
        assert await waiters.wait("T", 0, 5, 20) is False
        cancelled = asyncio.ensure_future(waiters.wait("T", 1, 0, 5000))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert len(waiters) == 0 and not waiters._waiters

    asyncio.run(scenario())


def test_client_registry_reports_joins_and_leaves():
    registry = ClientRegistry(expiry_ms=1000)
    conn_a, conn_b = object(), object()

    def beat(client_id):
        return {"clientID": client_id, "consumerDataSet": [{"groupName": "G", "subscriptionDataSet": [
            {"topic": "T", "subString": "a || b"}]}], "producerDataSet": [{"groupName": "P"}]}

    assert registry.heartbeat(beat("a"), 0, conn_a) == ["G"]
    assert registry.heartbeat(beat("a"), 10, conn_a) == []
    assert registry.heartbeat(beat("b"), 10, conn_b) == ["G"]
    assert registry.consumer_ids("G", 20) == ["a", "b"]
    assert set(registry.consumer_channels("G")) == {"a", "b"}
    assert registry.consumers["G"].subscriptions == {"T": "a || b"}
    assert registry.unregister("a", "P", "G") == ["G"] and registry.unregister("a", None, "G") == []
    assert registry.connection_closed(conn_b) == ["G"]
    assert registry.consumer_ids("G", 30) == [] and registry.producers["P"] == {}
    registry.heartbeat(beat("c"), 0, conn_a)
    assert registry.consumer_ids("G", 5000) == [] and registry.consumer_channels("G") == {}   # expired


def test_attributes_round_trip_and_refusals():
    assert parse_attributes("+queue.type=BatchCQ, +a=1") == {"queue.type": "BatchCQ", "a": "1"}
    assert parse_attributes(format_attributes({"queue.type": "BatchCQ"})) == {"queue.type": "BatchCQ"}
    assert parse_attributes(None) == {} and parse_attributes("") == {}
    for bad in ("+x", "-queue.type", "=1", "+a="):
        with pytest.raises(Refused):
            parse_attributes(bad)


_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz.", min_size=1, max_size=8)
_values = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789", min_size=1, max_size=8)


@given(st.dictionaries(_keys, _values, max_size=4))
def test_attributes_format_parse_inverse(attributes):
    assert parse_attributes(format_attributes(attributes)) == attributes


@given(st.text(max_size=40))
def test_attributes_parser_only_refuses(text):
    try:
        assert isinstance(parse_attributes(text), dict)
    except Refused as exc:
        assert exc.code == codes.INVALID_PARAMETER and exc.remark


_field_values = st.one_of(st.text(max_size=12), st.integers(-5, 2000).map(str), st.sampled_from(["4", "6", "-1"]))


@given(st.fixed_dictionaries({}, optional={name: _field_values for name in (
    "topic", "readQueueNums", "writeQueueNums", "perm", "topicSysFlag", "topicFilterType", "order", "attributes")}))
def test_create_topic_header_parser_only_refuses(ext):
    try:
        cfg = topic_config_from_request(ext)
    except (Refused, UserError):
        return
    assert 1 <= cfg.read_queue_nums <= 1024 and 1 <= cfg.write_queue_nums <= 1024 and 0 <= cfg.perm <= 15
    assert cfg.topic_name == ext["topic"]


# --- a live broker under fuzzed requests -----------------------------------------------------------


class LiveBroker:
    """One in-process broker on its own event loop thread, so Hypothesis drives it synchronously."""

    def __init__(self, root):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzzed-broker", daemon=True)
        self.thread.start()
        self.cluster = InProcessCluster(root, 1, subnet=9)
        self.call(self.cluster.__aenter__())
        self.addr = self.call(self.cluster.leader()).instance.addr
        self.channel = self.call(connect(self.addr))

    def call(self, coro, timeout_s: float = 20):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def request(self, cmd: RemotingCommand) -> RemotingCommand:
        async def go():
            if self.channel.closed:
                self.channel = await connect(self.addr)
            return await self.channel.request(cmd, 5000)
        return self.call(go())

    def close(self) -> None:
        self.call(self.channel.aclose())
        self.call(self.cluster.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    broker = LiveBroker(tmp_path_factory.mktemp("fuzzed"))
    yield broker
    broker.close()


_served = [codes.SEND_MESSAGE, codes.SEND_MESSAGE_V2, codes.SEND_BATCH_MESSAGE, codes.PULL_MESSAGE,
           codes.QUERY_CONSUMER_OFFSET, codes.UPDATE_CONSUMER_OFFSET, codes.GET_MAX_OFFSET, codes.GET_MIN_OFFSET,
           codes.SEARCH_OFFSET_BY_TIMESTAMP, codes.HEART_BEAT, codes.UNREGISTER_CLIENT,
           codes.GET_CONSUMER_LIST_BY_GROUP, codes.UPDATE_AND_CREATE_TOPIC, codes.GET_BROKER_RUNTIME_INFO,
           codes.CONSUMER_SEND_MSG_BACK, codes.GET_EARLIEST_MSG_STORETIME, codes.VIEW_MESSAGE_BY_ID]
_names = ["topic", "b", "a", "queueId", "e", "consumerGroup", "queueOffset", "maxMsgNums", "sysFlag", "f",
          "commitOffset", "suspendTimeoutMillis", "readQueueNums", "writeQueueNums", "timestamp", "clientID",
          "producerGroup", "properties", "i", "attributes", "perm", "subscription", "offset", "group",
          "delayLevel", "maxReconsumeTimes"]
_ext_values = st.one_of(st.sampled_from(["Fuzz", "../x", "%RETRY%G", "G", "0", "1", "-1", "3", "99999999999999999999",
                                         "true", "", "+queue.type=BatchCQ"]), st.text(max_size=10),
                        st.integers(-3, 40).map(str))


@settings(max_examples=60, deadline=None)
@given(code=st.one_of(st.sampled_from(_served), st.integers(-5, 400)),
       ext=st.dictionaries(st.sampled_from(_names), _ext_values, max_size=8),
       body=st.one_of(st.binary(max_size=64), st.sampled_from([b"{}", b'{"clientID":"x"}', b"[]"])))
def test_fuzzed_requests_get_answers_and_the_broker_keeps_serving(live, code, ext, body):
    if code == codes.PULL_MESSAGE:
        ext["suspendTimeoutMillis"] = "0"      # no long waits in a fuzz loop
    response = live.request(RemotingCommand.request(code, ext, body))
    assert response.is_response and isinstance(response.code, int)
    if response.code not in (codes.SUCCESS, codes.PULL_NOT_FOUND):
        assert response.remark, (code, ext, response.code)
    assert live.request(RemotingCommand.request(codes.GET_BROKER_RUNTIME_INFO)).code == codes.SUCCESS


@settings(max_examples=30, deadline=None)
@given(frame=st.binary(min_size=1, max_size=80))
def test_fuzzed_raw_bytes_close_only_that_connection(live, frame):
    async def send_raw():
        host, port = live.addr.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(LENGTH.pack(len(frame)) + frame)
        await writer.drain()
        try:
            await asyncio.wait_for(reader.read(1 << 16), 0.3)   # an answer, a close, or nothing yet
        except asyncio.TimeoutError:
            pass
        writer.close()

    live.call(send_raw())
    assert live.request(RemotingCommand.request(codes.GET_BROKER_RUNTIME_INFO)).code == codes.SUCCESS
