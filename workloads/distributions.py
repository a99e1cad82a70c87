"""Value distributions a profile names in TOML: processing times, arbitrary delays, key popularity.

A distribution is an inline TOML table whose ``distribution`` key picks the kind; the unit is the
one in the enclosing key's name (``processing_ms = {...}`` draws milliseconds)::

    { distribution = "constant", value = 5 }
    { distribution = "uniform", min = 60000, max = 3600000 }
    { distribution = "exponential", mean = 20 }
    { distribution = "lognormal", median = 4, p99 = 80 }      # long right tail, as service times have
    { distribution = "choice", values = [60000, 300000], weights = [3, 1] }

``parse_distribution(table, where)`` validates and returns a ``Distribution`` or raises
``UserError`` naming ``where`` (file and key). ``Distribution.sample(rng)`` draws one value from the
``random.Random`` passed in and never returns a negative number. Pure: no I/O, no global state.
"""
from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass

from mqbench.errors import UserError

_Z99 = 2.3263478740408408  # standard normal quantile at 0.99


def weighted_picker(population, weights):
    """``lambda rng: rng.choices(population, weights=weights)[0]`` with the running sum of the
    weights computed once: the same draw (``Random.choices`` bisects the running sum at
    ``rng.random() * total``, one ``random()`` per pick) at a fraction of the cost, for a load
    generator that picks per message. ValueError at once for what ``choices`` refuses when called
    (no items, weights of another length, a total that is not positive and finite)."""
    population = list(population)
    cum_weights = list(itertools.accumulate(weights))
    if not population or len(cum_weights) != len(population):
        raise ValueError("a weighted pick needs one weight per item and at least one item")
    total, hi = cum_weights[-1] + 0.0, len(cum_weights) - 1
    if not (total > 0.0 and math.isfinite(total)):
        raise ValueError("the weights of a pick must add up to a positive finite total")
    return lambda rng: population[bisect.bisect(cum_weights, rng.random() * total, 0, hi)]

#: kind -> (required keys, optional keys)
_KEYS = {
    "constant": ({"value"}, set()),
    "uniform": ({"min", "max"}, set()),
    "exponential": ({"mean"}, set()),
    "lognormal": ({"median", "p99"}, set()),
    "choice": ({"values"}, {"weights"}),
}


@dataclass(frozen=True)
class Distribution:
    """A validated distribution of non-negative numbers."""

    kind: str
    params: tuple[tuple[str, object], ...]  # sorted (key, value) pairs, hashable

    def param(self, key: str):
        return dict(self.params)[key]

    def sample(self, rng: random.Random) -> float:
        p = dict(self.params)
        if self.kind == "constant":
            return float(p["value"])
        if self.kind == "uniform":
            return rng.uniform(p["min"], p["max"])
        if self.kind == "exponential":
            return rng.expovariate(1.0 / p["mean"]) if p["mean"] > 0 else 0.0
        if self.kind == "lognormal":
            sigma = math.log(p["p99"] / p["median"]) / _Z99
            return rng.lognormvariate(math.log(p["median"]), sigma)
        # choice
        weights = p.get("weights")
        return float(rng.choices(p["values"], weights=weights)[0])

    def mean(self) -> float:
        """The distribution's mean (used for summaries, not for drawing)."""
        p = dict(self.params)
        if self.kind == "constant":
            return float(p["value"])
        if self.kind == "uniform":
            return (p["min"] + p["max"]) / 2
        if self.kind == "exponential":
            return float(p["mean"])
        if self.kind == "lognormal":
            sigma = math.log(p["p99"] / p["median"]) / _Z99
            return p["median"] * math.exp(sigma * sigma / 2)
        weights = p.get("weights") or [1] * len(p["values"])
        return sum(v * w for v, w in zip(p["values"], weights)) / sum(weights)

    def max(self) -> float | None:
        """The largest value it can draw, or None when unbounded."""
        p = dict(self.params)
        return {"constant": lambda: p["value"], "uniform": lambda: p["max"],
                "choice": lambda: max(p["values"])}.get(self.kind, lambda: None)()

    def describe(self) -> str:
        p = {key: _fmt(value) if _is_number(value) else value for key, value in self.params}
        if self.kind == "constant":
            return p["value"]
        if self.kind == "uniform":
            return f"uniform {p['min']}..{p['max']}"
        if self.kind == "exponential":
            return f"exponential mean {p['mean']}"
        if self.kind == "lognormal":
            return f"lognormal median {p['median']} p99 {p['p99']}"
        return "one of " + ", ".join(_fmt(v) for v in p["values"])


def parse_distribution(table, where: str) -> Distribution:
    """Validate a TOML inline table into a ``Distribution``; ``where`` names the file and key."""

    def fail(message: str):
        raise UserError(f"{where}: {message}" if where else message)

    if isinstance(table, (int, float)) and not isinstance(table, bool):
        table = {"distribution": "constant", "value": table}
    if not isinstance(table, dict):
        fail("must be a number or a table like { distribution = \"lognormal\", median = 4, p99 = 80 }")
    kind = table.get("distribution")
    if not isinstance(kind, str) or kind not in _KEYS:
        fail(f"distribution must be one of {', '.join(_KEYS)} (got {kind!r})")
    required, optional = _KEYS[kind]
    given = set(table) - {"distribution"}
    if required - given:
        fail(f"{kind} distribution needs {', '.join(sorted(required - given))}")
    if given - required - optional:
        fail(f"unknown key(s) {', '.join(sorted(given - required - optional))} for a {kind} distribution")
    params = {key: table[key] for key in given}
    if kind == "choice":
        values, weights = params["values"], params.get("weights")
        if (not isinstance(values, list) or not values
                or not all(_is_number(v) and 0 <= v < math.inf for v in values)):
            fail("values must be a non-empty list of non-negative, finite numbers")
        if weights is not None:
            if (not isinstance(weights, list) or len(weights) != len(values)
                    or not all(_is_number(w) and 0 <= w < math.inf for w in weights) or sum(weights) <= 0):
                fail("weights must list one non-negative number per value, not all zero")
            params["weights"] = tuple(weights)
        params["values"] = tuple(values)
    else:
        for key in given:
            if not _is_number(params[key]) or params[key] < 0 or math.isinf(params[key]):
                fail(f"{key} must be a non-negative number (got {params[key]!r})")
        if kind == "uniform" and params["min"] > params["max"]:
            fail(f"min {params['min']} is above max {params['max']}")
        if kind == "lognormal" and not 0 < params["median"] <= params["p99"]:
            fail("lognormal needs 0 < median <= p99")
    return Distribution(kind, tuple(sorted(params.items())))


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.3g}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def zipf_index(rng: random.Random, n: int, s: float) -> int:
    """An index in [0, n) drawn with Zipf popularity (rank^-s), by inverting the continuous CDF.

    Index 0 is the most popular. One draw from ``rng`` per call.
    """
    u = rng.random()
    if n <= 1:
        return 0
    if abs(s - 1.0) < 1e-9:
        return min(n - 1, int(n ** u) - 1)
    a = 1.0 - s
    value = ((n ** a - 1.0) * u + 1.0) ** (1.0 / a)
    return min(n - 1, max(0, int(value) - 1))
