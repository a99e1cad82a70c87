"""A round of plain single sends is placed as one run whose CQ units are gathered per queue at
placement (``ReplicatedCommitLog._place_plain``, ``dispatch.PlainRun``): dispatching it, whole, joined
with the next runs, or split by a commit point inside it, must leave the consume queues, the
queue ends, the watch counters and the grown queues of a reference replica that dispatches the
same records one by one."""
from __future__ import annotations

import random

from mqbench.broker.formats.record import Message
from mqbench.broker.formats.record_layout import SYSFLAG_TX_COMMIT, SYSFLAG_TX_PREPARED
from mqbench.broker.store.dispatch import Dispatcher, PlainRun

from store_files_helpers import queue_files, replica_store

CLOCK_MS = 1_700_000_000_000


def test_plain_runs_dispatch_as_the_records_one_by_one(tmp_path, monkeypatch):
    rng = random.Random(9)
    runs, reference = (replica_store(tmp_path / n, CLOCK_MS, batch_topic="B") for n in ("g", "p"))
    ref_dispatcher = reference.replicated._dispatcher
    # the reference: every record placed with its own DispatchInfo and dispatched alone
    monkeypatch.setattr(reference.replicated, "_place_run", reference.replicated._place_records)
    for name in ("_dispatch_plain", "_dispatch_batched"):
        real = getattr(Dispatcher, name)
        monkeypatch.setattr(Dispatcher, name, lambda self, limit, real=real:
                            False if self is ref_dispatcher else real(self, limit))
    seen = {"runs": 0, "expanded": 0}
    real_runs = Dispatcher._dispatch_runs
    monkeypatch.setattr(Dispatcher, "_dispatch_runs",
                        lambda self, limit: (seen.__setitem__("runs", seen["runs"] + 1), real_runs(self, limit))[1])
    real_appended_run = Dispatcher.appended_run

    def appended_run(self, end, run):
        expand = run.expand

        def counted():
            seen["expanded"] += 1
            return expand()
        real_appended_run(self, end, PlainRun(run.groups, run.first_end, counted))
    monkeypatch.setattr(Dispatcher, "appended_run", appended_run)
    growth = [s.replicated._queues.watch(("T",)) for s in (runs, reference)]
    try:
        index = -1
        for round_no in range(30):
            records = []
            mixed = round_no % 5 == 4          # now and then a round the general path takes
            for _ in range(rng.randrange(1, 40)):
                topic = rng.choice(["T", "T", "U"] + (["B"] if mixed else []))
                sysflag = rng.choice([0] * 8 + ([SYSFLAG_TX_PREPARED, SYSFLAG_TX_COMMIT] if mixed else [0]))
                msg = Message(topic=topic, body=rng.randbytes(rng.choice([1, 50])), queue_id=rng.randrange(4),
                              sysflag=sysflag, properties={"TAGS": rng.choice(["a", "b"])},
                              born_host=("127.0.0.1", 9))
                records.append(runs.replicated.prepare_record(msg))
            placed = runs.replicated.append_replicated_batch([(1, r, 1) for r in records])
            again = reference.replicated.append_replicated_batch([(1, b, 1) for _, b in placed])
            assert [(i, bytes(b)) for i, b in again] == [(i, bytes(b)) for i, b in placed]
            index += len(records)
            if rng.random() < 0.4:
                continue                        # the next commit covers two runs or more: joined
            commit = index - rng.randrange(0, 4)    # a commit may stop inside the run
            for s in (runs, reference):
                s.replicated.commit(commit)
            assert runs.replicated._queues.take_grown() == reference.replicated._queues.take_grown()
        for s in (runs, reference):
            s.replicated.commit(index)
            s.flush()
        assert seen["runs"] > 5 and seen["expanded"] > 2
        assert queue_files(tmp_path / "g") == queue_files(tmp_path / "p") != {}
        assert growth[0].count == growth[1].count > 0
        for topic in ("T", "U", "B"):
            for queue_id in range(4):
                assert runs.max_offset(topic, queue_id) == reference.max_offset(topic, queue_id)
    finally:
        runs.close()
        reference.close()
