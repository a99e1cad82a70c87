"""Replicas in real processes: SIGKILL the leader; every acknowledged put and offset survives."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from mqbench.broker.formats.record import decode_message
from mqbench.broker.store.store import Store

PROC = Path(__file__).with_name("replicated_proc.py")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Replica:
    def __init__(self, node_id: int, proc: asyncio.subprocess.Process):
        self.node_id = node_id
        self.proc = proc
        self.acks: list[tuple[str, int, int]] = []
        self.offsets: list[int] = []
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                return
            parts = line.decode().split()
            if parts[0] == "ACK":
                self.acks.append((parts[1], int(parts[2]), int(parts[3])))
            elif parts[0] == "OFF":
                self.offsets.append(int(parts[1]))


async def wait_for(predicate, timeout_s: float) -> None:
    async def loop():
        while not predicate():
            await asyncio.sleep(0.02)
    await asyncio.wait_for(loop(), timeout_s)


@pytest.mark.realproc
@pytest.mark.parametrize("durability", ["memory", "fsync"])
def test_sigkill_of_the_leader_loses_no_acknowledged_put(tmp_path, durability):
    async def main():
        ids = (1, 2, 3)
        ports = free_ports(3)
        peers = ",".join(f"{i}=127.0.0.1:{p}" for i, p in zip(ids, ports))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        replicas = {}
        for i in ids:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(PROC), str(tmp_path / f"n{i - 1}"), str(i), peers, durability,
                stdout=asyncio.subprocess.PIPE, env=env)
            replicas[i] = Replica(i, proc)
        try:
            await wait_for(lambda: any(len(r.acks) >= 30 and r.offsets for r in replicas.values()), 30)
            first = next(r for r in replicas.values() if len(r.acks) >= 30)
            first.proc.send_signal(signal.SIGKILL)
            await first.proc.wait()
            await first.reader
            survivors = [r for r in replicas.values() if r is not first]
            await wait_for(lambda: any(len(r.acks) >= 20 for r in survivors), 30)
            for r in survivors:
                r.proc.send_signal(signal.SIGTERM)
            for r in survivors:
                assert await asyncio.wait_for(r.proc.wait(), 20) == 0
                await r.reader
        finally:
            for r in replicas.values():
                if r.proc.returncode is None:
                    r.proc.kill()
                    await r.proc.wait()
        acked = [a for r in replicas.values() for a in r.acks]
        own = {i: list(r.acks) for i, r in replicas.items()}
        offsets = {i: list(r.offsets) for i, r in replicas.items()}
        return [r.node_id for r in survivors], first.node_id, own, acked, offsets

    survivors, killed, own, acked, offsets = asyncio.run(asyncio.wait_for(main(), 90))
    assert own[killed] and any(own[i] for i in survivors)      # leaders before and after the kill acked puts
    for node_id in survivors:
        store = Store.open(tmp_path / f"n{node_id - 1}", "v5-dledger", raft_mode=True, background_flush=False)
        try:
            # every acknowledged put is in the log of both survivors, with the acknowledged offsets
            logged = {}
            for _, record, _ in store.log.scan(store.log.min_offset):
                m, _ = decode_message(record)
                logged[m.body.decode()] = (m.queue_id, m.queue_offset)
            for body, queue_id, queue_offset in acked:
                assert logged.get(body) == (queue_id, queue_offset), body
            if own[node_id]:
                # a later leader applied what the killed one acked and what it acked itself:
                # readable, and the group's offset never rewound
                readable = {}
                for queue_id in (0, 1):
                    for m in store.read_queue("T", queue_id, 0, max_messages=100_000).messages:
                        readable[m.body.decode()] = (queue_id, m.queue_offset)
                assert all(readable.get(body) == (q, o) for body, q, o in own[killed] + own[node_id])
                assert store.query_offset("G", "T", 0) >= max(offsets[killed] + offsets[node_id])
        finally:
            store.close()
    # the killed replica's store recovers (abort marker left behind by the SIGKILL)
    store = Store.open(tmp_path / f"n{killed - 1}", "v5-dledger", raft_mode=True, background_flush=False)
    try:
        assert store.recovered_abnormally
    finally:
        store.close()
