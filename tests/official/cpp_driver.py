"""Drives the official RocketMQ C++ client (PyPI ``rocketmq`` 0.4.4 bundles librocketmq.so).

Runs inside its own virtual environment (see ``clients.py``), as a separate process, and reports
one JSON object per line on stdout so the test can compare what was sent with what arrived.

    python cpp_driver.py produce --namesrv ADDR --topic T --count N --prefix P [--oneway] [--delay-level L]
        [--attempts A] [--interval-ms I] [--timeout-ms T]
    python cpp_driver.py consume --namesrv ADDR --topic T --group G --expect N --timeout-s S

Both take ``--access-key AK --secret-key SK``: the client's session credentials (RocketMQ ACL),
set with ``set_session_credentials(AK, SK, "ALIYUN")``.

``produce`` sends messages with keys ``P-<i>``, tags ``tag<i % 3>``, a property ``seq=<i>`` and a body
``body-P-<i>``; prints ``{"key", "status", "msg_id", "offset"}`` per send (``send_sync``) or
``{"key", "status": "ONEWAY"}``. A failed ``send_sync`` is tried again (``--attempts`` in all,
0.5 s apart), so a test can drive it across a failover; ``--interval-ms`` spaces the sends. ``consume`` prints ``{"key", "tags", "body", "seq", "queue_id",
"queue_offset", "msg_id"}`` per message received until ``expect`` distinct keys arrived or the
timeout passed, then ``{"done": true, "distinct": n}``.
"""
import argparse
import json
import sys
import threading
import time

# rocketmq 0.4.4 exports no ConsumeStatus: a PushConsumer callback that returns acknowledges the
# message (CONSUME_SUCCESS), one that raises asks for redelivery (RECONSUME_LATER).
from rocketmq.client import Message, Producer, PushConsumer


def produce(args) -> int:
    producer = Producer(f"PID_{args.prefix}", timeout=args.timeout_ms)
    producer.set_namesrv_addr(args.namesrv)
    if args.access_key:
        producer.set_session_credentials(args.access_key, args.secret_key, "ALIYUN")
    producer.start()
    failures = 0
    try:
        for i in range(args.count):
            key = f"{args.prefix}-{i}"
            msg = Message(args.topic)
            msg.set_keys(key)
            msg.set_tags(f"tag{i % 3}")
            msg.set_property("seq", str(i))
            msg.set_body(f"body-{key}")
            if args.interval_ms and i:
                time.sleep(args.interval_ms / 1000)
            if args.delay_level:
                msg.set_delay_time_level(args.delay_level)
            if args.oneway:
                producer.send_oneway(msg)
                print(json.dumps({"key": key, "status": "ONEWAY"}), flush=True)
                continue
            for attempt in range(args.attempts):
                try:
                    result = producer.send_sync(msg)
                except Exception as exc:  # the C++ client raises on timeouts and broker errors
                    if attempt + 1 == args.attempts:
                        print(json.dumps({"key": key, "status": "ERROR", "error": str(exc)}), flush=True)
                        failures += 1
                    else:
                        time.sleep(0.5)
                    continue
                print(json.dumps({"key": key, "status": result.status.name, "msg_id": result.msg_id,
                                  "offset": result.offset}), flush=True)
                break
    finally:
        producer.shutdown()
    return 1 if failures else 0


def consume(args) -> int:
    seen = set()
    lock = threading.Lock()
    done = threading.Event()

    def on_message(msg):
        key = msg.keys.decode() if isinstance(msg.keys, bytes) else msg.keys
        body = msg.body.decode() if isinstance(msg.body, bytes) else msg.body
        tags = msg.tags.decode() if isinstance(msg.tags, bytes) else msg.tags
        seq = msg.get_property("seq")
        seq = seq.decode() if isinstance(seq, bytes) else seq
        with lock:
            seen.add(key)
            print(json.dumps({"key": key, "tags": tags, "body": body, "seq": seq, "queue_id": msg.queue_id,
                              "queue_offset": msg.queue_offset, "msg_id": msg.id}), flush=True)
            if len(seen) >= args.expect:
                done.set()

    consumer = PushConsumer(args.group)
    consumer.set_namesrv_addr(args.namesrv)
    if args.access_key:
        consumer.set_session_credentials(args.access_key, args.secret_key, "ALIYUN")
    consumer.subscribe(args.topic, on_message)
    consumer.start()
    try:
        done.wait(args.timeout_s)
    finally:
        consumer.shutdown()
    print(json.dumps({"done": True, "distinct": len(seen)}), flush=True)
    return 0 if len(seen) >= args.expect else 1


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("produce")
    p.add_argument("--namesrv", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--oneway", action="store_true")
    p.add_argument("--delay-level", type=int, default=0)
    p.add_argument("--attempts", type=int, default=3)
    p.add_argument("--timeout-ms", type=int, default=3000)
    p.add_argument("--interval-ms", type=int, default=0)
    c = sub.add_parser("consume")
    c.add_argument("--namesrv", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--expect", type=int, required=True)
    c.add_argument("--timeout-s", type=float, default=30)
    for sub_parser in (p, c):
        sub_parser.add_argument("--access-key", default="")
        sub_parser.add_argument("--secret-key", default="")
    args = parser.parse_args()
    return produce(args) if args.mode == "produce" else consume(args)


if __name__ == "__main__":
    sys.exit(main())
