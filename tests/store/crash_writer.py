"""Child process of the SIGKILL tests: appends with flush_policy=sync and prints each acknowledged
offset. Usage: python crash_writer.py ROOT VERSION SEED

Every line ``ACK T <n> B <m>`` is printed after the append returned, i.e. after the fdatasync that
covers it: topic T queue 0 holds messages 0..n-1 and (v5 versions) BatchCQ topic B queue 0 holds
0..m-1. Message i's body is ``body(i)``, so the parent can check every byte.
"""
import hashlib
import random
import sys

from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.store.store import Store

SEGMENT_BYTES = 64 * 1024


def body(topic: str, i: int) -> bytes:
    head = f"{topic}-{i:08d}-".encode()
    pad = hashlib.sha256(head).digest() * 8
    return head + pad[:(i * 37) % 250]


def open_store(root: str, version: str, **kw) -> Store:
    return Store.open(root, version, create=True, commitlog_segment_bytes=SEGMENT_BYTES, cq_segment_bytes=2000,
                      bcq_segment_bytes=4600, dledger_index_segment_bytes=3200, **kw)


def main() -> None:
    root, version, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    store = open_store(root, version, flush_policy="sync")
    batch = version.startswith("v5")
    if batch and store.topic_config("B") is None:
        store.create_topic("B", attributes={"queue.type": "BatchCQ"})
    n_t = store.max_offset("T", 0)
    n_b = store.max_offset("B", 0)
    print("READY", flush=True)
    while True:
        k = rng.randrange(1, 6)
        r = store.append_batch("T", 0, [BatchItem(body("T", n_t + i)) for i in range(k)], consolidate=False)
        if r.queue_offset != n_t:
            raise SystemExit(f"queue offset {r.queue_offset}, expected {n_t}")
        n_t += k
        if batch and rng.random() < 0.5:
            k = rng.randrange(1, 6)
            r = store.append_batch("B", 0, [BatchItem(body("B", n_b + i)) for i in range(k)], consolidate=True)
            if r.queue_offset != n_b:
                raise SystemExit(f"B queue offset {r.queue_offset}, expected {n_b}")
            n_b += k
        print(f"ACK T {n_t} B {n_b}", flush=True)


if __name__ == "__main__":
    main()
