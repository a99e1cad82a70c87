"""Simulated systems under test with a known capacity, for the harness tests.

``FluidBroker`` answers one check interval at a time (for the max-rate search): a broker that
acknowledges at most ``capacity * dt`` messages per interval (optionally with seeded per-interval
noise), producers that keep at most ``window_msgs`` unacknowledged messages in flight (so overload
turns into publish backlog, as a backpressured client does), and consumers with their own capacity.

``simulate_run`` drives the real ``Pacer`` and ``RunMetrics`` message by message through a
single-server FIFO broker with random service times, a sender that is sometimes late, consumers
with network delay, and delayed messages released on a 1 s timer wheel that rounds down (so some
arrive early, as RocketMQ's does): realistic data for the result and report tests.
"""
from __future__ import annotations

import math
import random

from mqbench.harness.maxrate import HOLD, Observation
from mqbench.harness.metrics import RunMetrics
from mqbench.harness.pacer import Pacer


class FluidBroker:
    def __init__(self, capacity_per_s: float, *, noise_share: float = 0.0, rng: random.Random | None = None,
                 window_msgs: int = 1000, consumer_capacity_per_s: float | None = None,
                 base_latency_ms: float = 2.0, interval_ms: int = 1000):
        self.capacity_per_s = capacity_per_s
        self.noise_share = noise_share
        self.rng = rng or random.Random(0)
        self.window_msgs = window_msgs
        self.consumer_capacity_per_s = consumer_capacity_per_s or capacity_per_s * 1.5
        self.base_latency_ms = base_latency_ms
        self.interval_ms = interval_ms
        self.in_flight = 0
        self.publish_backlog = 0
        self.consume_backlog = 0
        self._carry = 0.0
        self.rates_offered: list[float] = []

    def run(self, rate_per_s: float) -> Observation:
        self.rates_offered.append(rate_per_s)
        dt = self.interval_ms / 1000.0
        wanted = rate_per_s * dt + self._carry
        intended = int(wanted)
        self._carry = wanted - intended
        capacity = self.capacity_per_s
        if self.noise_share:
            # Interference (GC, disk stalls, neighbours) only ever takes capacity away: the
            # configured capacity is a true ceiling the search must never report above.
            capacity *= max(0.0, 1.0 - abs(self.rng.gauss(0.0, self.noise_share)))
        offered = intended + self.publish_backlog
        served = min(self.in_flight + offered, int(capacity * dt))
        in_flight = self.in_flight + offered - served
        sent = offered
        if in_flight > self.window_msgs:
            sent -= in_flight - self.window_msgs
            in_flight = self.window_msgs
        self.publish_backlog = offered - sent
        self.in_flight = in_flight
        consumable = self.consume_backlog + served
        consumed = min(consumable, int(self.consumer_capacity_per_s * dt))
        self.consume_backlog = consumable - consumed
        p99_ms = self.base_latency_ms + (in_flight / capacity * 1000.0 if capacity else 1e9) if served else None
        return Observation(interval_ms=self.interval_ms, intended=intended, published=int(served), publish_errors=0,
                           publish_backlog_msgs=int(self.publish_backlog),
                           consume_backlog_msgs=int(self.consume_backlog + in_flight),
                           publish_latency_ms_p99=p99_ms)


def run_search(search, system: FluidBroker):
    while not search.finished:
        search.observe(system.run(search.rate_per_s))
    return search


def simulate_run(*, rate, seed: int, duration_ms: int, warmup_ms: int, service_us_mean: float,
                 delayed_share: float = 0.1, size_bytes_mean: int = 600, window_ms: int = 10_000,
                 start_ns: int = 5_000_000_000, late_sender_every: int = 5000, workers: int = 1) -> list[RunMetrics]:
    """Drive the pacer and metrics over a simulated broker; one ``RunMetrics`` per worker.

    Messages are dealt round-robin to ``workers`` recorders (as separate producer processes would
    record them) so callers can exercise merging.
    """
    rng = random.Random(seed)
    end_ns = start_ns + (warmup_ms + duration_ms) * 1_000_000
    pacer = Pacer(rate, start_ns, end_ns=end_ns)
    parts = [RunMetrics(start_ns, duration_ms=duration_ms, warmup_ms=warmup_ms, window_ms=window_ms)
             for _ in range(workers)]
    sender_free_ns = start_ns
    broker_free_ns = start_ns
    count = 0
    while pacer.peek_ns() is not None:
        intended = pacer.take()
        metrics = parts[count % workers]
        count += 1
        # The sender is busy now and then (a GC pause, a full socket buffer): everything behind
        # it goes late, which the open-loop schedule records as publish delay.
        cost_ns = 20_000 + int(rng.expovariate(1 / 15_000))
        if count % late_sender_every == 0:
            cost_ns += rng.randint(50, 400) * 1_000_000
        sent = max(intended, sender_free_ns)
        sender_free_ns = sent + cost_ns
        metrics.record_send(intended, sent)
        size = max(40, int(rng.lognormvariate(0, 0.5) * size_bytes_mean))
        arrive = sent + 150_000 + int(rng.expovariate(1 / 50_000))
        service_ns = int(rng.lognormvariate(0, 0.6) * service_us_mean * 1000)
        start_service = max(arrive, broker_free_ns)
        broker_free_ns = start_service + service_ns
        if rng.random() < 0.0005:
            metrics.record_publish_error(broker_free_ns + 100_000)
            continue
        acked = broker_free_ns + 150_000 + int(rng.expovariate(1 / 50_000))
        metrics.record_ack(sent, acked, size)
        if rng.random() < delayed_share:
            delay_ms = rng.choice((1000, 5000, 10_000))
            deliver_at = sent + delay_ms * 1_000_000
            # A 1 s timer wheel rounds the due time down to the second: up to 1 s early.
            released = deliver_at - (deliver_at - start_ns) % 1_000_000_000
            received = max(released, broker_free_ns) + 300_000 + int(rng.expovariate(1 / 2_000_000))
            metrics.record_consume(sent, received, size, deliver_at_ns=deliver_at)
        else:
            received = broker_free_ns + 400_000 + int(rng.expovariate(1 / 300_000))
            metrics.record_consume(sent, received, size)
    return parts


class StallingBroker:
    """A ``FluidBroker`` on a busy machine: each check has ``stall_share`` chance of a stall that
    takes ``stall_depth`` of the interval's capacity away (a checkpoint write, a GC pause, a noisy
    neighbour), on top of the fluid broker's own seeded noise. The stall's backlog and latency follow
    from the fluid model; capacity stays a true ceiling."""

    def __init__(self, capacity_per_s: float, rng: random.Random, *, stall_share: float = 0.15,
                 stall_depth: float = 0.6, noise_share: float = 0.03, interval_ms: int = 3000,
                 backlog_noise_s: float = 0.0):
        self.system = FluidBroker(capacity_per_s, noise_share=noise_share, rng=rng, interval_ms=interval_ms,
                                  window_msgs=1000)
        self.rng = rng
        self.capacity_per_s = capacity_per_s
        self.stall_share = stall_share
        self.stall_depth = stall_depth
        self.rates_offered = self.system.rates_offered
        self.backlog_noise_s = backlog_noise_s

    def run(self, rate_per_s: float) -> Observation:
        stalled = self.rng.random() < self.stall_share
        self.system.capacity_per_s = self.capacity_per_s * ((1 - self.stall_depth) if stalled else 1.0)
        try:
            obs = self.system.run(rate_per_s)
        finally:
            self.system.capacity_per_s = self.capacity_per_s
        if self.backlog_noise_s:
            # Backlogs come from worker reports up to half a second old: deliveries owed are counted
            # from the producers' acks, consumed from the consumers' reports, each at its own time.
            noise = int(self.rng.uniform(0, self.backlog_noise_s) * rate_per_s)
            obs = Observation(obs.interval_ms, obs.intended, obs.published, obs.publish_errors,
                              obs.publish_backlog_msgs, obs.consume_backlog_msgs + noise,
                              obs.publish_latency_ms_p99, obs.publish_in_flight)
        return obs


class NoisyEdgeBroker:
    """A ``FluidBroker`` whose checks near its capacity alternate held/unheld, as raft3 on a loaded
    two-core machine does: under ``capacity * (1 - edge_share)`` a check keeps up; between that and
    ``capacity`` it fails with a chance rising linearly from 0 to 1 (a failing check's broker
    carries only ``1 - fail_depth`` of the offered rate, so its backlog grows); above ``capacity``
    every check fails. Seeded."""

    def __init__(self, capacity_per_s: float, rng: random.Random, *, edge_share: float = 0.2,
                 fail_depth: float = 0.08, interval_ms: int = 2000):
        self.system = FluidBroker(capacity_per_s, rng=rng, interval_ms=interval_ms, window_msgs=1000)
        self.rng = rng
        self.capacity_per_s = capacity_per_s
        self.edge_share = edge_share
        self.fail_depth = fail_depth
        self.rates_offered = self.system.rates_offered

    def fail_chance(self, rate_per_s: float) -> float:
        low = self.capacity_per_s * (1 - self.edge_share)
        return min(1.0, max(0.0, (rate_per_s - low) / (self.capacity_per_s - low)))

    def run(self, rate_per_s: float) -> Observation:
        failing = rate_per_s > 0 and self.rng.random() < self.fail_chance(rate_per_s)
        self.system.capacity_per_s = min(self.capacity_per_s, rate_per_s * (1 - self.fail_depth)) if failing \
            else self.capacity_per_s * 1.5 if rate_per_s <= self.capacity_per_s else self.capacity_per_s
        try:
            return self.system.run(rate_per_s)
        finally:
            self.system.capacity_per_s = self.capacity_per_s


def run_search_within(search, system, budget_ms: int, *, check_ms: int = 2000, settle_ms: int = 500,
                      drain_check_ms: int = 1000):
    """``run_search`` with ``mqbench run``'s time budget (``--duration``): a judged check costs
    ``settle_ms + check_ms``, a drain check ``drain_check_ms``; when the budget is spent the search
    is given up (``give_up``), as the orchestrator does. Returns the milliseconds used."""
    used = 0
    while not search.finished:
        if used >= budget_ms:
            search.give_up()
            break
        used += drain_check_ms if search.rate_per_s == 0 else settle_ms + check_ms
        search.observe(system.run(search.rate_per_s), checks_left=max(0, budget_ms - used) // (settle_ms + check_ms))
    return used


class SaggingBroker:
    """A ``FluidBroker`` that carries a burst but sags under sustained load, as `single` did once the
    load generator got lean: the first judged check after a rest (a drain, or the start) is served
    at up to ``burst_share`` of the capacity, every further check in a row at the capacity (with
    the fluid broker's seeded noise). So a ramp or a repeat check passes rates that no hold keeps up.
    Seeded; capacity stays a true ceiling for a hold."""

    def __init__(self, capacity_per_s: float, rng: random.Random, *, burst_share: float = 1.3,
                 noise_share: float = 0.03, interval_ms: int = 2000):
        self.system = FluidBroker(capacity_per_s, noise_share=noise_share, rng=rng, interval_ms=interval_ms,
                                  window_msgs=1000)
        self.capacity_per_s = capacity_per_s
        self.burst_share = burst_share
        self.rates_offered = self.system.rates_offered
        self._rested = True

    def run(self, rate_per_s: float) -> Observation:
        if rate_per_s == 0:
            self._rested = True
            return self.system.run(0)
        burst = self._rested
        self._rested = False
        self.system.capacity_per_s = self.capacity_per_s * (self.burst_share if burst else 1.0)
        try:
            return self.system.run(rate_per_s)
        finally:
            self.system.capacity_per_s = self.capacity_per_s


class TwoLevelBroker:
    """A ``FluidBroker`` on a machine with two speeds, as `single` on this 2-core VM: its capacity is
    ``capacity_per_s`` or ``slow_share`` of it (broker CPU µs/msg 54 or 75: 0.72), each level lasting
    an exponential time of mean ``mean_level_s`` (a judged check takes 2.5 s, a drain 1 s), with the
    fluid broker's seeded noise. The same code, the machine's level: the search can hold either."""

    def __init__(self, capacity_per_s: float, rng: random.Random, *, slow_share: float = 0.72,
                 mean_level_s: float = 5.0, noise_share: float = 0.03, interval_ms: int = 2000):
        self.system = FluidBroker(capacity_per_s, noise_share=noise_share, rng=rng, interval_ms=interval_ms,
                                  window_msgs=1000)
        self.rng = rng
        self.capacity_per_s = capacity_per_s
        self.slow_share = slow_share
        self.mean_level_s = mean_level_s
        self.slow = rng.random() < 0.5
        self.rates_offered = self.system.rates_offered

    def run(self, rate_per_s: float) -> Observation:
        elapsed_s = 2.5 if rate_per_s else 1.0
        if self.rng.random() < 1 - math.exp(-elapsed_s / self.mean_level_s):
            self.slow = not self.slow
        self.system.capacity_per_s = self.capacity_per_s * (self.slow_share if self.slow else 1.0)
        try:
            return self.system.run(rate_per_s)
        finally:
            self.system.capacity_per_s = self.capacity_per_s


class SlowPhaseBroker:
    """A ``FluidBroker`` on this 2-core VM as the quiet real searches saw it (stop 17, ``single`` and
    raft3 at 180 s): long phases at two speeds, a slow phase lasting ``slow_s`` (30-60 s) at a depth
    drawn per phase from ``slow_share`` (the failing checks absorbed 55-72 % of the fast speed), a
    fast phase ``fast_s``; a phase may change in the middle of a check (which then absorbs a mix of
    both speeds); on top of that, a check in ``dip_share`` loses ``dip_depth`` of its capacity (a
    stall shorter than a check), and the fluid broker's seeded noise. A judged check takes
    ``check_s`` of the machine's time, a drain ``drain_s``. Seeded; the capacity of each moment is a
    true ceiling."""

    def __init__(self, capacity_per_s: float, rng: random.Random, *, slow_share: tuple = (0.62, 0.70),
                 slow_s: tuple = (30.0, 60.0), fast_s: tuple = (20.0, 60.0), dip_share: float = 0.05,
                 dip_depth: float = 0.2, noise_share: float = 0.03, interval_ms: int = 2000,
                 check_s: float = 2.5, drain_s: float = 1.0):
        self.system = FluidBroker(capacity_per_s, noise_share=noise_share, rng=rng, interval_ms=interval_ms,
                                  window_msgs=1000)
        self.rng = rng
        self.capacity_per_s = capacity_per_s
        self.slow_share, self.slow_s, self.fast_s = slow_share, slow_s, fast_s
        self.dip_share, self.dip_depth = dip_share, dip_depth
        self.check_s, self.drain_s = check_s, drain_s
        self.rates_offered = self.system.rates_offered
        self.slow = rng.random() < 0.5
        self.level = self._draw_level()
        self.phase_left_s = rng.uniform(0.0, self._draw_length())  # the run starts inside a phase

    @property
    def slowest_share(self) -> float:
        return self.slow_share[0]

    def _draw_level(self) -> float:
        return self.rng.uniform(*self.slow_share) if self.slow else 1.0

    def _draw_length(self) -> float:
        return self.rng.uniform(*(self.slow_s if self.slow else self.fast_s))

    def _mean_level(self, elapsed_s: float) -> float:
        """The machine's speed averaged over the next ``elapsed_s`` (phases that change inside it)."""
        total, left = 0.0, elapsed_s
        while left > 0:
            step = min(left, self.phase_left_s)
            total += step * self.level
            left -= step
            self.phase_left_s -= step
            if self.phase_left_s <= 0:
                self.slow = not self.slow
                self.level = self._draw_level()
                self.phase_left_s = self._draw_length()
        return total / elapsed_s

    def run(self, rate_per_s: float) -> Observation:
        level = self._mean_level(self.check_s if rate_per_s else self.drain_s)
        if rate_per_s and self.rng.random() < self.dip_share:
            level *= 1.0 - self.dip_depth
        self.system.capacity_per_s = self.capacity_per_s * level
        try:
            return self.system.run(rate_per_s)
        finally:
            self.system.capacity_per_s = self.capacity_per_s


class HiccupAt:
    """A fluid broker of ``capacity`` whose checks number ``at`` are stalls: the check acknowledges
    ``share`` of its capacity, so its backlog grows and what it 'absorbed' reads low."""

    def __init__(self, capacity, at, share=0.3):
        self.system = FluidBroker(capacity)
        self.capacity = capacity
        self.rates_offered = self.system.rates_offered
        self.at, self.share = set(at), share

    def run(self, rate_per_s):
        stalled = len(self.rates_offered) + 1 in self.at
        self.system.capacity_per_s = self.capacity * (self.share if stalled else 1.0)
        try:
            return self.system.run(rate_per_s)
        finally:
            self.system.capacity_per_s = self.capacity


class SlowsAfter:
    """A fluid broker of ``capacity`` whose machine turns slow for good after ``after`` checks (drains
    included): from then on it carries ``share`` of the capacity (a slow phase longer than the run)."""

    def __init__(self, capacity, after, share=0.7):
        self.system = FluidBroker(capacity)
        self.capacity = capacity
        self.rates_offered = self.system.rates_offered
        self.after, self.share = after, share

    def run(self, rate_per_s):
        slow = len(self.rates_offered) >= self.after
        self.system.capacity_per_s = self.capacity * (self.share if slow else 1.0)
        return self.system.run(rate_per_s)


def start_in_hold(search, rate, bad):
    """Put ``search`` in a hold at ``rate`` with ``bad`` the first unheld rate (a search met mid-way)."""
    search.state, search.rate_per_s, search.good_per_s, search.bad_per_s = HOLD, rate, rate, bad
    search._start_hold(0)
