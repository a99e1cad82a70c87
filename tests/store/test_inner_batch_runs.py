"""BatchCQ a round at a time: consecutive inner-batch records of one term are placed as one run
(``ReplicatedCommitLog._place_run``: one data write, one index write) and dispatched as one run of
BCQ units per queue (``Dispatcher._dispatch_batched``, ``BatchConsumeQueue.put_flat``), and must
leave exactly the log, the BCQ files and the reads of a reference replica that places each entry
alone through the decoding path."""
import random

import pytest

from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.queues import BcqUnit
from mqbench.broker.store import replicated_log
from mqbench.broker.store.consume_queue import BatchConsumeQueue
from mqbench.errors import InvariantViolation

from store_files_helpers import replica_store

CLOCK_MS = 1_700_000_000_123


def _items(rng, n):
    return [BatchItem(rng.randbytes(rng.choice([0, 5, 200])), {"TAGS": rng.choice(["a", "b"])} if rng.random() < 0.5
                      else {}, 0) for _ in range(n)]


def _files(root, sub):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / sub).rglob("*")) if p.is_file()}


def test_inner_batches_of_one_round_are_one_run_and_match_the_per_entry_decoding_path(tmp_path, monkeypatch):
    rng = random.Random(21)
    names = ("l", "f", "r")
    stores = leader, follower, reference = [replica_store(tmp_path / n, CLOCK_MS) for n in names]
    real_restamp = replicated_log.restamp_inner_batch
    try:
        for s in stores:
            s.create_topic("B", attributes={"queue.type": "BatchCQ"})
            s.create_topic("C", attributes={"queue.type": "BatchCQ"})
        rounds = []
        for term, shape in ((1, [("B", 0, 64), ("B", 1, 3), ("B", 0, 7), ("C", 0, 1)]),
                            (1, [("B", 0, 1)]),
                            (2, [("C", 0, 5), ("B", 1, 64), ("B", 1, 2)])):
            records = []
            for topic, queue_id, n in shape:
                [(record, count)] = leader.replicated.prepare_batch_records(
                    topic, queue_id, _items(rng, n), consolidate=True, properties={"KEYS": "k"},
                    born_timestamp_ms=5, born_host=("10.0.0.1", 9))
                assert count == n
                records.append(record)
            rounds.append((term, records))
        # the second entry of the last round is not promised by the fast restamp: the run ends
        # before it, it takes the decoding path, and the run goes on after it
        odd = rounds[2][1][1]
        monkeypatch.setattr(replicated_log, "restamp_inner_batch",
                            lambda record, offset: None if bytes(record) == bytes(odd) else real_restamp(record, offset))
        writes = []
        data = leader.dledger.data
        real_write = data.write
        monkeypatch.setattr(data, "write", lambda at, buf: (writes.append(at), real_write(at, buf))[1])
        stored_rounds = []
        for (term, records), runs in zip(rounds, (1, 1, 3)):
            before = len(writes)
            placed = leader.replicated.append_replicated_batch([(term, r, 1) for r in records])
            # one buffer per run (the odd entry: a run before it, its own write, a run after it)
            assert len(writes) - before == runs
            again = follower.replicated.append_replicated_batch([(term, b, 1) for _, b in placed])
            assert [bytes(b) for _, b in again] == [bytes(b) for _, b in placed]
            stored_rounds.append(placed)
        monkeypatch.setattr(replicated_log, "restamp_inner_batch", lambda record, offset: None)
        for term, records in rounds:       # the reference: one entry a call, the decoding path
            for r in records:
                reference.replicated.append_replicated_batch([(term, r, 1)])
        end = leader.dledger.end_pos
        assert leader.dledger.data.read(0, end) == follower.dledger.data.read(0, end) \
            == reference.dledger.data.read(0, end) and reference.dledger.end_pos == end
        last = stored_rounds[-1][-1][0]
        for s in stores:
            s.replicated.commit(last)
        expected = {("B", 0): 72, ("B", 1): 69, ("C", 0): 6}
        for (topic, queue_id), count in expected.items():
            got = [[(m.queue_offset, m.body) for m in s.read_queue(topic, queue_id, 0, max_messages=200).messages]
                   for s in stores]
            assert got[0] == got[1] == got[2] and [o for o, _ in got[0]] == list(range(count))
    finally:
        for s in stores:
            s.close()
    bcq = [_files(tmp_path / n, "batchconsumequeue") for n in names]
    assert bcq[0] == bcq[1] == bcq[2] and len(bcq[0]) == 3


def test_bcq_put_flat_writes_the_units_put_one_by_one(tmp_path):
    rng = random.Random(5)
    units, base = [], 0
    for _ in range(40):
        n = rng.randrange(1, 70)
        units.append(BcqUnit(rng.randrange(1 << 40), rng.randrange(1, 1 << 20), rng.randrange(-(1 << 40), 1 << 40),
                             rng.randrange(1 << 42), base, n))
        base += n
    flat = [f for u in units for f in (u.physical_offset, u.size, u.tags_code, u.store_timestamp_ms,
                                       u.base_offset, u.batch_size)]
    a, b = BatchConsumeQueue(tmp_path / "a", 46 * 7), BatchConsumeQueue(tmp_path / "b", 46 * 7)  # 7 units a file
    a.put_flat(flat[:6 * 3])
    a.put_flat(flat[6 * 1:6 * 25])             # again over written units (skipped), then past the end
    a.put_flat(flat[6 * 25:])
    a.put_flat(flat[6 * 39:])                  # a re-dispatch of the last one: nothing
    for u in units:
        b.put(u)
    assert a.count == b.count == 40 and a.max_offset == b.max_offset == base
    with pytest.raises(InvariantViolation):    # a gap after the end is refused, as put refuses it
        a.put_flat([1, 1, 0, 0, base + 1, 1])
    a.close()
    b.close()
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and len(names) > 5
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)
