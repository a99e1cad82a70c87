"""The consumer driver's duplicate detection in bounded memory (``consumer_driver.RecentIds``)."""
from hypothesis import given, strategies as st

from mqbench.run.consumer_driver import RecentIds


def test_a_duplicate_within_the_window_is_found_and_memory_stays_bounded():
    ids = RecentIds(window=4)
    assert [ids.seen_before(x) for x in "abcd"] == [False] * 4
    assert ids.seen_before("a") and ids.seen_before("d")          # within the window
    for n in range(1000):
        assert not ids.seen_before(f"m{n}")
        assert len(ids) <= 8
    assert not ids.seen_before("a")                                # long gone: counted as new


@given(st.lists(st.integers(0, 30), max_size=300), st.integers(1, 8))
def test_recent_ids_agree_with_an_unbounded_set_for_every_duplicate_within_the_window(stream, window):
    ids = RecentIds(window=window)
    last_seen: dict[int, int] = {}        # id -> its position when last received
    for position, n in enumerate(stream):
        found = ids.seen_before(str(n))
        if n in last_seen and position - last_seen[n] <= window:
            assert found                   # guaranteed: at most ``window`` ids came in between
        if found:
            assert n in last_seen          # never a false duplicate
        last_seen[n] = position
        assert len(ids) <= 2 * window

