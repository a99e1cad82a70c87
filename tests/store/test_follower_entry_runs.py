"""A follower takes a round's record entries a run at a time (``record_check.place_fields_run``, in C
where built) and must place exactly what the per-entry path placed: the same log bytes, answers,
queues (tags codes of delayed records included) and, for a bad record, the same error with the
entries before it written. The per-entry path is kept as the reference here by turning the run
call off (it then takes nothing, and every entry goes through the loop as before)."""
from __future__ import annotations

import random

import pytest

from mqbench.broker.formats.record import Message, encode_message
from mqbench.broker.formats.topics import SCHEDULE_TOPIC
from mqbench.broker.store import replicated_log
from mqbench.broker.store.store import Store
from mqbench.errors import CorruptDataError


def _store(root):
    return Store.open(root, "v5-dledger", create=True, raft_mode=True, background_flush=False,
                      store_host=("127.0.0.1", 10911), clock_ms=lambda: 1_700_000_000_123)


def _rounds(rng: random.Random) -> list[list[tuple[int, bytes, int]]]:
    term, rounds = 1, []
    for _ in range(6):
        items = []
        for i in range(rng.randrange(1, 30)):
            kind = rng.random()
            if kind < 0.05:
                term += 1
            if kind < 0.1:
                items.append((term, b'{"meta": %d}' % i, 1))          # not a record: placed on its own
                continue
            delayed = kind < 0.35
            msg = Message(topic=SCHEDULE_TOPIC if delayed else rng.choice(["A", "B"]), body=rng.randbytes(20),
                          properties={"TAGS": rng.choice(["x", "ünï"]), **({"DELAY": str(rng.randrange(1, 19))}
                                                                           if delayed else {})},
                          queue_id=rng.randrange(3), store_timestamp_ms=1_700_000_000_000 + i)
            items.append((term, encode_message(msg), 1))
        rounds.append(items)
    return rounds


def _place(root, rounds, bad: bytes | None, damaged: bool):
    store = _store(root)
    try:
        answers, error = [], None
        for items in rounds:
            answers.append(store.replicated.append_replicated_batch(items))
            store.replicated.commit(store.dledger.last_index)
        if bad is not None:       # records of the last term, then ``bad`` (of a later term when whole)
            term = max(t for items in rounds for t, _, _ in items)
            good = [encode_message(Message("A", b"r%d" % i, properties={"TAGS": "t"})) for i in range(3)]
            later = term if damaged else term + 1
            try:
                answers.append(store.replicated.append_replicated_batch(
                    [(term, good[0], 1), (term, good[1], 1), (later, bad, 1), (later, good[2], 1)]))
            except CorruptDataError as exc:
                error = str(exc)
        end = store.dledger.end_pos
        queues = {}      # every queue's units (physical offset, size, tags code)
        for t in ("A", "B", SCHEDULE_TOPIC):
            for q in range(18):
                cq = store.queues.find(t, q)
                queues[(t, q)] = cq.read_units(0, cq.max_offset) if cq is not None else []
        return store.dledger.data.read(0, end), answers, queues, store.dledger.last_index, error
    finally:
        store.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_a_follower_places_runs_as_the_per_entry_path_did(tmp_path, monkeypatch, seed):
    rng = random.Random(seed)
    rounds = _rounds(rng)
    bad = bytearray(encode_message(Message("A", b"x", properties={"TAGS": "t"})))
    damaged = seed == 1
    if damaged:
        bad[88] ^= 1             # the body's first byte: BODYCRC no longer matches
    fast = _place(tmp_path / "fast", rounds, bytes(bad), damaged)
    monkeypatch.setattr(replicated_log, "place_fields_run", lambda items, start, built=None: ([], None, start))
    slow = _place(tmp_path / "slow", rounds, bytes(bad), damaged)
    assert fast[0] == slow[0] and len(fast[0]) > 0
    assert [[(i, bytes(b)) for i, b in a] for a in fast[1]] == [[(i, bytes(b)) for i, b in a] for a in slow[1]]
    assert fast[2:] == slow[2:]
    assert any(fast[2].values()) and (fast[4] is not None) == damaged
