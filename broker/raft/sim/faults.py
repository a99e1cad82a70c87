"""The simulator's faults: drawn from the seed's rates with the cluster's fault ``Random``.

Symmetric and one-way partitions, heals, crashes of a minority at a time with restarts (power loss
in the fsynced mode, process crash in memory mode), leader crashes, leadership transfers, every
replica at once, and the targeted crash of a voter right after it voted. ``FAULT_KINDS`` is the
table a fault event draws from (a kind listed twice is drawn twice as often).
"""
from __future__ import annotations

import random

from ..types import Message, RaftError, Role
from .events import EV_CRASH, EV_FAULT, EV_RESTART

FAULT_KINDS = ("partition", "partition", "oneway", "heal", "heal", "crash", "crash_leader", "transfer", "crash_all")


class Faults:
    """The fault model of one run, acting on ``cluster`` (its loop, network, nodes and rates)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.table = {"partition": self.partition, "oneway": self.oneway, "heal": self.heal, "crash": self.crash_one,
                      "crash_leader": self.crash_leader, "transfer": self.transfer, "crash_all": self.crash_all}

    def on_fault(self, _node: int, _payload) -> None:
        c = self.cluster
        if not c.faults_on:
            return
        rng = c.fault_rng
        c.loop.schedule(c.loop.now + 1 + int(rng.expovariate(1 / c.rates.fault_mean_interval_ms)), EV_FAULT, 0)
        kind = rng.choice(FAULT_KINDS)
        self.table[kind](rng)

    def on_crash(self, node: int, incarnation) -> None:
        c = self.cluster
        sn = c.nodes[node]
        if sn.up and sn.incarnation == incarnation and c.faults_on:
            self.crash(sn, c.fault_rng, restart_ms=(1, 8))

    def after_vote(self, sn, granted: Message | None) -> None:
        """Targeted fault: crash a voter right after it voted, the moment its vote must survive;
        almost surely when a rival candidate of the same term may still ask it."""
        c = self.cluster
        if c.rates.vote_crash_p and c.faults_on:
            if granted is not None:
                p = 0.9 if self._has_rival(sn.id, granted) else c.rates.vote_crash_p
                if c.fault_rng.random() < p:
                    c.loop.schedule(c.loop.now + c.fault_rng.randint(0, 1), EV_CRASH, sn.id, sn.incarnation)

    def _has_rival(self, voter: int, granted: Message) -> bool:
        for other in self.cluster.nodes.values():
            if (other.up and other.id not in (voter, granted.dst) and other.core.role == Role.CANDIDATE
                    and other.core.term == granted.term):
                return True
        return False

    def partition(self, rng: random.Random) -> None:
        c = self.cluster
        side = rng.sample(c.ids, rng.randint(1, len(c.ids) // 2))
        c.net.partition(side, [i for i in c.ids if i not in side])
        c.loop.record(EV_FAULT, 0, ("partition", tuple(sorted(side))))

    def oneway(self, rng: random.Random) -> None:
        c = self.cluster
        src, dst = rng.sample(c.ids, 2)
        c.net.cut_one_way(src, dst)
        c.loop.record(EV_FAULT, 0, ("oneway", src, dst))

    def heal(self, rng: random.Random) -> None:
        c = self.cluster
        c.net.heal()
        c.loop.record(EV_FAULT, 0, ("heal",))

    def crash(self, sn, rng: random.Random, restart_ms: tuple[int, int] = (50, 1500)) -> None:
        c = self.cluster
        down = sum(1 for n in c.nodes.values() if not n.up)
        if not sn.up or down >= c.rates.max_down:
            return
        c.loop.record(EV_FAULT, sn.id, ("crash", c.fsync_mode))
        c.crash_node(sn, power_loss=c.fsync_mode)
        c.loop.schedule(c.loop.now + rng.randint(*restart_ms), EV_RESTART, sn.id, sn.incarnation)

    def crash_one(self, rng: random.Random) -> None:
        c = self.cluster
        self.crash(c.nodes[rng.choice(c.ids)], rng)

    def crash_leader(self, rng: random.Random) -> None:
        sn = self.cluster.leader()
        if sn is not None:
            self.crash(sn, rng)

    def transfer(self, rng: random.Random) -> None:
        c = self.cluster
        sn = c.leader()
        if sn is None:
            return
        target = rng.choice([i for i in c.ids if i != sn.id])
        c.loop.record(EV_FAULT, sn.id, ("transfer", target))
        try:
            sn.core.transfer_leadership(target)
        except RaftError:
            return
        c.drive(sn)

    def crash_all(self, rng: random.Random) -> None:
        # Every replica at once: a power loss in the fsynced mode (it loses nothing acknowledged
        # there), a process crash in the in-memory mode (a power loss would lose acknowledged
        # entries there: its documented loss, kept out of the fault model).
        c = self.cluster
        c.loop.record(EV_FAULT, 0, ("crash-all", c.fsync_mode))
        # Half the time they come back together (a rack power cycle): a crowded election.
        base, spread = rng.randint(20, 800), rng.choice((5, 800))
        for sn in c.nodes.values():
            if sn.up:
                c.crash_node(sn, power_loss=c.fsync_mode)
                c.loop.schedule(c.loop.now + base + rng.randint(0, spread), EV_RESTART, sn.id, sn.incarnation)
