"""``mqbench run``: start (or reach) a cluster, replay a workload open loop, measure, write a result.

Modules, each named for what it holds:

* ``matrix``: ``--matrix``/``--codec``/``--batch``/``--delay`` parsed into cells (``CellSettings``);
* ``schedule``: intended send times and the messages that go at them (sans-I/O), split over workers;
* ``stamps``: the timing properties a driver puts on each message and the consumer reads back;
* ``producer_driver`` / ``consumer_driver``: the asyncio bodies of the worker processes;
* ``workers``: worker processes (spawn), their pipe protocol and the parent's side of it;
* ``probes``: machine figures (broker CPU seconds, bytes on disk, replication bytes);
* ``payload``: the measured compression ratio of the workload's payloads under a cell's codec;
* ``progress``: the one-line progress display (terminal only);
* ``orchestrator``: one cell and a whole run, from settings to the ``result.json`` document.
"""
