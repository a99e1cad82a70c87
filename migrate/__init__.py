"""mqbench.migrate: moving a broker store between storage format versions.

Public API::

    from mqbench.migrate.plan import Options, make_plan      # what SRC holds, blockers, estimates
    from mqbench.migrate.run import migrate                  # migrate(src, dst, Options(target=...), resume=False)
    from mqbench.migrate.verify import verify                # verify(src, dst) -> {"ok": bool, "differences": [...]}
    from mqbench.migrate.rolling import rolling_upgrade      # await rolling_upgrade(cluster_state, "v4-dledger")

Modules, each named for what it holds: ``source`` (the read-only, streaming walk of SRC's log), ``bulk`` (the copy's fast path),
``reframe`` (a source record -> the target's records), ``target`` (the target log and queues),
``journal`` (progress for ``--resume``), ``configs_carry`` (topics, offsets, groups), ``delay``
(delay levels and the timer store), ``plan``, ``run`` (the steps), ``verify``, ``rolling``.
"""
