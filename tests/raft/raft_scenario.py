"""A small driver for data-driven Raft transcripts (like etcd-io/raft's ``testdata/*.txt``).

A file is a list of blocks::

    command arg key=value ...
    ----
    expected output lines

separated by blank lines; ``#`` lines are comments. Commands:

* ``add-nodes N [prevote=on] [checkquorum=on] [durability=fsync] [preferred=ID] [inflight=K]
  [heartbeat=TICKS]``
* ``campaign ID``, ``propose ID DATA``, ``transfer-leader FROM TO``
* ``tick ID [COUNT]`` (tick one node), ``tick-all [COUNT]``
* ``deliver [max=N]``: deliver queued messages (and what they cause) until none is left,
  printing each; messages across a partition or to a crashed node print as dropped
* ``partition 1 2 | 3`` (symmetric), ``cut FROM TO`` (one way), ``heal``
* ``crash ID`` (keeps what was persisted), ``restart ID``
* ``log ID``, ``status``
* ``forge app FROM TO term=T last=I/T entry=I/T/DATA commit=C`` and ``forge app-resp FROM TO
  term=T index=I``: queue a message nobody's node sent (an attacker on the Raft port); a node
  whose ``step`` raises InvariantViolation prints ``node N stopped: ...`` and is crashed

Every node's Ready is processed at once: persisted (fsync), its messages queued, its committed
entries applied, then advanced. Set ``MQBENCH_REWRITE=1`` to rewrite the expected output; commit
a rewrite only once you understand its diff.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

from mqbench.broker.raft.config import Durability, RaftConfig
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.storage import MemoryStorage
from mqbench.broker.raft.types import Entry, Message, MsgType, RaftError
from mqbench.errors import InvariantViolation

REWRITE = os.environ.get("MQBENCH_REWRITE") == "1"


class Harness:
    """N in-memory nodes, a FIFO network with partitions, and per-node persisted storage."""

    def __init__(self):
        self.nodes: dict[int, RaftNode | None] = {}
        self.storage: dict[int, MemoryStorage] = {}
        self.configs: dict[int, RaftConfig] = {}
        self.queue: list = []
        self.blocked: set[tuple[int, int]] = set()
        self.applied: dict[int, list] = {}
        self.out: list[str] = []

    # -- plumbing -----------------------------------------------------------------------------
    def start(self, node_id: int) -> None:
        self.nodes[node_id] = RaftNode(self.configs[node_id], self.storage[node_id], random.Random(node_id))
        self.applied[node_id] = []

    def process(self, node_id: int) -> None:
        node = self.nodes[node_id]
        while node is not None and node.has_ready():
            rd = node.ready()
            store = self.storage[node_id]
            store.append(rd.entries)
            if rd.hard_state is not None:
                store.set_hard_state(rd.hard_state)
            self.queue.extend(rd.messages)
            self.applied[node_id].extend(rd.committed_entries)
            node.advance(rd)

    def process_all(self) -> None:
        for node_id in sorted(self.nodes):
            self.process(node_id)

    def deliver(self, limit: int = 10_000) -> None:
        self.process_all()
        delivered = 0
        while self.queue and delivered < limit:
            m = self.queue.pop(0)
            delivered += 1
            target = self.nodes.get(m.dst)
            if (m.src, m.dst) in self.blocked or target is None:
                self.out.append(f"dropped {m.describe()}")
                continue
            self.out.append(m.describe())
            before = (target.role, target.term)
            try:
                target.step(m)
            except InvariantViolation as exc:
                self.out.append(f"  node {m.dst} stopped: {exc}")
                self.nodes[m.dst] = None
                continue
            self.note_change(m.dst, before)
            self.process(m.dst)

    def note_change(self, node_id: int, before) -> None:
        node = self.nodes[node_id]
        if (node.role, node.term) != before:
            self.out.append(f"  node {node_id} is {node.role.name.lower()} at term {node.term}")

    # -- commands -----------------------------------------------------------------------------
    def cmd_add_nodes(self, count: str, **opts) -> None:
        ids = tuple(range(1, int(count) + 1))
        for node_id in ids:
            self.configs[node_id] = RaftConfig(
                node_id=node_id, peers=ids, election_ticks=10, heartbeat_ticks=int(opts.get("heartbeat", 1)),
                pre_vote=opts.get("prevote", "on") == "on", check_quorum=opts.get("checkquorum", "on") == "on",
                durability=Durability(opts.get("durability", "fsync")), preferred_leader=int(opts.get("preferred", 0)),
                max_inflight_msgs=int(opts.get("inflight", 64)))
            self.storage[node_id] = MemoryStorage()
            self.start(node_id)
        self.out.append(f"nodes {' '.join(map(str, ids))}")

    def cmd_campaign(self, node_id: str) -> None:
        node = self.nodes[int(node_id)]
        before = (node.role, node.term)
        node.campaign()
        self.note_change(int(node_id), before)
        self.process(int(node_id))

    def cmd_propose(self, node_id: str, data: str) -> None:
        try:
            index = self.nodes[int(node_id)].propose(data.encode())
        except RaftError as exc:
            self.out.append(f"refused: {exc}")
            return
        self.out.append(f"index {index}")
        self.process(int(node_id))

    def cmd_transfer_leader(self, src: str, dst: str) -> None:
        try:
            self.nodes[int(src)].transfer_leadership(int(dst))
        except RaftError as exc:
            self.out.append(f"refused: {exc}")
        self.process(int(src))

    def cmd_tick(self, node_id: str, count: str = "1") -> None:
        node = self.nodes[int(node_id)]
        for _ in range(int(count)):
            before = (node.role, node.term)
            node.tick()
            self.note_change(int(node_id), before)
            self.process(int(node_id))

    def cmd_tick_all(self, count: str = "1") -> None:
        for _ in range(int(count)):
            for node_id in sorted(self.nodes):
                if self.nodes[node_id] is not None:
                    self.cmd_tick(str(node_id))

    def cmd_deliver(self, max: str = "10000") -> None:   # noqa: A002 - the command's key name
        self.deliver(int(max))

    def cmd_forge(self, kind: str, src: str, dst: str, term: str = "1", last: str = "0/0", entry: str = "",
                  commit: str = "0", index: str = "0") -> None:
        if kind == "app-resp":
            self.queue.append(Message(MsgType.APP_RESP, int(src), int(dst), int(term), index=int(index)))
            return
        last_index, last_term = map(int, last.split("/"))
        entries = ()
        if entry:
            e_index, e_term, data = entry.split("/", 2)
            entries = (Entry(int(e_index), int(e_term), data.encode()),)
        self.queue.append(Message(MsgType.APP, int(src), int(dst), int(term), last_term, last_index, entries,
                                  int(commit)))

    def cmd_partition(self, *args: str) -> None:
        text = " ".join(args)
        left, right = (side.split() for side in text.split("|"))
        for a in map(int, left):
            for b in map(int, right):
                self.blocked |= {(a, b), (b, a)}
        self.out.append(f"partitioned {sorted(map(int, left))} from {sorted(map(int, right))}")

    def cmd_cut(self, src: str, dst: str) -> None:
        self.blocked.add((int(src), int(dst)))

    def cmd_heal(self) -> None:
        self.blocked.clear()

    def cmd_crash(self, node_id: str) -> None:
        self.nodes[int(node_id)] = None

    def cmd_restart(self, node_id: str) -> None:
        self.start(int(node_id))
        node = self.nodes[int(node_id)]
        self.out.append(f"node {node_id} restarted: term={node.term} vote={node.vote} "
                        f"commit={node.log.committed} last={node.log.last_index()}")

    def cmd_log(self, node_id: str) -> None:
        node = self.nodes[int(node_id)]
        log = node.log
        for entry in log.entries(1, log.last_index() + 1):
            kind = "noop" if entry.kind else entry.data.decode(errors="replace")
            mark = "*" if entry.index <= log.committed else " "
            self.out.append(f"{mark}{entry.index}/{entry.term} {kind}")
        if log.last_index() == 0:
            self.out.append("(empty)")

    def cmd_status(self) -> None:
        for node_id in sorted(self.nodes):
            node = self.nodes[node_id]
            if node is None:
                self.out.append(f"{node_id}: down")
                continue
            self.out.append(f"{node_id}: {node.role.name.lower()} term={node.term} lead={node.lead} "
                            f"commit={node.log.committed} last={node.log.last_index()}")

    def run(self, line: str) -> str:
        words = line.split()
        args = [w for w in words[1:] if "=" not in w]
        opts = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        self.out = []
        getattr(self, "cmd_" + words[0].replace("-", "_"))(*args, **opts)
        return "\n".join(self.out)


def parse_blocks(text: str) -> list[tuple[list[str], str, str]]:
    """(leading comment lines, command, expected output) per block."""
    blocks = []
    lines = text.splitlines()
    pos = 0
    while pos < len(lines):
        comments = []
        while pos < len(lines) and (not lines[pos].strip() or lines[pos].startswith("#")):
            comments.append(lines[pos])
            pos += 1
        if pos >= len(lines):
            break
        command = lines[pos]
        pos += 1
        if pos >= len(lines) or lines[pos] != "----":
            raise ValueError(f"line {pos}: expected ---- after command {command!r}")
        pos += 1
        out = []
        while pos < len(lines) and lines[pos].strip():
            out.append(lines[pos])
            pos += 1
        blocks.append((comments, command, "\n".join(out)))
    return blocks


def run_file(path: Path) -> tuple[str, str]:
    """Run a transcript; returns (expected text, actual text) in the file's layout."""
    blocks = parse_blocks(path.read_text())
    harness = Harness()
    expected, actual = [], []
    for comments, command, want in blocks:
        got = harness.run(command)
        for text, out in ((want, expected), (got, actual)):
            out.extend(comments)
            out.extend([command, "----"])
            if text:
                out.append(text)
    expected_text = "\n".join(expected) + "\n"
    actual_text = "\n".join(actual) + "\n"
    if REWRITE and actual_text != expected_text:
        path.write_text(actual_text)
    return expected_text, actual_text
