"""``mqbench.hop_trace``: off unless ``MQBENCH_HOP_TRACE`` is set, and ``analyze`` splits a send's
publish latency into its hops from the marks of several processes."""
from __future__ import annotations

import importlib

import mqbench.hop_trace as hop_trace

MS = 1_000_000


def test_off_by_default(monkeypatch):
    monkeypatch.delenv(hop_trace.ENV, raising=False)
    fresh = importlib.reload(hop_trace)
    assert not fresh.ON and fresh.start("x") is False and not fresh.ON


def test_analyze_splits_a_send_into_its_hops(tmp_path):
    t0 = 10_000 * MS        # after the skipped start-up
    client = [("q", "1-2", 7, t0), ("w", "1-2", 7, t0 + 1 * MS), ("a", "1-2", 7, t0 + 30 * MS)]
    leader = [("r", "1-2", 7, t0 + 3 * MS), ("p", "1-2", 7, t0 + 4 * MS), ("P", 5, 5, t0 + 4 * MS),
              ("S", 2, 5, t0 + 6 * MS), ("S", 3, 5, t0 + 6 * MS), ("K", 3, 5, t0 + 16 * MS),
              ("K", 2, 5, t0 + 17 * MS), ("C", 5, 5, t0 + 18 * MS), ("c", "1-2", 7, t0 + 19 * MS),
              ("D", 5, 5, t0 + 20 * MS), ("o", "1-2", 7, t0 + 20 * MS), ("x", "1-2", 7, t0 + 21 * MS)]
    follower = [("R", 1, 5, t0 + 8 * MS), ("F", 5, 5, t0 + 9 * MS), ("T", 1, 5, t0 + 10 * MS)]
    for name, marks in (("producer-1", client), ("broker-2", leader), ("broker-3", follower)):
        (tmp_path / f"{name}.hops").write_text("".join(f"{k} {a} {b} {t}\n" for k, a, b, t in marks))
    (tmp_path / "early-4.hops").write_text(f"q 9-9 1 {t0 - 5_000 * MS}\n")    # sets the clock's start
    rows = {label: (count, mean) for label, count, mean, _p50, _p99 in hop_trace.analyze(str(tmp_path))}
    assert rows["client queue (q->w)"] == (1, 1.0)
    assert rows["to leader: wire, wake-up, loop (w->r)"] == (1, 2.0)
    assert rows["Raft round + apply (p->c)"] == (1, 15.0)
    assert rows["leader answer queued->written (o->x)"] == (1, 1.0)
    assert rows["publish (q->a)"] == (1, 30.0)
    assert rows["[broker-2] entry proposed -> APP sent"] == (1, 2.0)
    assert rows["[broker-2] APP sent -> quorum APP_RESP read"] == (1, 10.0)   # the first of the two
    assert rows["[broker-2] APP_RESP read -> apply start"] == (1, 2.0)
    assert rows["[broker-3] APP read -> APP_RESP sent"] == (1, 2.0)
