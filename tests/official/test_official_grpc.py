"""The official RocketMQ 5 clients against the broker's gRPC endpoint, as separate OS processes.

* PyPI ``rocketmq-python-client`` 5.1.2 (its own venv) and npm ``rocketmq-client-nodejs`` 1.0.8,
  installed once under ``.cache/official-clients`` by ``clients.py`` (the Node one skips, with the
  reason, only where node/npm are missing).
* Producer: normal, delayed (``delivery_timestamp``) and FIFO (``message_group``) messages.
* SimpleConsumer: receive and ack; one message is left unacked and must come back after its
  invisible time (delivery attempt 2); one gets its invisible duration changed and is acked with
  the new handle (it must not come back).
* PushConsumer: concurrent (two messages fail once and come back through ChangeInvisibleDuration)
  and FIFO (a group the brokers run with ``--fifo-groups``: order kept per message group).
* On ``raft3`` the leader is SIGKILLed while a producer sends and a SimpleConsumer consumes: every
  acknowledged send is consumed, none is lost, and nothing acked comes back (a send retried
  across the kill may store a message twice: a second copy, told apart by its receipt handle).

Each test runs against ``single`` and ``raft3``, with a few messages per scenario; CI runs each
scenario with each client and each layout once (the other pairings and the long variant are
marked ``slow``: the whole file takes ~6 min on this 2-core machine, the CI slice about half).
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import uuid
from collections import defaultdict

import pytest

from clients import ensure_grpc_broker, ensure_grpc_node_client, ensure_grpc_py_client
from mqbench.cluster import launcher

CLIENTS = {"py": ensure_grpc_py_client, "node": ensure_grpc_node_client}
OFFSETS = {("py", "single"): 4810, ("py", "raft3"): 4820, ("node", "single"): 4830, ("node", "raft3"): 4840}
FIFO_PATTERN = "FIFO_*"


@pytest.fixture
def grpc_cluster(tmp_path, request):
    client, layout = request.param
    ensure_grpc_broker()
    argv = CLIENTS[client]()
    state = launcher.up(layout, tmp_path / "cluster", port_offset=OFFSETS[(client, layout)], wait_s=60,
                        extra_args=["--fifo-groups", FIFO_PATTERN])
    try:
        yield argv, state
    finally:
        launcher.down(state, timeout_s=5)


def endpoints(state, argv, avoid: str | None = None) -> str:
    """The access point: every replica for Python's client; one replica (not ``avoid``) for Node's,
    which cannot dial a list (it joins the addresses without the ``ipv4:`` scheme)."""
    instances = launcher.cluster_layout(state).instances
    if argv[-1].endswith(".js"):
        instances = [i for i in instances if i.name != avoid][:1]
    return ";".join(i.grpc_addr for i in instances)


class Driver:
    """One run of a driver script; its JSON lines as they come."""

    def __init__(self, argv: list[str], home) -> None:
        env = {**os.environ, "HOME": str(home)}   # the clients write their logs under $HOME/logs
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.docs: list[dict] = []
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.docs.append(json.loads(line))

    def wait(self, timeout_s: float) -> int:
        try:
            rc = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = -9
        self._reader.join(5)
        self.stderr = self.proc.stderr.read()
        return rc

    def done(self, timeout_s: float) -> list[dict]:
        rc = self.wait(timeout_s)
        assert rc == 0, f"driver {self.proc.args[1:3]} exit {rc}; last lines {self.docs[-5:]}; " \
                        f"stderr: {self.stderr[-2000:]}"
        return self.docs


def run(argv, mode: str, home, *flags: str) -> Driver:
    return Driver([*argv, mode, *flags], home)


def sent_ok(docs: list[dict]) -> dict[str, dict]:
    errors = [d for d in docs if d.get("status") == "ERROR"]
    assert not errors, f"sends failed after the client's retries: {errors[:3]}"
    return {d["key"]: d for d in docs if d.get("status") == "OK"}


def stored_copy(d: dict) -> tuple | None:
    """Which stored message a delivery was: (topic type, broker, queue id, queue offset) from its
    receipt handle (``extraInfo``; a retried message's is in the retry topic)."""
    parts = (d.get("handle") or "").split(" ")
    return (parts[4], parts[5], parts[6], parts[7]) if len(parts) >= 8 else None


def check_consumed(deliveries: list[dict], sent: dict[str, dict]) -> dict[str, dict]:
    """Every sent key acked with its body; nothing delivered again once acked; returns key -> ack.

    A key may be stored twice: a send whose first try was committed but whose answer the leader's
    SIGKILL lost is sent again by the client (RocketMQ sends at least once; both copies carry
    the message id). A second copy is another message, not a redelivery: it is allowed when it is
    a first delivery (attempt 1) of a stored message other than every one delivered before, with
    the same message id. Anything else after an ack (the same stored message, or any later
    attempt) breaks "a redelivery only for messages not acked"."""
    acks: dict[str, dict] = {}
    seen: dict[str, set] = defaultdict(set)      # key -> stored copies delivered
    acked: set = set()                           # stored copies acked
    judged: set = set()                          # deliveries (handles) already looked at
    for d in deliveries:
        key, copy = d.get("key"), stored_copy(d)
        if copy is None:                         # no handle: only the key can tell
            if d.get("action") == "duplicate" or (d.get("action") in ("ack", "skip", "change", "fail")
                                                  and key in acks):
                raise AssertionError(f"{key} delivered again after it was acked: {d}")
        elif d["handle"] not in judged:
            judged.add(d["handle"])
            first = acks.get(key, {})
            resent = copy not in seen[key] and d.get("attempt") == 1 and d.get("msg_id") is not None \
                and d.get("msg_id") == first.get("msg_id")
            if copy in acked or (key in acks and copy not in seen[key] and not resent):
                raise AssertionError(f"{key} delivered again after it was acked: {d}; acked as {first}")
            seen[key].add(copy)
        if d.get("action") in ("ack", "duplicate"):       # a push driver's "duplicate" was acked too
            acks.setdefault(key, d)
            acked.add(copy)
    missing = sorted(set(sent) - set(acks))
    seen = [d for d in deliveries if d.get("key") in missing or any(k in str(d.get("error", "")) for k in missing)]
    assert not missing, f"{len(missing)} acknowledged sends never consumed: {missing[:10]}; their deliveries " \
                        f"and errors: {seen[:10]}; last errors: {[d for d in deliveries if 'error' in d][-5:]}"
    for key, d in acks.items():
        assert d["body"] == f"body-{key}", d
        if key in sent:
            i = int(key.rsplit("-", 1)[1])
            assert d["tag"] == f"tag{i % 3}" and d["seq"] == str(i), d
    return acks


IDS = ["py-single", "py-raft3", "node-single", "node-raft3"]
SLOW = pytest.mark.slow


def params(*in_ci: str) -> list:
    """Every client x layout; the ones not named in ``in_ci`` are ``slow`` (CI runs a bounded slice,
    each client and each layout at least once per scenario)."""
    pairs = [("py", "single"), ("py", "raft3"), ("node", "single"), ("node", "raft3")]
    return [pytest.param(p, id=i, marks=() if i in in_ci else SLOW) for p, i in zip(pairs, IDS)]


@pytest.mark.realproc
@pytest.mark.parametrize("grpc_cluster", params("py-single", "node-raft3"), indirect=True)
def test_producer_and_simple_consumer(grpc_cluster, tmp_path):
    argv, state = grpc_cluster
    ep = endpoints(state, argv)
    topic = f"Grpc{uuid.uuid4().hex[:8]}"
    common = ("--endpoints", ep, "--topic", topic)
    sent = sent_ok(run(argv, "produce", tmp_path, *common, "--count", "6", "--prefix", "N").done(90))
    sent |= sent_ok(run(argv, "produce", tmp_path, *common, "--count", "6", "--prefix", "F", "--kind", "fifo",
                        "--groups", "2").done(60))
    delayed = sent_ok(run(argv, "produce", tmp_path, *common, "--count", "2", "--prefix", "D", "--kind", "delay",
                          "--delay-s", "3").done(60))
    sent |= delayed
    consumer = run(argv, "simple", tmp_path, *common, "--group", f"G{uuid.uuid4().hex[:6]}", "--expect",
                   str(len(sent)), "--timeout-s", "60", "--invisible-s", "3", "--expire", "1", "--change", "1")
    deliveries = consumer.done(120)
    acks = check_consumed(deliveries, sent)
    skipped = [d for d in deliveries if d.get("action") == "skip"]
    changed = [d for d in deliveries if d.get("action") == "change"]
    assert len(skipped) == 1 and len(changed) == 1, deliveries
    back = acks[skipped[0]["key"]]
    assert back["attempt"] >= 2 and back["at_ms"] >= skipped[0]["at_ms"] + 2500, (skipped[0], back)
    assert acks[changed[0]["key"]]["attempt"] == 1       # acked with the changed handle: never came back
    for key, doc in delayed.items():   # the Python client sends whole seconds: up to 1 s before sent + delay
        assert acks[key]["at_ms"] >= doc["sent_ms"] + 2000, (doc, acks[key])


@pytest.mark.realproc
@pytest.mark.parametrize("grpc_cluster", params("py-raft3", "node-single"), indirect=True)
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_push_consumer_concurrent_and_fifo(grpc_cluster, tmp_path):
    argv, state = grpc_cluster
    ep = endpoints(state, argv)
    plain, fifo = f"GrpcP{uuid.uuid4().hex[:8]}", f"GrpcF{uuid.uuid4().hex[:8]}"
    sent = sent_ok(run(argv, "produce", tmp_path, "--endpoints", ep, "--topic", plain, "--count", "8").done(90))
    deliveries = run(argv, "push", tmp_path, "--endpoints", ep, "--topic", plain, "--group",
                     f"G{uuid.uuid4().hex[:6]}", "--expect", "8", "--timeout-s", "60", "--fail-first", "2").done(120)
    acks = check_consumed([d for d in deliveries if d.get("action") != "fail"], sent)
    failed = [d["key"] for d in deliveries if d.get("action") == "fail"]
    assert len(failed) == 2 and all(acks[k]["attempt"] >= 2 for k in failed), deliveries

    sent = sent_ok(run(argv, "produce", tmp_path, "--endpoints", ep, "--topic", fifo, "--count", "12", "--kind",
                       "fifo", "--groups", "3").done(60))
    deliveries = run(argv, "push", tmp_path, "--endpoints", ep, "--topic", fifo, "--group",
                     f"FIFO_{uuid.uuid4().hex[:6]}", "--expect", "12", "--timeout-s", "60").done(120)
    acks = check_consumed(deliveries, sent)
    by_group = defaultdict(list)
    for d in deliveries:
        if d.get("action") == "ack":
            by_group[d["group"]].append(int(d["seq"]))
    assert sorted(by_group) == ["g0", "g1", "g2"], by_group
    for group, seqs in by_group.items():
        assert seqs == sorted(seqs), f"message group {group} consumed out of order: {seqs}"
    assert len(acks) == 12


def _across_leader_kill(argv, state, tmp_path, count: int) -> None:
    victim = launcher.leader(state, "broker-a")
    ep = endpoints(state, argv, avoid=victim.name)
    topic = f"GrpcK{uuid.uuid4().hex[:8]}"
    common = ("--endpoints", ep, "--topic", topic)
    consumer = run(argv, "simple", tmp_path, *common, "--group", f"G{uuid.uuid4().hex[:6]}", "--expect",
                   str(count), "--timeout-s", "150", "--invisible-s", "5")
    producer = run(argv, "produce", tmp_path, *common, "--count", str(count), "--pause-ms", "50")
    deadline = time.monotonic() + 60
    while len([d for d in producer.docs if d.get("status")]) < count // 3:
        assert producer.proc.poll() is None, f"producer ended early: {producer.docs[-3:]}"
        assert time.monotonic() < deadline, "the producer got no third of its sends acknowledged in 60 s"
        time.sleep(0.05)
    assert launcher.leader(state, "broker-a").name == victim.name
    assert launcher.kill(state, victim.name) == [victim.name]       # SIGKILL
    time.sleep(1.0)
    launcher.start(state, victim.name)
    sent = sent_ok(producer.done(150))
    assert len(sent) == count
    rc = consumer.wait(200)
    check_consumed(consumer.docs, sent)      # names what is missing or came back
    assert rc == 0, f"consumer exit {rc}: {consumer.stderr[-2000:]}"


# Issue 19: the K-10 "acked, then delivered again as attempt 1" seen here (xfail until then) was
# K-10 stored twice: its send was in flight at the SIGKILL, its first try committed, its answer
# lost, and the client sent it again (the kept stores show two queue offsets, one message id).
# check_consumed now tells that from a redelivery. A real ack-path race found on the way (an ack
# record committed before its checkpoint) is fixed and reproduced in tests/pop/test_pop_ack_order.py.


@pytest.mark.realproc
@pytest.mark.parametrize("grpc_cluster", [pytest.param(("py", "raft3"), marks=SLOW),
                                          pytest.param(("node", "raft3"))],
                         indirect=True, ids=["py", "node"])
def test_clients_ride_out_a_leader_kill(grpc_cluster, tmp_path):
    argv, state = grpc_cluster
    _across_leader_kill(argv, state, tmp_path, 30)


@pytest.mark.slow
@pytest.mark.realproc
@pytest.mark.parametrize("grpc_cluster", [("py", "raft3"), ("node", "raft3")], indirect=True, ids=["py", "node"])
def test_clients_ride_out_a_leader_kill_long(grpc_cluster, tmp_path):
    argv, state = grpc_cluster
    _across_leader_kill(argv, state, tmp_path, 400)
