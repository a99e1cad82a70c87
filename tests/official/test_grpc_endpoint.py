"""The gRPC endpoint's own rules, spoken to with the published stubs (no client library between):
the ACL on the 5.x ``authorization`` signature, UNIMPLEMENTED calls, the settings handshake, and the
pure parts (signature, FIFO queue choice, property mapping)."""
from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import pytest

from clients import ensure_grpc_broker
from mqbench.broker.grpc import convert
from mqbench.broker.grpc.endpoint import grpc_signature, parse_authorization
from mqbench.cluster import launcher

ACL_FILE = Path(__file__).resolve().parents[1] / "acl" / "plain_acl.yml"


def test_signature_is_the_clients_and_authorization_parses():
    # the Python client's Signature.sign: hexlify(hmac-sha1(sk, date_time))
    assert grpc_signature("12345678", "20261206T101010Z") == \
        __import__("hmac").new(b"12345678", b"20261206T101010Z", "sha1").hexdigest()
    value = "MQv2-HMAC-SHA1 Credential=RocketMQ, SignedHeaders=x-mq-date-time, Signature=ab12"
    assert parse_authorization(value) == ("RocketMQ", "x-mq-date-time", "ab12")
    assert parse_authorization("Basic abc") is None and parse_authorization("") is None


def test_fifo_queue_is_stable_and_spread():
    queues = {convert.fifo_queue(f"g{i}", 4) for i in range(40)}
    assert queues == {0, 1, 2, 3}
    assert all(convert.fifo_queue("order-7", 4) == convert.fifo_queue("order-7", 4) for _ in range(3))


def _stubs():
    ensure_grpc_broker()
    from mqbench.broker.grpc import stubs

    ns = stubs.load()
    assert ns is not None, stubs.MISSING
    return ns


def test_send_properties_map_and_refuse():
    ns = _stubs()
    msg = ns.pb.Message()
    msg.topic.name = "T"
    msg.body = b"x"
    sp = msg.system_properties
    sp.message_id, sp.tag, sp.message_group = "ID1", "tagA", "grp"
    sp.keys.extend(["k1", "k2"])
    msg.user_properties["seq"] = "3"
    props = convert.send_properties(ns, msg, now_ms=1_000_000)
    assert props == {"seq": "3", "UNIQ_KEY": "ID1", "TAGS": "tagA", "KEYS": "k1 k2", "__SHARDINGKEY": "grp"}
    msg.user_properties["UNIQ_KEY"] = "forged"
    with pytest.raises(convert.Invalid) as err:
        convert.send_properties(ns, msg, now_ms=1_000_000)
    assert err.value.code == "ILLEGAL_MESSAGE_PROPERTY_KEY"
    late = ns.pb.Message()
    late.system_properties.message_id = "ID2"
    late.system_properties.delivery_timestamp.seconds = 1_000 + 2 * 86_400
    with pytest.raises(convert.Invalid) as err:
        convert.send_properties(ns, late, now_ms=1_000_000)
    assert err.value.code == "ILLEGAL_DELIVERY_TIME"


def _metadata(ak: str, sk: str) -> list[tuple[str, str]]:
    now = datetime.datetime.now().strftime("%Y%m%dT%H%M%SZ")
    return [("x-mq-client-id", f"test@{uuid.uuid4().hex[:6]}"), ("x-mq-date-time", now),
            ("authorization", f"MQv2-HMAC-SHA1 Credential={ak}, SignedHeaders=x-mq-date-time, "
                              f"Signature={grpc_signature(sk, now)}")]


@pytest.mark.realproc
def test_acl_unimplemented_and_settings_over_the_wire(tmp_path):
    import asyncio

    ns = _stubs()
    state = launcher.up("single", tmp_path / "cluster", port_offset=4850, wait_s=60, acl_file=ACL_FILE,
                        extra_args=["--fifo-groups", "FIFO_*"])
    addr = launcher.cluster_layout(state).instances[0].grpc_addr
    from rocketmq.grpc_protocol.service_pb2_grpc import MessagingServiceStub

    def message(topic: str):
        msg = ns.pb.Message()
        msg.topic.name = topic
        msg.body = b"hello"
        msg.system_properties.message_id = uuid.uuid4().hex.upper()
        msg.system_properties.message_type = ns.pb.MessageType.NORMAL
        return ns.svc.SendMessageRequest(messages=[msg])

    async def scenario():
        async with ns.aio.insecure_channel(addr) as channel:
            stub = MessagingServiceStub(channel)
            ok = await stub.SendMessage(message("topicB"), metadata=_metadata("RocketMQ", "12345678"), timeout=10)
            assert ok.status.code == ns.pb.Code.OK and len(ok.entries) == 1, ok
            bad = await stub.SendMessage(message("topicB"), metadata=_metadata("RocketMQ", "wrong-secret"), timeout=10)
            assert bad.status.code == ns.pb.Code.UNAUTHORIZED and "Check signature failed" in bad.status.message
            denied = await stub.SendMessage(message("topicC"), metadata=_metadata("RocketMQ", "12345678"), timeout=10)
            assert denied.status.code == ns.pb.Code.FORBIDDEN, denied
            with pytest.raises(ns.aio.AioRpcError) as err:
                async for _ in stub.PullMessage(ns.svc.PullMessageRequest(),
                                                metadata=_metadata("RocketMQ", "12345678")):
                    pass
            assert err.value.code() == ns.grpc.StatusCode.UNIMPLEMENTED and "QueryRoute" in err.value.details()
            settings = ns.pb.Settings(client_type=ns.pb.ClientType.PUSH_CONSUMER)
            settings.subscription.group.name = "FIFO_orders"
            call = stub.Telemetry(metadata=_metadata("rocketmq2", "12345678"))
            await call.write(ns.svc.TelemetryCommand(settings=settings))
            reply = await asyncio.wait_for(call.read(), 10)
            call.cancel()
            assert reply.status.code == ns.pb.Code.OK and reply.settings.subscription.fifo
            assert reply.settings.subscription.long_polling_timeout.seconds == 20

    try:
        asyncio.run(scenario())
    finally:
        launcher.down(state, timeout_s=5)


def test_without_the_extra_the_broker_says_so_and_serves_no_grpc_port(monkeypatch, caplog):
    import asyncio
    from types import SimpleNamespace

    from mqbench.broker import grpc as grpc_endpoint
    from mqbench.broker.grpc import stubs

    monkeypatch.setattr(stubs, "_loaded", None)
    monkeypatch.setattr(stubs, "MISSING", "ModuleNotFoundError: No module named 'grpc'")
    monkeypatch.setattr(stubs, "load", lambda: None)
    broker = SimpleNamespace(instance=SimpleNamespace(name="broker-a/n0"), stop_hooks=[])
    with caplog.at_level("WARNING", logger="mqbench.broker.grpc"):
        assert asyncio.run(grpc_endpoint.attach_to_broker(broker)) is None
    assert broker.stop_hooks == []
    assert "serves no gRPC port: the grpc extra is not installed" in caplog.text
    assert "pip install 'mqbench[grpc]'" in caplog.text
