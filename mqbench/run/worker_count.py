"""How many producer worker processes ``mqbench run`` starts by default (``--producers auto``).

Rule (#15: "as many processes as there are cores to spare"): the cores this machine has, minus
one per broker process the cells' layout runs here (the system under test: each is one
single-threaded process, busy at capacity), minus the consumer workers; what is left are the
cores to spare, and that many producer workers run, at least 1 and at most ``PRODUCERS_MAX``.
With none to spare the one producer worker shares the brokers' cores: then ``spare_cpus`` is 0
(or negative) and ``note`` says so, which the run prints and records (``workers.producers_basis``
in the result) instead of pretending the load generator runs beside the brokers. Against a
``--target`` cluster the brokers are not counted (they run elsewhere); on Ray the placement
decides, and ``auto`` keeps 1 producer per run as before (``--producers N`` sets it).
Pure: the caller passes the counts.
"""
from __future__ import annotations

from dataclasses import dataclass

PRODUCERS_MAX = 16


@dataclass(frozen=True)
class ProducerCount:
    producers: int
    cpus: int
    broker_processes: int | None      # on this machine; None: not counted (a target, Ray)
    consumers: int
    spare_cpus: int | None
    note: str | None

    def as_dict(self) -> dict:
        return {"rule": "auto: cpus - broker processes here - consumer workers, at least 1",
                "cpus": self.cpus, "broker_processes": self.broker_processes, "consumers": self.consumers,
                "spare_cpus": self.spare_cpus, "producers": self.producers, "note": self.note}


def default_producers(cpus: int, broker_processes: int | None, consumers: int, *, ray: bool = False) -> ProducerCount:
    """The ``auto`` producer count (module doc) for ``cpus`` cores, the layout's ``broker_processes``
    on this machine (None for a target cluster) and ``consumers`` consumer workers."""
    cpus = max(1, int(cpus))
    if ray:
        return ProducerCount(1, cpus, None, consumers, None, "on Ray: 1 producer worker unless --producers says")
    spare = cpus - (broker_processes or 0) - consumers
    producers = min(PRODUCERS_MAX, max(1, spare))
    note = None
    if spare < 1:
        brokers = "" if broker_processes is None else f"{broker_processes} broker process(es), "
        note = (f"no core to spare for the load generator ({cpus} CPUs, {brokers}{consumers} consumer "
                f"worker(s)): 1 producer worker shares the brokers' cores, so its CPU "
                f"(producer_cpu_us_per_msg) is taken from them")
    return ProducerCount(producers, cpus, broker_processes, consumers, spare, note)
