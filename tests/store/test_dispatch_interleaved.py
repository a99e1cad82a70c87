"""Single sends spread over a topic's queues (and a batch's records) are dispatched one
``put_flat`` per queue (``Dispatcher._dispatch_plain``): the consume queues hold the same bytes as dispatching
them record by record, whatever the mix (queues, topics, a BatchCQ topic, transaction records,
commits that stop mid-way)."""
from __future__ import annotations

import random

from mqbench.broker.formats.record import Message
from mqbench.broker.formats.record_layout import SYSFLAG_TX_COMMIT, SYSFLAG_TX_PREPARED
from mqbench.broker.store.dispatch import BCQ_DIR, CQ_DIR, Dispatcher

from store_files_helpers import queue_files, replica_store

CLOCK_MS = 1_700_000_000_000


def test_interleaved_single_sends_give_the_per_record_queues(tmp_path, monkeypatch):
    rng = random.Random(5)
    grouped, per_record = (replica_store(tmp_path / n, CLOCK_MS, batch_topic="B") for n in ("g", "p"))
    calls = {"grouped": 0}
    real = Dispatcher._dispatch_plain

    def counted(self, limit):
        if self is per_record.replicated._dispatcher:
            return False                      # the reference: record by record
        done = real(self, limit)
        calls["grouped"] += done
        return done

    monkeypatch.setattr(Dispatcher, "_dispatch_plain", counted)
    monkeypatch.setattr(per_record.replicated, "_place_run", per_record.replicated._place_records)   # no PlainRun
    try:
        index = -1
        for _ in range(12):
            records = []
            for _ in range(rng.randrange(1, 40)):
                topic = rng.choice(["T", "T", "T", "U", "B"])
                sysflag = rng.choice([0] * 8 + [SYSFLAG_TX_PREPARED, SYSFLAG_TX_COMMIT])
                msg = Message(topic=topic, body=rng.randbytes(20), queue_id=rng.randrange(4), sysflag=sysflag,
                              properties={"TAGS": rng.choice(["a", "b"])}, born_host=("127.0.0.1", 9))
                records.append(grouped.replicated.prepare_record(msg))
            placed = grouped.replicated.append_replicated_batch([(1, r, 1) for r in records])
            per_record.replicated.append_replicated_batch([(1, b, 1) for _, b in placed])
            index += len(records)
            commit = index - rng.randrange(0, 3)          # a commit may stop short of the end
            for s in (grouped, per_record):
                s.replicated.commit(commit)
        for s in (grouped, per_record):
            s.replicated.commit(index)
            s.flush()
        assert calls["grouped"] > 5
        assert queue_files(tmp_path / "g", (CQ_DIR, BCQ_DIR)) == queue_files(tmp_path / "p", (CQ_DIR, BCQ_DIR)) != {}
        for topic in ("T", "U", "B"):
            for queue_id in range(4):
                assert grouped.max_offset(topic, queue_id) == per_record.max_offset(topic, queue_id)
    finally:
        grouped.close()
        per_record.close()


def test_cq_units_of_a_run_are_the_units_joined():
    from mqbench.broker.formats.queues import encode_cq_unit, encode_cq_units
    from mqbench.errors import UserError
    import pytest
    rng = random.Random(7)
    for n in (1, 2, 3, 64, 65, 200):
        units = [(rng.randrange(0, 2**63), rng.randrange(-2**31, 2**31), rng.randrange(-2**63, 2**63))
                 for _ in range(n)]
        flat = [field for unit in units for field in unit]
        assert encode_cq_units(flat) == b"".join(encode_cq_unit(*u) for u in units)
    assert encode_cq_units([]) == b""
    with pytest.raises(UserError):
        encode_cq_units([1, 2**31, 0])
