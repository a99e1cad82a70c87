"""One seeded simulation run: a cluster of ``RaftNode`` cores on a fake clock, network and disks.

A run has three phases, all driven by one discrete-event queue (``events.EventLoop``):

1. safety (``SimParams.safety_ms``): client proposals to whoever is leader, and faults drawn from
   rates chosen per seed (``faults``: message loss, duplication, delay/reordering, symmetric and
   one-way partitions, crashes of a minority at a time with restarts, leader crashes, leadership
   transfers, and in the fsynced mode power loss of the whole cluster at once);
2. liveness: the network heals and every node restarts; a leader must be elected and commit a
   marker entry, and all logs must become identical, each within ``budget_ticks``;
3. failover: the leader is crashed; another node must become leader and commit an entry of its own
   term within ``budget_ticks`` (the time is the run's failover figure); the old leader restarts
   and all logs must converge again, without an election (only a handover to the preferred leader).

The checkers (``checkers``) run after every event; the first violation stops the run and is
reported with the seed and the last ``trace_events`` events. This module holds the nodes, how a
node's Ready is carried out (disk, network), the client and the phases.
"""
from __future__ import annotations

import hashlib
import random

from mqbench.errors import InvariantViolation

from ..config import Durability, RaftConfig
from ..node import RaftNode
from ..types import Message, MsgType, NotLeader, ProposalDropped, Role
from .checkers import Checkers
from .disk import SimDisk
from .events import (EV_DELIVER, EV_FAULT, EV_PROPOSE, EV_RESTART, EV_SYNC, EV_TICK,  # noqa: F401 (re-exported)
                     EventLoop)
from .faults import Faults
from .model import DEFAULT_PARAMS, FaultRates, SeedResult, SimParams, Violation  # noqa: F401 (re-exported)
from .network import SimNetwork


class SimNode:
    __slots__ = ("id", "core", "disk", "up", "busy", "incarnation", "last_commit", "rng")

    def __init__(self, node_id: int, rng: random.Random):
        self.id = node_id
        self.core: RaftNode | None = None
        self.disk = SimDisk()
        self.up = False
        self.busy = False
        self.incarnation = 0
        self.last_commit = 0
        self.rng = rng


class SimCluster:
    """The nodes, their disks and network, the client and the phases of one seed's run."""

    def __init__(self, seed: int, params: SimParams):
        self.seed = seed
        self.params = params
        root = random.Random(seed)
        self.rates = FaultRates.draw(root, params)
        self.fault_rng = random.Random(root.getrandbits(64))
        self.client_rng = random.Random(root.getrandbits(64))
        self.disk_rng = random.Random(root.getrandbits(64))
        rates = self.rates
        self.net = SimNetwork(random.Random(root.getrandbits(64)), loss=rates.loss, dup=rates.dup,
                              delay_min_ms=rates.delay_min_ms, delay_max_ms=rates.delay_max_ms)
        self.ids = tuple(range(1, params.nodes + 1))
        self.nodes = {i: SimNode(i, random.Random(root.getrandbits(64))) for i in self.ids}
        self.configs = {i: RaftConfig.from_ms(i, self.ids, tick_ms=params.tick_ms, heartbeat_ms=params.heartbeat_ms,
                                              election_ms=params.election_ms, durability=params.durability,
                                              preferred_leader=rates.preferred_leader)
                        for i in self.ids}
        self.fsync_mode = params.durability == Durability.QUORUM_FSYNCED
        self.loop = EventLoop(params)
        self.check = Checkers(self.nodes, self.ids)
        self.faults = Faults(self)
        self.faults_on = True
        self.client_on = True
        self.proposed = 0
        self.failover_ms: int | None = None
        self.loop.handlers = (self._on_tick, self._on_deliver, self._on_sync, self._on_propose,
                              self.faults.on_fault, self._on_restart, self.faults.on_crash)

    # -- nodes ---------------------------------------------------------------------------------
    def start_node(self, sn: SimNode) -> None:
        if sn.up:
            raise InvariantViolation(f"simulator restarting node {sn.id}, which is up")
        storage = sn.disk.recover()
        sn.incarnation += 1
        sn.core = RaftNode(self.configs[sn.id], storage, random.Random(sn.rng.getrandbits(64)))
        sn.up = True
        sn.busy = False
        if sn.core.log.committed < sn.disk.synced_commit:
            raise Violation("commit-regressed", f"node {sn.id} restarted with commit {sn.core.log.committed} "
                            f"below its durable commit {sn.disk.synced_commit}")
        sn.last_commit = sn.core.log.committed

    def crash_node(self, sn: SimNode, power_loss: bool) -> None:
        sn.up = False
        sn.busy = False
        sn.core = None
        sn.incarnation += 1
        if power_loss:
            sn.disk.power_loss(self.disk_rng)
        else:
            sn.disk.process_crash()

    def drive(self, sn: SimNode) -> None:
        core = sn.core
        while not sn.busy and core.has_ready():
            rd = core.ready()
            sn.disk.write(rd.hard_state, rd.entries)
            if rd.must_sync:
                sn.busy = True
                self.loop.schedule(self.loop.now + self.rates.sync_ms, EV_SYNC, sn.id, (sn.incarnation, rd))
                return
            self.finish_ready(sn, rd)
        self.check.check_node(sn)

    def finish_ready(self, sn: SimNode, rd) -> None:
        if rd.must_sync:
            sn.disk.sync()
        now, net, schedule = self.loop.now, self.net, self.loop.schedule
        for m in rd.messages:
            for delay in net.delays_ms():
                schedule(now + delay, EV_DELIVER, m.dst, m)
        if rd.committed_entries:
            self.check.check_applied(sn, rd.committed_entries)
        sn.core.advance(rd)
        sn.busy = False
        granted = _granted_vote(rd.messages)
        if granted is not None:
            self.check.check_vote(sn, granted)
        self.faults.after_vote(sn, granted)

    def leader(self) -> SimNode | None:
        best = None
        for sn in self.nodes.values():
            if sn.up and sn.core.role == Role.LEADER and (best is None or sn.core.term > best.core.term):
                best = sn
        return best

    # -- event handlers ------------------------------------------------------------------------
    def _on_tick(self, node: int, _payload) -> None:
        loop = self.loop
        loop.schedule(loop.now + self.params.tick_ms, EV_TICK, node)
        sn = self.nodes[node]
        if sn.up:
            loop.record(EV_TICK, node, int(sn.core.role))
            sn.core.tick()
            if not self.fsync_mode and (loop.now // self.params.tick_ms) % 10 == 0:
                sn.disk.sync()   # the OS writes the page cache back now and then
            self.drive(sn)

    def _on_deliver(self, node: int, m: Message) -> None:
        sn = self.nodes[node]
        if sn.up and self.net.passes(m.src, m.dst):
            self.loop.record(EV_DELIVER, node, m)
            sn.core.step(m)
            self.drive(sn)

    def _on_sync(self, node: int, payload) -> None:
        incarnation, rd = payload
        sn = self.nodes[node]
        if sn.up and sn.incarnation == incarnation:
            self.loop.record(EV_SYNC, node, len(rd.entries))
            self.finish_ready(sn, rd)
            self.drive(sn)

    def _on_restart(self, node: int, incarnation) -> None:
        sn = self.nodes[node]
        if not sn.up and sn.incarnation == incarnation:   # not a restart planned for an older crash
            self.loop.record(EV_RESTART, node, sn.incarnation)
            self.start_node(sn)
            self.drive(sn)

    # -- the client ----------------------------------------------------------------------------
    def propose(self, data: list[bytes]) -> bool:
        sn = self.leader()
        if sn is None:
            return False
        try:
            sn.core.propose_batch(data)
        except (NotLeader, ProposalDropped):
            return False
        for payload in data:
            self.check.pending[payload] = (sn.id, sn.incarnation)
        self.loop.record(EV_PROPOSE, sn.id, len(data))
        self.drive(sn)
        return True

    def _on_propose(self, _node: int, _payload) -> None:
        if not self.client_on:
            return
        self.loop.schedule(self.loop.now + self.rates.propose_interval_ms, EV_PROPOSE, 0)
        count = self.client_rng.randint(1, 3)
        batch = []
        for _ in range(count):
            self.proposed += 1
            batch.append(b"c%d" % self.proposed)
        self.propose(batch)

    # -- phases --------------------------------------------------------------------------------
    def _wait(self, what: str, done) -> None:
        deadline = self.loop.now + self.params.budget_ticks * self.params.tick_ms
        if not self.loop.run_until(deadline, done):
            raise Violation("liveness", f"{what} not reached within {self.params.budget_ticks} ticks")

    def _marker(self, name: bytes) -> bytes:
        """Propose ``name`` until some leader takes it; wait for it to be acknowledged."""
        check = self.check

        def acked() -> bool:
            if name in check.acked:
                return True
            if name not in check.pending or check.pending[name][0] != getattr(self.leader(), "id", None):
                self.propose([name])
            return name in check.acked
        self._wait(f"commit of {name.decode()}", acked)
        return name

    def run(self) -> None:
        params, loop = self.params, self.loop
        for i, sn in self.nodes.items():
            self.start_node(sn)
            loop.schedule(self.fault_rng.randrange(params.tick_ms), EV_TICK, i)
        loop.schedule(params.tick_ms, EV_PROPOSE, 0)
        loop.schedule(self.fault_rng.randint(100, 600), EV_FAULT, 0)
        loop.run_until(params.safety_ms)
        # liveness: heal everything, stop faults and the client
        self.faults_on = False
        self.client_on = False
        self.net.heal()
        self.net.loss = 0.0
        self.net.dup = 0.0
        # Healed means a LAN again: slow links (a delay near the election timeout makes split votes
        # likely round after round) are a safety-phase fault only.
        self.net.delay_max_ms = min(self.net.delay_max_ms, 20)
        self.net.delay_min_ms = min(self.net.delay_min_ms, self.net.delay_max_ms)
        loop.record(EV_FAULT, 0, ("heal-all",))
        for sn in self.nodes.values():
            if not sn.up:
                self.start_node(sn)
                self.drive(sn)
        self._marker(b"marker-heal")
        self._wait("identical logs after healing", self.check.converged)
        self.check.check_final()
        # failover: crash the leader, time how long until another leader commits in its own term
        old = self.leader()
        loop.record(EV_FAULT, old.id, ("crash-leader",))
        self.crash_node(old, power_loss=self.fsync_mode)
        crashed_at = loop.now

        def new_leader_commits() -> bool:
            sn = self.leader()
            return sn is not None and sn.core.log.term(sn.core.log.committed) == sn.core.term
        self._wait("a new leader committing", new_leader_commits)
        self.failover_ms = loop.now - crashed_at
        term_before = self.leader().core.term
        if not old.up:
            self.start_node(old)
            self.drive(old)
        self._marker(b"marker-failover")
        self._wait("identical logs after failover", self.check.converged)
        self.check.check_final()
        self.check.check_rejoin(old, term_before, self.leader(), self.rates.preferred_leader)


def _granted_vote(messages) -> Message | None:
    for m in messages:
        if m.type == MsgType.VOTE_RESP and not m.reject:
            return m
    return None


def run_seed(seed: int, params: SimParams = DEFAULT_PARAMS) -> SeedResult:
    """Run one seed; never raises for a violation (it is in the result)."""
    cluster = SimCluster(seed, params)
    violation = None
    try:
        cluster.run()
    except Violation as exc:
        violation = str(exc)
    loop = cluster.loop
    digest = hashlib.blake2b(repr((loop.digest, loop.events, loop.now)).encode(), digest_size=16).hexdigest()
    failover_ms = cluster.failover_ms
    return SeedResult(
        seed=seed, ok=violation is None, violation=violation,
        trace=loop.trace_lines() if violation else [], trace_digest=digest, events=loop.events,
        sim_ms=loop.now, failover_ms=failover_ms,
        failover_ticks=None if failover_ms is None else -(-failover_ms // params.tick_ms),
        acked_entries=len(cluster.check.acked), committed_entries=len(cluster.check.committed_log),
        leaders_elected=len(cluster.check.leaders),
        torn_entries_dropped=sum(sn.disk.torn_drops for sn in cluster.nodes.values()), rates=cluster.rates)
