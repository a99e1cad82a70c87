"""OffsetMap: runs, consumer-offset translation (against a brute-force model), serialized form."""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.dr.offsets import OffsetMap, QueueKey
from mqbench.errors import CorruptDataError, InvariantViolation

S0, S1 = QueueKey("Orders", "broker-a", 0), QueueKey("Orders", "broker-a", 1)
T0, T1 = QueueKey("Orders", "broker-b", 0), QueueKey("Orders", "broker-b", 1)


def test_contiguous_copies_are_one_run():
    m = OffsetMap()
    for i in range(100):
        m.record(S0, i, T0, i + 7)
    assert json.loads(m.to_json())["pairs"] == [{"source": list(S0), "target": list(T0), "runs": [[0, 7, 100]]}]
    assert m.next_source_offset(S0) == 100 and m.copies() == 100


def test_translate_worked_example():
    # S0 offsets 0..4 landed at T0 10..14; S1 offsets 0..2 interleaved into T0 at 15..17, then S0 5 at 18.
    m = OffsetMap()
    for s in range(5):
        m.record(S0, s, T0, 10 + s)
    for s in range(3):
        m.record(S1, s, T0, 15 + s)
    m.record(S0, 5, T0, 18)
    assert m.translate({S0: 3, S1: 1}) == {T0: 13}  # S0's offset 3 sits at 13
    assert m.translate({S0: 6, S1: 1}) == {T0: 16}  # S0 all consumed; S1's offset 1 sits at 16
    assert m.translate({S0: 5, S1: 3}) == {T0: 18}  # only S0's offset 5 (at 18) is unconsumed
    assert m.translate({S0: 6, S1: 3}) == {T0: 19}  # everything consumed: after the last copy
    assert m.translate({S0: 0}) == {T0: 10}
    assert m.translate({}) == {}
    assert m.translate({S0: 99}) == {T0: 19}


def test_going_backwards_is_an_invariant_violation_but_one_repeat_after_a_crash_is_allowed():
    m = OffsetMap()
    m.record(S0, 0, T0, 0)
    m.record(S0, 1, T0, 1)
    m.record(S0, 1, T0, 2)  # the copy of 1 was made again (the first was not remembered in time)
    assert m.translate({S0: 1}) == {T0: 1}
    with pytest.raises(InvariantViolation):
        m.record(S0, 0, T0, 3)
    with pytest.raises(InvariantViolation):
        m.record(S0, 2, T0, 2)  # target offsets must grow


copies = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(1, 3), st.integers(0, 2)),
                  max_size=60)


def build(ops):
    """Random replication histories: (source queue, target queue, source step, target gap)."""
    m, history = OffsetMap(), []
    next_s, next_t = {}, {}
    for sq, tq, s_step, t_gap in ops:
        source, target = QueueKey("T", "a", sq), QueueKey("T", "b", tq)
        s = next_s.get(source, 0) + s_step - 1
        t = next_t.get(target, 0) + t_gap
        m.record(source, s, target, t)
        history.append((source, s, target, t))
        next_s[source], next_t[target] = s + 1, t + 1
    return m, history


@given(ops=copies, committed=st.dictionaries(st.integers(0, 2), st.integers(0, 12)))
def test_property_translation_equals_brute_force_and_skips_no_unconsumed_copy(ops, committed):
    m, history = build(ops)
    committed = {QueueKey("T", "a", q): c for q, c in committed.items()}
    got = m.translate(committed)
    expected: dict = {}
    for target in {h[2] for h in history}:
        considered = [h for h in history if h[2] == target and h[0] in committed]
        unconsumed = [t for source, s, _t, t in considered if s >= committed[source]]
        if considered:
            expected[target] = min(unconsumed) if unconsumed else max(h[3] for h in considered) + 1
    assert got == expected
    for source, s, target, t in history:
        if source in committed and s >= committed[source]:
            assert t >= got[target]  # an unconsumed message is never skipped


@given(ops=copies, committed=st.dictionaries(st.integers(0, 2), st.integers(0, 12)))
def test_property_json_round_trip_keeps_every_answer(ops, committed):
    m, _ = build(ops)
    again = OffsetMap.from_json(m.to_json())
    committed = {QueueKey("T", "a", q): c for q, c in committed.items()}
    assert again.translate(committed) == m.translate(committed)
    assert again.to_json() == m.to_json()
    for source in m.sources():
        assert again.next_source_offset(source) == m.next_source_offset(source)


@pytest.mark.parametrize("data, message", [
    (b"{", "not JSON"), (b"[]", "schema"), (b'{"schema":"x"}', "schema"),
    (b'{"schema":"mqbench.dr-offset-map/1"}', "'pairs' must be a list"),
    (b'{"schema":"mqbench.dr-offset-map/1","pairs":[1]}', r"pairs\[0\] must be an object"),
    (b'{"schema":"mqbench.dr-offset-map/1","pairs":[{"source":["t","b"],"target":["t","b",0],"runs":[]}]}',
     r"pairs\[0\].source"),
    (b'{"schema":"mqbench.dr-offset-map/1","pairs":[{"source":["t","b",0],"target":["t","b",0],"runs":[[0,0,0]]}]}',
     "count>=1"),
    (b'{"schema":"mqbench.dr-offset-map/1","pairs":[{"source":["t","b",0],"target":["t","b",0],'
     b'"runs":[[0,5,3],[1,9,1]]}]}', r"runs\[1\]"),
])
def test_corrupt_maps_name_the_field(data, message):
    with pytest.raises(CorruptDataError, match=message):
        OffsetMap.from_json(data, where="state.json")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=20))
def test_fuzz_any_json_either_loads_or_is_a_corrupt_data_error(doc):
    wrapped = {"schema": "mqbench.dr-offset-map/1", "pairs": doc}
    for candidate in (doc, wrapped, {"schema": "mqbench.dr-offset-map/1", "pairs": [{"source": ["t", "b", 0],
                                                                                    "target": ["t", "b", 1],
                                                                                    "runs": doc}]}):
        try:
            OffsetMap.from_json(json.dumps(candidate).encode())
        except CorruptDataError:
            pass


def test_trailing_bytes_after_a_saved_map_are_corruption_not_ignored():
    m = OffsetMap()
    m.record(S0, 0, T0, 0)
    assert OffsetMap.from_json(m.to_json()).copies() == 1
    with pytest.raises(CorruptDataError, match="not JSON"):
        OffsetMap.from_json(m.to_json() + b"}x", where="state.json")
    with pytest.raises(CorruptDataError, match="not JSON"):
        OffsetMap.from_json(m.to_json()[:-3], where="state.json")  # a torn write
