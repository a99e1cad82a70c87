"""Distributions: validation errors name the key, draws stay in range and follow the parameters."""
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.errors import UserError
from mqbench.workloads.distributions import parse_distribution, zipf_index


@pytest.mark.parametrize("table,message", [
    ({"distribution": "gauss"}, "must be one of"),
    ({"distribution": "uniform", "min": 5}, "needs max"),
    ({"distribution": "uniform", "min": 5, "max": 1}, "above max"),
    ({"distribution": "lognormal", "median": 10, "p99": 5}, "median <= p99"),
    ({"distribution": "constant", "value": -1}, "non-negative"),
    ({"distribution": "constant", "value": 1, "extra": 2}, "unknown key"),
    ({"distribution": "choice", "values": []}, "non-empty"),
    ({"distribution": "choice", "values": [1, float("inf")]}, "finite"),
    ({"distribution": "choice", "values": [1, 2], "weights": [1]}, "one non-negative number per value"),
    ("fast", "must be a number or a table"),
])
def test_bad_tables_are_user_errors_naming_where(table, message):
    with pytest.raises(UserError, match=message) as info:
        parse_distribution(table, "f.toml: consumers.g.processing_ms")
    assert str(info.value).startswith("f.toml: consumers.g.processing_ms: ")


def test_a_bare_number_is_a_constant():
    assert parse_distribution(7, "x").sample(random.Random(1)) == 7.0


def test_lognormal_matches_its_median_and_p99():
    dist = parse_distribution({"distribution": "lognormal", "median": 4, "p99": 80}, "x")
    rng = random.Random(5)
    draws = sorted(dist.sample(rng) for _ in range(20_000))
    assert 3.7 < draws[10_000] < 4.3
    assert 65 < draws[19_800] < 98
    assert dist.mean() == pytest.approx(statistics.fmean(draws), rel=0.1)


def test_uniform_and_choice_stay_in_range():
    rng = random.Random(1)
    uniform = parse_distribution({"distribution": "uniform", "min": 10, "max": 20}, "x")
    assert all(10 <= uniform.sample(rng) <= 20 for _ in range(1000))
    choice = parse_distribution({"distribution": "choice", "values": [1, 5], "weights": [0, 1]}, "x")
    assert {choice.sample(rng) for _ in range(100)} == {5.0}
    assert uniform.max() == 20 and choice.max() == 5


def test_zipf_prefers_low_ranks():
    rng = random.Random(9)
    draws = [zipf_index(rng, 1000, 1.1) for _ in range(20_000)]
    assert all(0 <= d < 1000 for d in draws)
    assert draws.count(0) > 10 * max(1, draws.count(500))
    assert zipf_index(rng, 1, 1.1) == 0


_values = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True), st.text(max_size=5),
                    st.lists(st.integers(-3, 10), max_size=4))


@given(st.dictionaries(st.sampled_from(["distribution", "value", "min", "max", "mean", "median", "p99", "values",
                                        "weights", "x"]),
                       st.one_of(_values, st.sampled_from(["constant", "uniform", "exponential", "lognormal",
                                                           "choice"])), max_size=5))
def test_any_table_parses_or_is_a_user_error(table):
    try:
        dist = parse_distribution(table, "x")
    except UserError:
        return
    value = dist.sample(random.Random(0))
    assert value >= 0


def test_weighted_picker_draws_what_random_choices_draws():
    """The load generator's per-message pick: the same item as ``rng.choices(population, weights)[0]``
    for the same rng state, one ``random()`` each; refused up front where ``choices`` refuses."""
    import random as _random

    import pytest as _pytest

    from mqbench.workloads.distributions import weighted_picker

    for population, weights in ((["a", "b", "c"], [0.78, 0.22, 0.0]), ([16], [1]), (list(range(7)), [5, 0, 1, 2.5, 9, 1, 3])):
        pick = weighted_picker(population, weights)
        fast, plain = _random.Random(9), _random.Random(9)
        for _ in range(2000):
            assert pick(fast) == plain.choices(population, weights=weights)[0]
        assert fast.random() == plain.random()
    for population, weights in (([], []), (["a"], [1, 2]), (["a", "b"], [0, 0]), (["a"], [float("inf")])):
        with _pytest.raises(ValueError):
            weighted_picker(population, weights)
