"""The sans-I/O link model: delays, order, loss as retransmission delay, cut and heal, bounds."""
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.dr.netem import LinkSettings, Pipe
from mqbench.dr.netem.link import LinkModel
from mqbench.errors import UserError


def test_fixed_latency_delivers_each_chunk_exactly_that_late():
    pipe = Pipe(LinkSettings(latency_ms=30), random.Random(1))
    assert pipe.push(100, b"ab") == 130
    assert pipe.push(110, b"cd") == 140
    assert pipe.pop_due(129) == []
    assert pipe.next_due_ms() == 130
    assert pipe.pop_due(130) == [b"ab"]
    assert pipe.pop_due(200) == [b"cd"]
    assert pipe.bytes_in == pipe.bytes_out == 4 and pipe.buffered_bytes == 0


def test_jitter_never_reorders_the_stream():
    pipe = Pipe(LinkSettings(latency_ms=10, jitter_ms=10), random.Random(7))
    dues = [pipe.push(t, bytes([t % 256])) for t in range(200)]
    assert dues == sorted(dues)
    assert min(d - t for t, d in enumerate(dues)) >= 0
    assert pipe.pop_due(10_000) == [bytes([t % 256]) for t in range(200)]


def test_same_seed_same_delays_other_seed_other_delays():
    settings = LinkSettings(latency_ms=5, jitter_ms=4, loss=0.2, retransmit_ms=50)

    def run(seed):
        model = LinkModel(settings, random.Random(seed))
        return [model.delay_ms(3000) for _ in range(50)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_loss_is_a_retransmission_delay_with_exponential_backoff():
    class AlwaysLoseTwice(random.Random):
        def __init__(self):
            super().__init__(0)
            self.calls = 0

        def random(self):  # lost, lost, delivered: two retransmissions of the single segment
            self.calls += 1
            return 0.0 if self.calls <= 2 else 0.99

    model = LinkModel(LinkSettings(latency_ms=10, loss=0.5, retransmit_ms=200), AlwaysLoseTwice())
    assert model.delay_ms(100) == 10 + 200 + 400
    assert model.retransmissions == 2


def test_loss_rate_is_about_the_setting():
    model = LinkModel(LinkSettings(loss=0.1, retransmit_ms=100), random.Random(5))
    late = sum(model.delay_ms(1000) > 0 for _ in range(5000))
    assert 350 < late < 650  # P(late) = 0.1 per one-segment chunk


def test_cut_holds_everything_and_heal_releases_it_in_order_one_delay_later():
    pipe = Pipe(LinkSettings(latency_ms=20), random.Random(1))
    pipe.push(0, b"in-flight")
    pipe.cut(5)
    pipe.push(10, b"during")
    assert pipe.next_due_ms() is None and pipe.pop_due(10_000) == []
    pipe.heal(1000)
    assert pipe.next_due_ms() == 1020
    assert pipe.pop_due(1019) == []
    assert pipe.pop_due(1020) == [b"in-flight", b"during"]
    pipe.push(1021, b"after")
    assert pipe.next_due_ms() == 1041


def test_settings_cut_starts_cut_and_set_settings_heals():
    pipe = Pipe(LinkSettings(cut=True), random.Random(1))
    assert pipe.is_cut and not pipe.passthrough()
    pipe.push(0, b"x")
    assert pipe.pop_due(100) == []
    pipe.set_settings(200, LinkSettings(latency_ms=1))
    assert not pipe.is_cut and pipe.settings.latency_ms == 1
    assert pipe.pop_due(200) == [b"x"]  # its delay was drawn (0 ms) when it was read


def test_passthrough_only_when_transparent_and_empty():
    pipe = Pipe(LinkSettings(), random.Random(1))
    assert pipe.passthrough()
    pipe.cut(0)
    assert not pipe.passthrough()
    pipe.heal(0)
    pipe.push(0, b"q")
    assert not pipe.passthrough()  # something queued: order first
    pipe.pop_due(0)
    assert pipe.passthrough()


def test_capacity_is_reported_not_silently_exceeded():
    pipe = Pipe(LinkSettings(cut=True), random.Random(1), capacity_bytes=10)
    pipe.push(0, b"12345")
    assert pipe.has_room()
    pipe.push(0, b"67890")
    assert not pipe.has_room()


@pytest.mark.parametrize("doc, word", [
    ({"latency_ms": -1}, "latency_ms"), ({"latency_ms": 1.5}, "latency_ms"), ({"loss": 1.0}, "loss"),
    ({"loss": float("nan")}, "loss"), ({"cut": "yes"}, "cut"), ({"delay": 3}, "unknown key"),
    ({"segment_bytes": 1}, "segment_bytes"), ({"jitter_ms": True}, "jitter_ms"),
])
def test_bad_settings_are_user_errors_naming_the_key(doc, word):
    with pytest.raises(UserError, match=word):
        LinkSettings.from_dict(doc, where="links[0]")


def test_settings_round_trip_through_dict():
    s = LinkSettings(latency_ms=3, jitter_ms=1, loss=0.01, cut=True, retransmit_ms=50, segment_bytes=1000)
    assert LinkSettings.from_dict(s.to_dict()) == s


@given(settings=st.builds(LinkSettings, latency_ms=st.integers(0, 50), jitter_ms=st.integers(0, 50),
                          loss=st.floats(0, 0.5), retransmit_ms=st.integers(0, 100)),
       ops=st.lists(st.tuples(st.sampled_from(["push", "pop", "cut", "heal"]), st.integers(0, 30),
                              st.binary(max_size=5000)), max_size=60),
       seed=st.integers(0, 2**32))
def test_property_stream_is_conserved_in_order_and_never_early(settings, ops, seed):
    pipe = Pipe(settings, random.Random(seed))
    now, sent, got = 0, [], []
    for op, step, data in ops:
        now += step
        if op == "push":
            pipe.push(now, data)
            sent.append(data)
        elif op == "pop":
            due = pipe.next_due_ms()
            out = pipe.pop_due(now)
            if out:
                assert due is not None and due <= now
            got += out
        elif op == "cut":
            pipe.cut(now)
        else:
            pipe.heal(now)
        assert pipe.buffered_bytes == sum(map(len, sent)) - sum(map(len, got))
    pipe.heal(now)
    got += pipe.pop_due(now + 10**9)
    assert got == sent
    assert pipe.bytes_in == pipe.bytes_out
