"""A single send's record built straight from the request's fields (``prepare_fields_record``,
``record.encode_fields``) is the record the ``Message`` path builds (``prepare_record``): the same
bytes, the same placement facts (``_built``), the same refusals; and the delay rewriter's
``acts_on`` is False only for messages it returns unchanged."""
from __future__ import annotations

import random

import pytest

from mqbench.broker.formats.record import Message, encode_properties
from mqbench.broker.formats.record_layout import SYSFLAG_COMPRESSED, SYSFLAG_NEED_UNWRAP, SYSFLAG_TX_COMMIT
from mqbench.broker.store.store import Store
from mqbench.broker.timer.config import DelayConfig
from mqbench.broker.timer.rewrite import delay_rewrite_acts_on, rewrite_for_delay
from mqbench.errors import UserError

CLOCK_MS = 1_700_000_000_000
HOSTS = [("127.0.0.1", 9), ("10.1.2.3", 65535), ("::1", 10911), ("2001:db8::7", 1)]
NAMES = ["KEYS", "TAGS", "UNIQ_KEY", "WAIT", "a", "名前", "x\x03y"]
VALUES = ["", "v", "TagA", "a\x01b", "日本語 ü", "0" * 300]


def _store(root, version, store_host):
    return Store.open(root, version, create=True, raft_mode=True, background_flush=False,
                      store_host=store_host, clock_ms=lambda: CLOCK_MS)


def _properties(rng):
    props = {}
    for _ in range(rng.randrange(5)):
        value = rng.choice(VALUES)
        if value:
            props[rng.choice(NAMES)] = value
    return props


def _fields(rng):
    return dict(topic=rng.choice(["T", "BenchSend", "t" * 127, "u" * 128, "%RETRY%cg", "a-b_c|d"]),
                queue_id=rng.choice([0, 3, 1 << 30]), body=rng.randbytes(rng.choice([1, 128, 1024])),
                properties=_properties(rng), flag=rng.choice([0, 7, -1]),
                sysflag=rng.choice([0, SYSFLAG_COMPRESSED, SYSFLAG_TX_COMMIT]),
                born_timestamp_ms=rng.choice([0, 5, CLOCK_MS - 3]), born_host=rng.choice(HOSTS),
                reconsume_times=rng.choice([0, 2]))


def _both(store, f):
    """(Message path, fields path): each the record or the UserError text, and the placement facts."""
    out = []
    for build in ("message", "fields"):
        try:
            if build == "message":
                msg = Message(topic=f["topic"], body=f["body"], properties=dict(f["properties"]),
                              queue_id=f["queue_id"], flag=f["flag"], sysflag=f["sysflag"],
                              born_timestamp_ms=f["born_timestamp_ms"], born_host=f["born_host"],
                              reconsume_times=f["reconsume_times"])
                record = store.replicated.prepare_record(msg)
            else:
                record = store.replicated.prepare_fields_record(
                    f["topic"], f["queue_id"], f["body"], f["properties"], encode_properties(f["properties"]),
                    flag=f["flag"], sysflag=f["sysflag"], born_timestamp_ms=f["born_timestamp_ms"],
                    born_host=f["born_host"], reconsume_times=f["reconsume_times"])
        except UserError as exc:
            out.append(("refused", str(exc)))
            continue
        out.append((record, store.replicated._built[id(record)][1]))
    return out


@pytest.mark.parametrize("version", ["v5-dledger", "v4-dledger"])
@pytest.mark.parametrize("store_host", [("127.0.0.1", 10911), ("fe80::1", 10911)])
def test_a_record_from_the_fields_is_the_message_paths_record(tmp_path, version, store_host):
    rng = random.Random(f"{version}{store_host}")
    store = _store(tmp_path / "s", version, store_host)
    try:
        refused = 0
        for _ in range(300):
            f = _fields(rng)
            by_message, by_fields = _both(store, f)
            assert by_fields == by_message, f
            refused += by_message[0] == "refused"
        assert 0 < refused < 150          # both kinds were compared (a V1 topic over 127 bytes on v4)
        for f in ({**_fields(rng), "queue_id": -1}, {**_fields(rng), "topic": "bad topic"},
                  {**_fields(rng), "properties": {"k": "v" * 40000}}, {**_fields(rng), "flag": 1 << 31}):
            by_message, by_fields = _both(store, f)
            assert by_fields == by_message and by_message[0] == "refused", f
        by_message, by_fields = _both(store, {**_fields(rng), "topic": "T", "sysflag": SYSFLAG_NEED_UNWRAP})
        assert by_fields == by_message and (by_message[0] == "refused") == version.startswith("v4")
    finally:
        store.close()


@pytest.mark.parametrize("timer_enabled", [True, False])
def test_the_delay_rewriter_changes_nothing_it_says_it_does_not_act_on(timer_enabled):
    from mqbench.broker.formats.properties import (
        PROPERTY_DELAY,
        PROPERTY_MQBENCH_DELAY_SOURCE,
        PROPERTY_TIMER_DELAY_MS,
        PROPERTY_TIMER_DELAY_SEC,
        PROPERTY_TIMER_DELIVER_MS,
    )
    from mqbench.broker.timer.rewrite import DELAY_TOPICS

    rng = random.Random(7)
    keys = ["KEYS", "TAGS", PROPERTY_DELAY, PROPERTY_MQBENCH_DELAY_SOURCE, PROPERTY_TIMER_DELAY_MS,
            PROPERTY_TIMER_DELAY_SEC, PROPERTY_TIMER_DELIVER_MS]
    config = DelayConfig(timer_enabled=timer_enabled)
    acted = 0
    for _ in range(400):
        props = {rng.choice(keys): rng.choice(["3", "5000", str(CLOCK_MS + 9000)]) for _ in range(rng.randrange(3))}
        topic = rng.choice(["T", *DELAY_TOPICS])
        msg = Message(topic=topic, body=b"b", properties=props)
        if delay_rewrite_acts_on(topic, props):
            acted += 1
            continue
        assert rewrite_for_delay(msg, now_ms=CLOCK_MS, config=config) is msg
    assert 0 < acted < 400
