"""Test helper: the replicas of one broker group in one event loop on 127.0.0.1 (ephemeral ports)."""
from __future__ import annotations

import asyncio
import random
from pathlib import Path

from mqbench.broker.server.replicated import ReplicatedGroup

# short timings keep failover tests fast; the election timeout leaves room for a loaded machine
FAST = dict(tick_ms=10, heartbeat_ms=20, election_ms=400)


class Cluster:
    def __init__(self, root: Path, size: int = 3, durability: str = "memory", **kwargs):
        self.root = Path(root)
        self.ids = tuple(range(1, size + 1))
        self.durability = durability
        self.kwargs = {**FAST, **kwargs}
        self.groups: dict[int, ReplicatedGroup] = {}
        self.addresses: dict[int, tuple[str, int]] = {i: ("127.0.0.1", 0) for i in self.ids}

    def store_root(self, node_id: int) -> Path:
        return self.root / f"n{node_id - 1}"

    async def _open(self, node_id: int) -> ReplicatedGroup:
        group = await ReplicatedGroup.open(
            self.store_root(node_id), self_id=node_id, peers=dict(self.addresses), durability=self.durability,
            rng=random.Random(node_id), store_host=("127.0.0.1", 10911 + 10 * node_id), **self.kwargs)
        self.groups[node_id] = group
        return group

    async def start(self) -> "Cluster":
        for i in self.ids:
            group = await self._open(i)
            self.addresses[i] = group.raft_address
        for i, group in self.groups.items():
            for j, address in self.addresses.items():
                if j != i:
                    group.set_peer_address(j, address)
        return self

    @property
    def live(self) -> dict[int, ReplicatedGroup]:
        return {i: g for i, g in self.groups.items() if not g.stopped}

    async def leader(self, timeout_s: float = 20.0) -> ReplicatedGroup:
        async def wait():
            while True:
                leaders = [g for g in self.live.values() if g.is_leader]
                if len(leaders) == 1 and leaders[0].leader_ready:
                    return leaders[0]
                await asyncio.sleep(0.01)
        return await asyncio.wait_for(wait(), timeout_s)

    async def stop(self, node_id: int, *, abrupt: bool = True) -> None:
        """``abrupt``: halt first (no goodbye), then release the files; else a clean close."""
        group = self.groups.pop(node_id)
        if abrupt:
            await group.halt()
        await group.close()

    async def restart(self, node_id: int) -> ReplicatedGroup:
        return await self._open(node_id)

    async def converged(self, timeout_s: float = 20.0) -> None:
        """Every live replica applied the same last index (the leader's commit index)."""
        async def wait():
            while True:
                groups = list(self.live.values())
                leaders = [g for g in groups if g.is_leader]
                if leaders:
                    target = leaders[0].node.log.last_index()
                    if all(g.applied_index == target and g.node.log.last_index() == target for g in groups):
                        return
                await asyncio.sleep(0.01)
        await asyncio.wait_for(wait(), timeout_s)

    async def close(self) -> None:
        for node_id in list(self.groups):
            await self.groups.pop(node_id).close()


def log_bytes(group: ReplicatedGroup) -> bytes:
    """The DLedger data of a replica up to its end (segments are preallocated, so cut there)."""
    log = group.store.dledger
    return log.data.read(log.data.min_offset, log.end_pos - log.data.min_offset)
