"""A replica in its own process, for the SIGKILL tests (run as a script).

    python replicated_proc.py STORE_ROOT SELF_ID 1=127.0.0.1:P1,2=127.0.0.1:P2,... DURABILITY

While it leads (and its term's no-op is applied) it puts messages ``<id>-<n>`` on topic T, queue
n % 2, one at a time, and prints ``ACK <body> <queue id> <queue offset>`` once each is acknowledged,
and every 5th put ``OFF <offset>`` after committing group G's offset of T/0 to ``offset``
(flushed at once, so a parent sees exactly what was acknowledged before a SIGKILL). SIGTERM closes
the group cleanly and exits 0.
"""
from __future__ import annotations

import asyncio
import random
import signal
import sys

from mqbench.errors import MqbenchError
from mqbench.broker.server.replicated import ReplicatedGroup
from mqbench.broker.formats.record import Message


async def main(root: str, self_id: int, peers_text: str, durability: str) -> int:
    peers = {}
    for part in peers_text.split(","):
        node, address = part.split("=")
        host, port = address.rsplit(":", 1)
        peers[int(node)] = (host, int(port))
    group = await ReplicatedGroup.open(root, self_id=self_id, peers=peers, durability=durability,
                                       rng=random.Random(self_id), tick_ms=10, heartbeat_ms=20, election_ms=200)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"READY {self_id}", flush=True)
    n = 0
    while not stop.is_set():
        if not group.leader_ready:
            await asyncio.sleep(0.01)
            continue
        body = f"{self_id}-{n}"
        try:
            result = await group.put(Message(topic="T", body=body.encode(), queue_id=n % 2))
            print(f"ACK {body} {result.queue_id} {result.queue_offset}", flush=True)
            if n % 5 == 4:
                await group.commit_offset("G", "T", 0, n)
                print(f"OFF {n}", flush=True)
        except MqbenchError:
            await asyncio.sleep(0.01)
        n += 1
        await asyncio.sleep(0.002)
    await group.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])))
