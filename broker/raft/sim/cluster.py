"""One seeded simulation run: a cluster of ``RaftNode`` cores on a fake clock, network and disks.

A run has three phases, all driven by one discrete-event queue ordered by (time, sequence):

1. safety (``SimParams.safety_ms``): client proposals to whoever is leader, and faults drawn from
   rates chosen per seed (message loss, duplication, delay/reordering, symmetric and one-way
   partitions, crashes of a minority at a time with restarts, leader crashes, leadership transfers,
   and in the fsynced mode power loss of the whole cluster at once);
2. liveness: the network heals and every node restarts; a leader must be elected and commit a
   marker entry, and all logs must become identical, each within ``budget_ticks``;
3. failover: the leader is crashed; another node must become leader and commit an entry of its own
   term within ``budget_ticks`` (the time is the run's failover figure); the old leader restarts
   and all logs must converge again, without an election (only a handover to the preferred leader).

Checkers run after every event (see ``check_*`` methods: one leader per term, one vote per node
per term across restarts, leader completeness, state machine safety with acknowledged entries
never lost or changed, commit never going back, identical logs after convergence); the first violation stops the run and is
reported with the seed and the last ``trace_events`` events.
"""
from __future__ import annotations

import hashlib
import heapq
import random
import zlib
from collections import deque
from dataclasses import dataclass

from mqbench.errors import InvariantViolation

from ..config import Durability, RaftConfig
from ..node import RaftNode
from ..types import NONE, Entry, Message, MsgType, NotLeader, ProposalDropped, RaftError, Role
from .disk import SimDisk
from .network import SimNetwork

EV_TICK, EV_DELIVER, EV_SYNC, EV_PROPOSE, EV_FAULT, EV_RESTART, EV_CRASH = range(7)
_EVENT_NAMES = ("tick", "deliver", "synced", "propose", "fault", "restart", "crash")


@dataclass(frozen=True)
class SimParams:
    nodes: int = 3
    durability: Durability = Durability.QUORUM_FSYNCED
    tick_ms: int = 50
    heartbeat_ms: int = 100
    election_ms: int = 1000
    safety_ms: int = 8000
    budget_ticks: int = 100
    trace_events: int = 40
    max_events: int = 1_000_000      # a run needs about 1,500; far more means nodes spin on each other


@dataclass(frozen=True)
class FaultRates:
    """Fault and load rates of one seed, drawn from the seed itself."""

    loss: float
    dup: float
    delay_min_ms: int
    delay_max_ms: int
    fault_mean_interval_ms: int
    sync_ms: int
    propose_interval_ms: int
    max_down: int
    preferred_leader: int
    vote_crash_p: float

    @classmethod
    def draw(cls, rng: random.Random, params: SimParams) -> "FaultRates":
        n = params.nodes
        return cls(loss=rng.choice((0.0, 0.01, 0.05, 0.1, 0.2)), dup=rng.choice((0.0, 0.02, 0.1)),
                   delay_min_ms=rng.randint(0, 2), delay_max_ms=rng.choice((5, 20, 40, 150, 300)),
                   fault_mean_interval_ms=rng.choice((150, 300, 600, 1200)), sync_ms=rng.randint(1, 8),
                   propose_interval_ms=rng.choice((20, 50, 100)), max_down=(n - 1) // 2,
                   preferred_leader=rng.choice((NONE, NONE, rng.randint(1, n))),
                   vote_crash_p=rng.choice((0.0, 0.3, 0.7)))


class Violation(Exception):
    """A checker found a broken invariant (or the liveness budget ran out)."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(f"{kind}: {message}")


@dataclass
class SeedResult:
    seed: int
    ok: bool
    violation: str | None
    trace: list[str]
    trace_digest: str
    events: int
    sim_ms: int
    failover_ms: int | None
    failover_ticks: int | None
    acked_entries: int
    committed_entries: int
    leaders_elected: int
    torn_entries_dropped: int
    rates: FaultRates | None = None


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
        self.now = 0
        self.heap: list = []
        self.seq = 0
        self.events = 0
        self.trace: deque = deque(maxlen=params.trace_events)
        self.digest = 0
        self.faults_on = True
        self.client_on = True
        # checker state
        self.leaders: dict[int, int] = {}
        self.votes: dict[tuple[int, int], int] = {}
        self.committed_log: list[Entry] = []
        self.pending: dict[bytes, tuple[int, int]] = {}
        self.acked: dict[bytes, int] = {}
        self.proposed = 0
        self.failover_ms: int | None = None
        self._handlers = (self._on_tick, self._on_deliver, self._on_sync, self._on_propose, self._on_fault,
                          self._on_restart, self._on_crash)

    # -- event queue ---------------------------------------------------------------------------
    def schedule(self, at_ms: int, kind: int, node: int, payload=None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at_ms, self.seq, kind, node, payload))

    def record(self, kind: int, node: int, detail) -> None:
        self.trace.append((self.now, kind, node, detail))
        if isinstance(detail, Message):
            key = (detail.type, detail.src, detail.term, detail.index, len(detail.entries), detail.commit, detail.reject)
        elif isinstance(detail, int):
            key = detail
        else:   # str hashes change per process (PYTHONHASHSEED); a CRC does not
            key = zlib.crc32(repr(detail).encode())
        self.digest = hash((self.digest, self.now, kind, node, key))

    def run_until(self, stop_ms: int, done=None) -> bool:
        """Process events up to ``stop_ms``; True as soon as ``done()`` holds after an event."""
        heap, handlers = self.heap, self._handlers
        while heap and heap[0][0] <= stop_ms:
            at, _, kind, node, payload = heapq.heappop(heap)
            self.now = at
            self.events += 1
            if self.events > self.params.max_events:
                raise Violation("livelock", f"more than {self.params.max_events} events (a message storm?)")
            handlers[kind](node, payload)
            if done is not None and done():
                return True
        self.now = max(self.now, stop_ms)
        return done is not None and done()

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
                self.schedule(self.now + self.rates.sync_ms, EV_SYNC, sn.id, (sn.incarnation, rd))
                return
            self.finish_ready(sn, rd)
        self.check_node(sn)

    def finish_ready(self, sn: SimNode, rd) -> None:
        if rd.must_sync:
            sn.disk.sync()
        now, net, schedule = self.now, self.net, self.schedule
        for m in rd.messages:
            for delay in net.delays_ms():
                schedule(now + delay, EV_DELIVER, m.dst, m)
        if rd.committed_entries:
            self.check_applied(sn, rd.committed_entries)
        sn.core.advance(rd)
        sn.busy = False
        granted = _granted_vote(rd.messages)
        if granted is not None:
            self.check_vote(sn, granted)
        if self.rates.vote_crash_p and self.faults_on:
            if granted is not None:
                # Targeted fault: crash a voter right after it voted, the moment its vote must
                # survive; almost surely when a rival candidate of the same term may still ask it.
                p = 0.9 if self._has_rival(sn.id, granted) else self.rates.vote_crash_p
                if self.fault_rng.random() < p:
                    self.schedule(self.now + self.fault_rng.randint(0, 1), EV_CRASH, sn.id, sn.incarnation)

    def _has_rival(self, voter: int, granted: Message) -> bool:
        for other in self.nodes.values():
            if (other.up and other.id not in (voter, granted.dst) and other.core.role == Role.CANDIDATE
                    and other.core.term == granted.term):
                return True
        return False

    # -- event handlers ------------------------------------------------------------------------
    def _on_tick(self, node: int, _payload) -> None:
        self.schedule(self.now + self.params.tick_ms, EV_TICK, node)
        sn = self.nodes[node]
        if sn.up:
            self.record(EV_TICK, node, int(sn.core.role))
            sn.core.tick()
            if not self.fsync_mode and (self.now // self.params.tick_ms) % 10 == 0:
                sn.disk.sync()   # the OS writes the page cache back now and then
            self.drive(sn)

    def _on_deliver(self, node: int, m: Message) -> None:
        sn = self.nodes[node]
        if sn.up and self.net.passes(m.src, m.dst):
            self.record(EV_DELIVER, node, m)
            sn.core.step(m)
            self.drive(sn)

    def _on_sync(self, node: int, payload) -> None:
        incarnation, rd = payload
        sn = self.nodes[node]
        if sn.up and sn.incarnation == incarnation:
            self.record(EV_SYNC, node, len(rd.entries))
            self.finish_ready(sn, rd)
            self.drive(sn)

    def _on_restart(self, node: int, incarnation) -> None:
        sn = self.nodes[node]
        if not sn.up and sn.incarnation == incarnation:   # not a restart planned for an older crash
            self.record(EV_RESTART, node, sn.incarnation)
            self.start_node(sn)
            self.drive(sn)

    def _on_crash(self, node: int, incarnation) -> None:
        sn = self.nodes[node]
        if sn.up and sn.incarnation == incarnation and self.faults_on:
            self._crash(sn, self.fault_rng, restart_ms=(1, 8))

    def leader(self) -> SimNode | None:
        best = None
        for sn in self.nodes.values():
            if sn.up and sn.core.role == Role.LEADER and (best is None or sn.core.term > best.core.term):
                best = sn
        return best

    def propose(self, data: list[bytes]) -> bool:
        sn = self.leader()
        if sn is None:
            return False
        try:
            sn.core.propose_batch(data)
        except (NotLeader, ProposalDropped):
            return False
        for payload in data:
            self.pending[payload] = (sn.id, sn.incarnation)
        self.record(EV_PROPOSE, sn.id, len(data))
        self.drive(sn)
        return True

    def _on_propose(self, _node: int, _payload) -> None:
        if not self.client_on:
            return
        self.schedule(self.now + self.rates.propose_interval_ms, EV_PROPOSE, 0)
        count = self.client_rng.randint(1, 3)
        batch = []
        for _ in range(count):
            self.proposed += 1
            batch.append(b"c%d" % self.proposed)
        self.propose(batch)

    def _on_fault(self, _node: int, _payload) -> None:
        if not self.faults_on:
            return
        rng = self.fault_rng
        self.schedule(self.now + 1 + int(rng.expovariate(1 / self.rates.fault_mean_interval_ms)), EV_FAULT, 0)
        kind = rng.choice(_FAULT_KINDS)
        getattr(self, "_fault_" + kind)(rng)

    # -- faults --------------------------------------------------------------------------------
    def _fault_partition(self, rng: random.Random) -> None:
        side = rng.sample(self.ids, rng.randint(1, len(self.ids) // 2))
        self.net.partition(side, [i for i in self.ids if i not in side])
        self.record(EV_FAULT, 0, ("partition", tuple(sorted(side))))

    def _fault_oneway(self, rng: random.Random) -> None:
        src, dst = rng.sample(self.ids, 2)
        self.net.cut_one_way(src, dst)
        self.record(EV_FAULT, 0, ("oneway", src, dst))

    def _fault_heal(self, rng: random.Random) -> None:
        self.net.heal()
        self.record(EV_FAULT, 0, ("heal",))

    def _crash(self, sn: SimNode, rng: random.Random, restart_ms: tuple[int, int] = (50, 1500)) -> None:
        down = sum(1 for n in self.nodes.values() if not n.up)
        if not sn.up or down >= self.rates.max_down:
            return
        self.record(EV_FAULT, sn.id, ("crash", self.fsync_mode))
        self.crash_node(sn, power_loss=self.fsync_mode)
        self.schedule(self.now + rng.randint(*restart_ms), EV_RESTART, sn.id, sn.incarnation)

    def _fault_crash(self, rng: random.Random) -> None:
        self._crash(self.nodes[rng.choice(self.ids)], rng)

    def _fault_crash_leader(self, rng: random.Random) -> None:
        sn = self.leader()
        if sn is not None:
            self._crash(sn, rng)

    def _fault_transfer(self, rng: random.Random) -> None:
        sn = self.leader()
        if sn is None:
            return
        target = rng.choice([i for i in self.ids if i != sn.id])
        self.record(EV_FAULT, sn.id, ("transfer", target))
        try:
            sn.core.transfer_leadership(target)
        except RaftError:
            return
        self.drive(sn)

    def _fault_crash_all(self, rng: random.Random) -> None:
        # Every replica at once: a power loss in the fsynced mode (it loses nothing acknowledged
        # there), a process crash in the in-memory mode (a power loss would lose acknowledged
        # entries there: its documented loss, kept out of the fault model).
        self.record(EV_FAULT, 0, ("crash-all", self.fsync_mode))
        # Half the time they come back together (a rack power cycle): a crowded election.
        base, spread = rng.randint(20, 800), rng.choice((5, 800))
        for sn in self.nodes.values():
            if sn.up:
                self.crash_node(sn, power_loss=self.fsync_mode)
                self.schedule(self.now + base + rng.randint(0, spread), EV_RESTART, sn.id, sn.incarnation)

    # -- checkers ------------------------------------------------------------------------------
    def check_node(self, sn: SimNode) -> None:
        core = sn.core
        committed = core.log.committed
        if committed < sn.last_commit:
            raise Violation("commit-regressed", f"node {sn.id} commit went from {sn.last_commit} to {committed}")
        sn.last_commit = committed
        if core.role == Role.LEADER:
            known = self.leaders.get(core.term)
            if known is None:
                self.leaders[core.term] = sn.id
                self.check_leader_completeness(sn)
            elif known != sn.id:
                raise Violation("election-safety", f"nodes {known} and {sn.id} are both leaders of term {core.term}")

    def check_vote(self, sn: SimNode, granted: Message) -> None:
        """One vote per node per term, across restarts (Raft's persistent votedFor)."""
        key = (sn.id, granted.term)
        earlier = self.votes.setdefault(key, granted.dst)
        if earlier != granted.dst:
            raise Violation("vote-safety", f"node {sn.id} voted for {earlier} and then {granted.dst} in term {granted.term}")

    def check_leader_completeness(self, sn: SimNode) -> None:
        log = sn.core.log
        if self.committed_log:
            last = self.committed_log[-1]
            if log.term(last.index) != last.term:
                raise Violation("leader-completeness", f"node {sn.id} leads term {sn.core.term} without committed "
                                f"entry {last.index} (term {last.term}); its term there: {log.term(last.index)}")

    def check_applied(self, sn: SimNode, entries: list[Entry]) -> None:
        log = self.committed_log
        for entry in entries:
            known = len(log)
            if entry.index <= known:
                if log[entry.index - 1] != entry:
                    other = log[entry.index - 1]
                    raise Violation("state-machine-safety", f"node {sn.id} applied {entry.index}/{entry.term} "
                                    f"{entry.data!r} but {other.index}/{other.term} {other.data!r} was committed")
            elif entry.index == known + 1:
                log.append(entry)
            else:
                raise Violation("state-machine-safety", f"node {sn.id} applied {entry.index} after only {known}")
            owner = self.pending.get(entry.data)
            if owner is not None and owner == (sn.id, sn.incarnation):
                del self.pending[entry.data]
                self.acked[entry.data] = entry.index

    def converged(self) -> bool:
        cores = []
        for sn in self.nodes.values():
            if not sn.up or sn.busy:
                return False
            cores.append(sn.core)
        leaders = [c for c in cores if c.role == Role.LEADER]
        if len(leaders) != 1:
            return False
        last = leaders[0].log.last_index()
        term = leaders[0].log.last_term()
        return all(c.log.last_index() == last and c.log.committed == last and c.log.applied == last
                   and c.log.last_term() == term for c in cores)

    def check_final(self) -> None:
        logs = {sn.id: sn.core.log.entries(1, sn.core.log.last_index() + 1) for sn in self.nodes.values()}
        first = logs[self.ids[0]]
        for node, ents in logs.items():
            if ents != first:
                raise Violation("logs-differ", f"after convergence node {node}'s log differs from node {self.ids[0]}'s")
        for data, index in self.acked.items():
            if index > len(first) or first[index - 1].data != data:
                raise Violation("acked-lost", f"acknowledged entry {data!r} at index {index} is gone")

    def check_rejoin(self, rejoined: SimNode, term_before: int) -> None:
        """The old leader rejoined a healthy group: no election may follow, only a handover to the
        preferred leader (one term) once it is caught up."""
        leader = self.leader()
        allowed = 1 if leader.id == self.rates.preferred_leader else 0
        if leader.core.term - term_before > allowed:
            raise Violation("rejoin-churn", f"node {rejoined.id} rejoined at term {term_before}; the group reached "
                            f"term {leader.core.term} (leader {leader.id}, preferred {self.rates.preferred_leader})")

    # -- phases --------------------------------------------------------------------------------
    def _wait(self, what: str, done) -> None:
        deadline = self.now + self.params.budget_ticks * self.params.tick_ms
        if not self.run_until(deadline, done):
            raise Violation("liveness", f"{what} not reached within {self.params.budget_ticks} ticks")

    def _marker(self, name: bytes) -> bytes:
        """Propose ``name`` until some leader takes it; wait for it to be acknowledged."""
        def acked() -> bool:
            if name in self.acked:
                return True
            if name not in self.pending or self.pending[name][0] != getattr(self.leader(), "id", None):
                self.propose([name])
            return name in self.acked
        self._wait(f"commit of {name.decode()}", acked)
        return name

    def run(self) -> None:
        params = self.params
        for i, sn in self.nodes.items():
            self.start_node(sn)
            self.schedule(self.fault_rng.randrange(params.tick_ms), EV_TICK, i)
        self.schedule(params.tick_ms, EV_PROPOSE, 0)
        self.schedule(self.fault_rng.randint(100, 600), EV_FAULT, 0)
        self.run_until(params.safety_ms)
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
        self.record(EV_FAULT, 0, ("heal-all",))
        for sn in self.nodes.values():
            if not sn.up:
                self.start_node(sn)
                self.drive(sn)
        self._marker(b"marker-heal")
        self._wait("identical logs after healing", self.converged)
        self.check_final()
        # failover: crash the leader, time how long until another leader commits in its own term
        old = self.leader()
        self.record(EV_FAULT, old.id, ("crash-leader",))
        self.crash_node(old, power_loss=self.fsync_mode)
        crashed_at = self.now

        def new_leader_commits() -> bool:
            sn = self.leader()
            return sn is not None and sn.core.log.term(sn.core.log.committed) == sn.core.term
        self._wait("a new leader committing", new_leader_commits)
        self.failover_ms = self.now - crashed_at
        term_before = self.leader().core.term
        if not old.up:
            self.start_node(old)
            self.drive(old)
        self._marker(b"marker-failover")
        self._wait("identical logs after failover", self.converged)
        self.check_final()
        self.check_rejoin(old, term_before)

    def trace_lines(self) -> list[str]:
        lines = []
        for at, kind, node, detail in self.trace:
            if isinstance(detail, Message):
                text = detail.describe()
            elif kind == EV_TICK:
                text = f"node {node} ({Role(detail).name.lower()})"
            else:
                text = f"node {node} {detail}" if node else str(detail)
            lines.append(f"{at:>7}ms {_EVENT_NAMES[kind]:<8} {text}")
        return lines


_FAULT_KINDS = ("partition", "partition", "oneway", "heal", "heal", "crash", "crash_leader", "transfer", "crash_all")


def _granted_vote(messages) -> Message | None:
    for m in messages:
        if m.type == MsgType.VOTE_RESP and not m.reject:
            return m
    return None


def run_seed(seed: int, params: SimParams = SimParams()) -> SeedResult:
    """Run one seed; never raises for a violation (it is in the result)."""
    cluster = SimCluster(seed, params)
    violation = None
    try:
        cluster.run()
    except Violation as exc:
        violation = str(exc)
    digest = hashlib.blake2b(repr((cluster.digest, cluster.events, cluster.now)).encode(), digest_size=16).hexdigest()
    failover_ms = cluster.failover_ms
    return SeedResult(
        seed=seed, ok=violation is None, violation=violation,
        trace=cluster.trace_lines() if violation else [], trace_digest=digest, events=cluster.events,
        sim_ms=cluster.now, failover_ms=failover_ms,
        failover_ticks=None if failover_ms is None else -(-failover_ms // params.tick_ms),
        acked_entries=len(cluster.acked), committed_entries=len(cluster.committed_log),
        leaders_elected=len(cluster.leaders),
        torn_entries_dropped=sum(sn.disk.torn_drops for sn in cluster.nodes.values()), rates=cluster.rates)
