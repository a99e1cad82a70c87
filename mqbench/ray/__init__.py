"""Ray as the engine for runs beyond one machine (optional: ``pip install 'mqbench[ray]'``).

* ``clock``: the node clock offset estimator (pure; NTP-style, min round trip) and the e2e
  uncertainty of a worker placement;
* ``agents``: the Ray actor that runs on a node: driver workers (the same ``run.workers`` process),
  broker host processes, clock samples, CPU and network counters;
* ``hosts``: a layout's hosts on nodes (named actors, node addresses) and the cluster commands'
  process operations routed through them;
* ``links``: a DR drill's room links on the nodes (the inter-room proxies in the host actors, cut
  there for a partition) and scheme C's replicator in a standby host's actor;
* ``engine``: the driver's side: connect, choose nodes, place workers and layout hosts, relay the
  workers' pipe protocol so ``run.orchestrator`` sees its usual ``WorkerSet``.

Only ``engine``, ``hosts``, ``links`` and ``agents`` use ``ray``; ``clock`` is importable without it.
"""
