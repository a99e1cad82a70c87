"""Memory durability after a kill -9: recovery re-dispatches every record since the store was
last opened (its checkpoint's claims move only with a real fsync: at open, flush, close), and that
is a cost, not a loss: the queues come back equal to the log, every unit pointing at its record.

(A power cut may lose unsynced queue pages; the dispatched offset of the checkpoint is only moved
after they were fsynced, so re-dispatching from there is what keeps the queues whole. Moving it
on a timer without the fsyncs memory mode leaves out would be wrong; the cost grows with the time
since the last open, as the DLedger log check does.)"""
from __future__ import annotations

import subprocess
import sys

import pytest

from mqbench.broker.store.store import Store

CHILD = r"""
import os, signal, sys, time
from mqbench.broker.formats.record import Message
from mqbench.broker.store.store import Store

root, durability, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = Store.open(root, "v5-dledger", create=True, raft_mode=True, background_flush=True)
store.sync_on_timer = durability == "fsync"
log = store.replicated
for r in range(rounds):
    records = [log.prepare_record(Message(topic="T", body=b"m%d-%d" % (r, i), properties={"TAGS": "a"}))
               for i in range(20)]
    placed = log.append_replicated_batch([(1, record, 1) for record in records])
    log.commit(placed[-1][0])
    time.sleep(0.05)
time.sleep(1.6)                                    # housekeeping ran (its period is 1 s)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
@pytest.mark.realproc
@pytest.mark.parametrize("durability", ["memory", "fsync"])
def test_after_a_kill_the_queues_equal_the_log_and_memory_mode_redispatches_all_since_open(tmp_path, durability):
    root = tmp_path / "s"
    done = subprocess.run([sys.executable, "-c", CHILD, str(root), durability, "5"], timeout=60,
                          capture_output=True, text=True)
    assert done.returncode == -9, done.stderr[-2000:]
    with Store.open(root, "v5-dledger", raft_mode=True, background_flush=False) as store:
        assert store.max_offset("T", 0) == 100
        read = store.read_queue("T", 0, 0, 100)
        assert [m.body for m in read.messages] == [b"m%d-%d" % (r, i) for r in range(5) for i in range(20)]
        assert [m.queue_offset for m in read.messages] == list(range(100))
        if durability == "memory":
            assert store.records_redispatched == 100        # everything since the open: the cost
        else:
            assert store.records_redispatched < 100         # the timer's fsyncs moved the claim
