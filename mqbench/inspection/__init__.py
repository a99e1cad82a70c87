"""``mqbench inspect``: what is in a store, read-only; a tool beside ``migrate``.

``report`` builds the inspect document (versions, files, topics, queues, offsets, damage),
``state`` reads checkpoints, DLedger state, timer and index files, ``keys`` finds messages by key,
``pop`` lists POP checkpoints and acks pending per group. The records themselves are read through
the store's one log reader (``mqbench.broker.store.log_reader``).
"""
