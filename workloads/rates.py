"""Send rate over time and the arrival times it implies.

A profile's ``[rate]`` table describes the aggregate send rate of all its producers as a function of
time since the start of the run:

* ``constant``: ``base_msgs_per_s`` all the time;
* ``diurnal``: a day curve with mean ``base_msgs_per_s`` over a period of ``period_s`` (86400 for a
  real day; shorter to squeeze a day into a benchmark): half-cosines rising from the trough at
  ``trough_at_s`` (default: half a period after the peak) to the peak at ``peak_at_s`` and falling
  back, the trough at ``trough_ratio`` times the peak (traffic climbs all day to an evening peak
  and drops fast at night: peak and trough need not be 12 hours apart);
* ``step``: ``steps = [[at_s, multiplier], ...]``: the base rate times the multiplier of the last
  step whose ``at_s`` has passed (1.0 before the first);
* ``burst``: the base rate with bursts (below).

Bursts overlay any shape when ``burst_factor`` is set (and are required by ``burst``): the rate is
multiplied by ``burst_factor`` for ``burst_length_ms`` every ``burst_every_ms``, the first one
starting at ``burst_first_ms`` (default: one period in). Flash sales and reconnect storms look
like this.

``arrivals`` picks how messages are spread at a given rate: ``poisson`` (independent senders:
exponential gaps, a non-homogeneous Poisson process drawn by thinning) or ``paced`` (evenly spaced,
1/rate apart). ``iter_arrivals_us(shape, rng)`` yields integer microsecond offsets, non-decreasing,
lazily and forever; it draws only from the ``rng`` passed in. Pure: no clock, no I/O.
"""
from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass
from typing import Iterator

SHAPES = ("constant", "diurnal", "step", "burst")
DIURNAL_SEGMENTS = 96  # thinning envelope pieces per diurnal period (15 minutes of a day)
ARRIVALS = ("poisson", "paced")


@dataclass(frozen=True)
class RateShape:
    """A validated rate shape (see the module docstring for the meaning of each field)."""

    base_msgs_per_s: float
    shape: str = "constant"
    arrivals: str = "poisson"
    period_s: float = 86400.0
    peak_at_s: float = 0.0
    trough_at_s: float | None = None  # None: half a period after the peak (a plain cosine)
    trough_ratio: float = 1.0
    steps: tuple[tuple[float, float], ...] = ()
    burst_factor: float = 1.0
    burst_length_ms: int = 0
    burst_every_ms: int = 0
    burst_first_ms: int = 0

    def rate_at(self, t_ms: float) -> float:
        """The intended send rate (msgs/s) at ``t_ms`` since the start."""
        rate = self.base_msgs_per_s * self._multiplier(t_ms)
        if self.burst_factor != 1.0 and self.burst_every_ms > 0:
            since_first_ms = t_ms - self.burst_first_ms
            if since_first_ms >= 0 and since_first_ms % self.burst_every_ms < self.burst_length_ms:
                rate *= self.burst_factor
        return rate

    def _multiplier(self, t_ms: float) -> float:
        if self.shape == "diurnal":
            # Two half-cosines: rising from the trough to the peak, falling back to the next trough.
            # Each half averages to the midpoint, so the mean is 1 wherever the trough lies.
            amplitude = (1.0 - self.trough_ratio) / (1.0 + self.trough_ratio)
            period_s = self.period_s
            trough_at_s = self.trough_at_s if self.trough_at_s is not None else self.peak_at_s + period_s / 2
            rising_s = (self.peak_at_s - trough_at_s) % period_s
            since_trough_s = (t_ms / 1000.0 - trough_at_s) % period_s
            if since_trough_s < rising_s:
                up = (1.0 - math.cos(math.pi * since_trough_s / rising_s)) / 2.0
            else:
                up = (1.0 + math.cos(math.pi * (since_trough_s - rising_s) / (period_s - rising_s))) / 2.0
            return 1.0 - amplitude + 2.0 * amplitude * up
        if self.shape == "step" and self.steps:
            index = bisect.bisect_right([at_s for at_s, _ in self.steps], t_ms / 1000.0) - 1
            return self.steps[index][1] if index >= 0 else 1.0
        return 1.0

    def envelope(self, t_ms: float) -> tuple[float, float]:
        """``(bound, until_ms)``: ``rate_at`` stays at or below ``bound`` from ``t_ms`` until ``until_ms`` (> t_ms).

        Tight where it matters for thinning: exact for steps and bursts, and for a diurnal curve the
        maximum over the current 1/96th of the period (the half-cosines are monotone between trough
        and peak, so that is an end point unless the peak lies inside).
        """
        until_ms = math.inf
        multiplier = 1.0
        if self.shape == "diurnal":
            segment_ms = self.period_s * 1000.0 / DIURNAL_SEGMENTS
            start_ms = math.floor(t_ms / segment_ms) * segment_ms
            until_ms = start_ms + segment_ms
            if until_ms <= t_ms:  # float rounding at a segment edge
                until_ms = t_ms + segment_ms
            peak_ms = self.peak_at_s * 1000.0
            if (peak_ms - start_ms) % (self.period_s * 1000.0) <= segment_ms:
                multiplier = self._multiplier(peak_ms)
            else:
                multiplier = max(self._multiplier(start_ms), self._multiplier(until_ms))
            multiplier *= 1.0 + 1e-9
        elif self.shape == "step" and self.steps:
            times_s = [at_s for at_s, _ in self.steps]
            index = bisect.bisect_right(times_s, t_ms / 1000.0)
            multiplier = self.steps[index - 1][1] if index > 0 else 1.0
            if index < len(times_s):
                until_ms = times_s[index] * 1000.0
        if self.burst_factor != 1.0 and self.burst_every_ms > 0:
            if t_ms < self.burst_first_ms:
                until_ms = min(until_ms, self.burst_first_ms)
            else:
                cycle_start_ms = self.burst_first_ms + (t_ms - self.burst_first_ms) // self.burst_every_ms \
                    * self.burst_every_ms
                if t_ms - cycle_start_ms < self.burst_length_ms:
                    multiplier *= self.burst_factor
                    until_ms = min(until_ms, cycle_start_ms + self.burst_length_ms)
                else:
                    until_ms = min(until_ms, cycle_start_ms + self.burst_every_ms)
            if until_ms <= t_ms:  # float rounding at a window edge
                until_ms = math.nextafter(t_ms, math.inf)
        return self.base_msgs_per_s * multiplier, until_ms

    def rate_max(self) -> float:
        """An upper bound of ``rate_at`` over all time (exact for these shapes)."""
        if self.shape == "diurnal":
            amplitude = (1.0 - self.trough_ratio) / (1.0 + self.trough_ratio)
            top = 1.0 + amplitude
        elif self.shape == "step" and self.steps:
            top = max([1.0] + [m for _, m in self.steps])
        else:
            top = 1.0
        return self.base_msgs_per_s * top * max(1.0, self.burst_factor if self.burst_every_ms > 0 else 1.0)

    def horizon_ms(self) -> int:
        """A span that shows the whole shape once: a period, the steps and a burst cycle."""
        spans = [60_000]
        if self.shape == "diurnal":
            spans.append(int(self.period_s * 1000))
        if self.shape == "step" and self.steps:
            spans.append(int(self.steps[-1][0] * 1000 * 1.25) + 1000)
        if self.burst_every_ms > 0:
            spans.append(self.burst_first_ms + self.burst_every_ms)
        return max(spans)

    def summary(self, horizon_ms: int | None = None, points: int = 20_000) -> dict[str, float]:
        """min/mean/max of the rate over ``horizon_ms`` (default ``horizon_ms()``), on a fine grid."""
        horizon_ms = horizon_ms or self.horizon_ms()
        step_ms = horizon_ms / points
        rates = [self.rate_at(i * step_ms) for i in range(points)]
        return {"rate_msgs_per_s_min": min(rates), "rate_msgs_per_s_mean": sum(rates) / points,
                "rate_msgs_per_s_max": max(rates), "horizon_ms": horizon_ms}

    def timeline(self, horizon_ms: int | None = None, slices: int = 24, points_per_slice: int = 600) -> list[dict]:
        """The horizon cut into ``slices``: each slice's start and its mean and max rate (fine grid)."""
        horizon_ms = horizon_ms or self.horizon_ms()
        width_ms = horizon_ms / slices
        out = []
        for index in range(slices):
            start_ms = index * width_ms
            rates = [self.rate_at(start_ms + width_ms * k / points_per_slice) for k in range(points_per_slice)]
            out.append({"start_ms": int(start_ms), "rate_msgs_per_s_mean": sum(rates) / len(rates),
                        "rate_msgs_per_s_max": max(rates)})
        return out

    def describe(self) -> str:
        text = f"{self.base_msgs_per_s:g} msgs/s {self.shape}"
        if self.shape == "diurnal":
            text += f" (trough {self.trough_ratio:g}x peak, period {self.period_s:g} s)"
        if self.burst_every_ms > 0 and self.burst_factor != 1.0:
            text += (f", bursts x{self.burst_factor:g} for {self.burst_length_ms / 1000:g} s "
                     f"every {self.burst_every_ms / 1000:g} s")
        return text


def iter_arrivals_us(shape: RateShape, rng: random.Random, shape_start_ms: int = 0) -> Iterator[int]:
    """Intended send offsets in integer microseconds from 0, non-decreasing, endless.

    ``shape_start_ms`` is where on the shape's time axis offset 0 lies (start a diurnal run at its
    evening peak with ``peak_at_s * 1000``). ``poisson``: thinning (Lewis-Shedler) under a piecewise
    constant envelope (``RateShape.envelope``): candidate gaps are exponential at the envelope's
    bound, a candidate that would cross the end of the piece is dropped and drawing restarts there
    (exact, the exponential being memoryless), and a candidate at ``t`` is kept with probability
    ``rate_at(t) / bound``. The kept times are a Poisson process with the shape's rate, and the cost
    per message stays small however far apart the bursts, steps and trough are. ``paced``: the next
    message is 1/rate(t) after the last.
    """
    t_ms = float(shape_start_ms)
    start_ms = t_ms
    if shape.arrivals == "paced":
        while True:
            t_ms += 1000.0 / shape.rate_at(t_ms)
            yield int((t_ms - start_ms) * 1000.0)
    while True:
        bound, until_ms = shape.envelope(t_ms)
        candidate_ms = t_ms + rng.expovariate(bound) * 1000.0
        if candidate_ms >= until_ms:
            t_ms = until_ms
            continue
        t_ms = candidate_ms
        if rng.random() * bound <= shape.rate_at(t_ms):
            yield int((t_ms - start_ms) * 1000.0)
