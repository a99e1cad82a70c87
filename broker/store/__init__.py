"""The store's file layer: segments, commitlog and DLedger log files, queues, flushing, recovery, metadata;
the replicated commitlog (``replicated_log``, owned by ``Store``) and the Raft core's storages on
those files (``dledger_storage``, ``raft_storage``).

The bytes inside those files are defined in ``mqbench.broker.formats``; this package reads and writes them.
"""
