"""Drives PyPI's official RocketMQ 5 client (``rocketmq-python-client`` 5.1.2) against a broker's gRPC
endpoint, in its own venv and process (``clients.ensure_grpc_py_client``). One JSON line per event
on stdout; the test reads them.

    produce --endpoints E --topic T --count N --prefix P [--kind normal|delay|fifo] [--delay-s S]
            [--groups G] [--pause-ms MS] [--ak AK --sk SK]
        one line per send: {"key", "status": "OK"|"ERROR", "msg_id", "error"?}
    simple --endpoints E --topic T --group G --expect N --timeout-s S [--invisible-s S]
           [--expire K] [--change K]
        receives and acks every message; the first K messages it sees are left unacked once
        (--expire: they must come back after their invisible time) or get their invisible time
        changed to 2 s and are then acked with the new handle (--change); one line per delivery:
        {"key", "attempt", "action": "ack"|"skip"|"change", "topic", "body", "tag", "group", "msg_id", "handle"}
    push --endpoints E --topic T --group G --expect N --timeout-s S [--fail-first K]
        PushConsumer; listener returns FAILURE the first time for K keys (they come back), then
        SUCCESS; one line per delivery like simple's
Exit 0 when every expected key was acked in time, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time


def emit(**doc) -> None:
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def config(args):
    from rocketmq import ClientConfiguration, Credentials

    return ClientConfiguration(args.endpoints, Credentials(args.ak, args.sk), request_timeout=5)


def produce(args) -> int:
    from rocketmq import Message, Producer

    producer = Producer(config(args), (args.topic,))
    producer.startup()
    try:
        for i in range(args.count):
            key = f"{args.prefix}-{i}"
            msg = Message()
            msg.topic = args.topic
            msg.body = f"body-{key}".encode()
            msg.tag = f"tag{i % 3}"
            msg.keys = key
            msg.add_property("seq", str(i))
            if args.kind == "delay":
                msg.delivery_timestamp = int(time.time()) + args.delay_s
            elif args.kind == "fifo":
                msg.message_group = f"g{i % args.groups}"
            try:
                receipt = producer.send(msg)
                emit(key=key, status="OK", msg_id=receipt.message_id, sent_ms=int(time.time() * 1000))
            except Exception as exc:  # noqa: BLE001 - reported, the test judges
                emit(key=key, status="ERROR", error=f"{type(exc).__name__}: {exc}")
            if args.pause_ms:
                time.sleep(args.pause_ms / 1000)
    finally:
        producer.shutdown()
    return 0


def _doc(msg, action: str) -> dict:
    keys = sorted(msg.keys) if msg.keys else []
    return dict(key=keys[0] if keys else None, attempt=msg.delivery_attempt, action=action, topic=msg.topic,
                body=msg.body.decode(), tag=msg.tag, group=msg.message_group,
                seq=(msg.properties or {}).get("seq"), msg_id=msg.message_id, handle=msg.receipt_handle,
                at_ms=int(time.time() * 1000))


def ack(consumer, msg, key: str, invisible_s: float) -> bool:
    """Ack ``msg``; an ack whose answer was lost (the leader died: a transport error) may have
    been made durable, so it is tried again, as an application must, until it is answered (the
    broker answers a retry of a durable ack OK) or the handle is refused (it comes back), within
    its invisible time. False: not acked (the test counts it and expects it again)."""
    give_up = time.monotonic() + invisible_s - 1
    while True:
        try:
            consumer.ack(msg)
            return True
        except Exception as exc:  # noqa: BLE001 - it comes back; the test counts it
            emit(error=f"ack {key}: {type(exc).__name__}: {exc}")
            if "receipt handle" in str(exc) or time.monotonic() > give_up:
                return False
            time.sleep(0.3)


def simple(args) -> int:
    from rocketmq import FilterExpression, SimpleConsumer

    consumer = SimpleConsumer(config(args), args.group, {args.topic: FilterExpression()}, await_duration=3)
    consumer.startup()
    acked: set[str] = set()
    held: set[str] = set()
    changed: set[str] = set()
    deadline = time.monotonic() + args.timeout_s
    try:
        while len(acked) < args.expect and time.monotonic() < deadline:
            try:
                messages = consumer.receive(16, args.invisible_s)
            except Exception as exc:  # noqa: BLE001 - a failover: retry until the deadline
                emit(error=f"receive: {type(exc).__name__}: {exc}")
                time.sleep(0.5)
                continue
            for msg in messages or []:
                key = _doc(msg, "")["key"]
                if key in acked:
                    emit(**_doc(msg, "duplicate"))
                if args.expire and key not in held and len(held) < args.expire:
                    held.add(key)
                    emit(**_doc(msg, "skip"))
                    continue
                if args.change and key not in held and key not in changed and len(changed) < args.change:
                    changed.add(key)
                    try:
                        consumer.change_invisible_duration(msg, 2)
                        emit(**_doc(msg, "change"))
                        time.sleep(0.5)
                    except Exception as exc:  # noqa: BLE001
                        emit(error=f"change: {type(exc).__name__}: {exc}")
                        continue
                if not ack(consumer, msg, key, args.invisible_s):
                    continue
                acked.add(key)
                emit(**_doc(msg, "ack"))
    finally:
        consumer.shutdown()
    return 0 if len(acked) >= args.expect else 1


def push(args) -> int:
    from rocketmq import ConsumeResult, FilterExpression, MessageListener, PushConsumer

    acked: set[str] = set()
    failed: set[str] = set()
    lock = threading.Lock()

    class Listener(MessageListener):
        def consume(self, message):
            doc = _doc(message, "ack")
            with lock:
                if doc["key"] not in failed and len(failed) < args.fail_first:
                    failed.add(doc["key"])
                    emit(**{**doc, "action": "fail"})
                    return ConsumeResult.FAILURE
                if doc["key"] in acked:
                    doc["action"] = "duplicate"
                acked.add(doc["key"])
            emit(**doc)
            return ConsumeResult.SUCCESS

    consumer = PushConsumer(config(args), args.group, Listener(), {args.topic: FilterExpression()},
                            consumption_thread_count=4)
    consumer.startup()
    deadline = time.monotonic() + args.timeout_s
    try:
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= args.expect:
                    break
            time.sleep(0.2)
        time.sleep(1.0)       # the last acks leave
    finally:
        consumer.shutdown()
    return 0 if len(acked) >= args.expect else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("produce", "simple", "push"))
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", default="")
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--prefix", default="K")
    parser.add_argument("--kind", choices=("normal", "delay", "fifo"), default="normal")
    parser.add_argument("--delay-s", type=int, default=3)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--pause-ms", type=int, default=0)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=60)
    parser.add_argument("--invisible-s", type=int, default=5)
    parser.add_argument("--expire", type=int, default=0)
    parser.add_argument("--change", type=int, default=0)
    parser.add_argument("--fail-first", type=int, default=0)
    parser.add_argument("--ak", default="")
    parser.add_argument("--sk", default="")
    args = parser.parse_args()
    return {"produce": produce, "simple": simple, "push": push}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
