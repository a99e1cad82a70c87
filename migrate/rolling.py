"""Rolling upgrade of a running reference cluster: one replica at a time, traffic flowing.

``await rolling_upgrade(state, target, groups=None, wait_s=60, keep_old=True, on_event=None)``
takes every Raft group of the cluster (``mqbench cluster up``) to store version ``target``
(``v4-dledger`` or ``v5-dledger``: a group's replicas share one Raft log, so the store stays a
DLedger store), replica by replica, followers first and the leader last. Per replica (a table of
steps, each with what must hold before the next):

    step      work                                                     holds after it
    healthy   wait until the group has one leader, routed, all answer  a quorum without this replica
    stop      SIGTERM (clean stop: unregister, close the store)         the replica is gone
    migrate   ``run.migrate(store, store.migrating, target)``           DST complete, journaled
    verify    ``verify.verify(store, store.migrating)``                 every message, offset, entry
    swap      store -> store.<old version>, store.migrating -> store   the new store is in place
    restart   the same process, ``--store-version target``              it listens
    catch-up  its ``raftCommitIndex`` reaches the leader's at restart   it is a full member again

A DLedger store keeps every entry's Raft index and term, the vote (``currterm``) and the applied
mark (``raft-applied.json``) through the migration, so the replica rejoins its group as the same
member: the leader goes on replicating from where the replica stopped, nothing is re-sent in full
and nothing it acknowledged is lost. Producers and consumers keep running: while a follower is
down the other two replicas are a quorum; when the leader's turn comes it is stopped cleanly and
the (upgraded) followers elect a new leader, which costs one election of write unavailability
(the broker has no admin command to hand leadership over before stopping). The migration is
resumable: a rolling upgrade interrupted mid-replica continues the same migration (its journal)
when run again, and replicas already at ``target`` are skipped.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mqbench.broker.store import versions
from mqbench.cluster import launcher
from mqbench.cluster.processes import ClusterState, stop
from mqbench.errors import UserError

from .journal import read_journal
from .plan import Options
from .run import migrate
from .verify import verify

ROLLING_TARGETS = ("v4-dledger", "v5-dledger")
MIGRATING_SUFFIX = ".migrating"


@dataclass
class ReplicaUpgrade:
    """What happened to one replica (times in seconds from the start of the rolling upgrade)."""

    instance: str
    group: str
    was_leader: bool
    from_version: str
    stopped_at_s: float = 0.0
    migrated_s: float = 0.0
    restarted_at_s: float = 0.0
    caught_up_at_s: float = 0.0
    records: int = 0
    skipped: bool = False

    @property
    def down_s(self) -> float:
        return self.restarted_at_s - self.stopped_at_s


def _store_of(record) -> Path:
    argv = record.argv
    if "--store" not in argv:
        raise UserError(f"{record.name} was not started with --store (not a broker instance)")
    return Path(argv[argv.index("--store") + 1])


def _set_store_version(record, target: str) -> None:
    argv = list(record.argv)
    if "--store-version" in argv:
        argv[argv.index("--store-version") + 1] = target
    else:
        argv += ["--store-version", target]
    record.argv = argv


async def _commit_index(addr: str) -> tuple[str, int]:
    from mqbench.admin.calls import query_runtime_info

    info = await query_runtime_info(addr, 1.0)
    index = info.get("raftCommitIndex", "-1")
    return info.get("raftRole", ""), int(index) if index.lstrip("-").isdigit() else -1


async def _wait_caught_up(addr: str, index: int, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            role, have = await _commit_index(addr)
            if role in ("leader", "follower") and have >= index:
                return
            last = f"{role}, commit index {have} of {index}"
        except Exception as exc:  # noqa: BLE001 - not listening yet, refused, timed out
            last = str(exc) or type(exc).__name__
        await asyncio.sleep(0.1)
    raise UserError(f"the upgraded replica at {addr} did not catch up within {wait_s:.0f} s ({last})")


def _migrate_store(store: Path, target: str) -> tuple[int, float]:
    """Migrate ``store`` to ``target`` in ``store.migrating`` (resuming a journal left there),
    verify it, and swap it in. Returns (records written, seconds)."""
    t0 = time.monotonic()
    tmp = store.with_name(store.name + MIGRATING_SUFFIX)
    journal = read_journal(tmp) if tmp.is_dir() else None
    if tmp.exists() and journal is None:
        shutil.rmtree(tmp)          # a folder without a journal holds nothing of ours worth keeping
    summary = migrate(str(store), str(tmp), Options(target=target), resume=journal is not None)
    result = verify(str(store), str(tmp))
    if not result["ok"]:
        raise UserError(f"the migrated store {tmp} differs from {store}: {'; '.join(result['differences'][:3])}")
    old_version = versions.detect_version(str(store))
    old = store.with_name(f"{store.name}.{old_version}")
    if old.exists():
        shutil.rmtree(old)
    os.rename(store, old)
    os.rename(tmp, store)
    return summary["records_out"], time.monotonic() - t0


async def rolling_upgrade(state: ClusterState, target: str, *, groups: list[str] | None = None,
                          wait_s: float = 60.0, keep_old: bool = True,
                          on_event: Callable[[str], None] | None = None) -> list[ReplicaUpgrade]:
    """Upgrade every replica of ``groups`` (default: all) to ``target`` (module doc)."""
    from mqbench.cluster.control import wait_healthy

    if target not in ROLLING_TARGETS:
        raise UserError(f"a rolling upgrade keeps the Raft log: --to must be one of {', '.join(ROLLING_TARGETS)}")
    layout = launcher.cluster_layout(state)
    chosen = groups or list(layout.groups)
    for g in chosen:
        if g not in layout.groups:
            raise UserError(f"layout {layout.name!r} has no group {g!r}; groups: {', '.join(layout.groups)}")
    say = on_event or (lambda text: None)
    started = time.monotonic()
    done: list[ReplicaUpgrade] = []
    for group in chosen:
        leader = await wait_healthy(state, group, wait_s)
        members = [i for i in layout.instances if i.group == group]
        order = [i for i in members if i.name != leader.name] + [i for i in members if i.name == leader.name]
        for instance in order:
            record = state.processes[instance.name]
            store = _store_of(record)
            current = versions.detect_version(str(store)) if store.exists() else "none"
            step = ReplicaUpgrade(instance.name, group, instance.name == leader.name, current)
            if current == target:
                step.skipped = True
                done.append(step)
                say(f"{instance.name}: already {target}")
                continue
            leader_now = await wait_healthy(state, group, wait_s)
            step.was_leader = leader_now.name == instance.name
            say(f"{instance.name}: stopping ({'leader' if step.was_leader else 'follower'})")
            step.stopped_at_s = time.monotonic() - started
            await asyncio.to_thread(stop, [record], 10.0)
            say(f"{instance.name}: migrating {store} {current} -> {target}")
            step.records, step.migrated_s = await asyncio.to_thread(_migrate_store, store, target)
            _set_store_version(record, target)
            state.save()
            await asyncio.to_thread(launcher.start, state, instance.name)
            step.restarted_at_s = time.monotonic() - started
            # the index to reach: the group's commit index once it has a leader again
            others = [i for i in members if i.name != instance.name]
            target_index = -1
            for other in others:
                try:
                    role, index = await _commit_index(other.addr)
                except Exception:  # noqa: BLE001 - a replica being elected or down: ask the next
                    continue
                if role == "leader":
                    target_index = index
            await _wait_caught_up(instance.addr, target_index, wait_s)
            await wait_healthy(state, group, wait_s)
            step.caught_up_at_s = time.monotonic() - started
            if not keep_old:
                shutil.rmtree(store.with_name(f"{store.name}.{current}"), ignore_errors=True)
            say(f"{instance.name}: {target}, caught up (down {step.down_s:.1f} s, migration "
                f"{step.migrated_s:.1f} s, {step.records} records)")
            done.append(step)
    return done
