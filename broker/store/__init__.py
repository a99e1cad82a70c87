"""The store's file layer: segments, commitlog and DLedger log files, queues, flushing, recovery, metadata.

The bytes inside those files are defined in ``mqbench.broker.formats``; this package reads and writes them.
"""
