"""RocketMQ's bytes, on disk and on the wire: the bottom floor that every other part stands on.

Pure code (no files, sockets, clocks or randomness; ``tests/test_tidy.py`` keeps it so, with
``compression`` the one named exception): the commitlog record and its properties (``record``,
``record_check``, ``restamp``), client batches (``batch``), the compression rules (``compression``),
queue units (``queues``), the store checkpoint (``checkpoint``), DLedger entry framing
(``dledger``), index files (``index_file``), timer units (``timer_formats``), fastjson config files
(``fastjson``, ``configs``), topic and group names (``topics``), and the remoting wire codec
(``codes``, ``frame``, ``command``, ``headers``, ``headers_pop``, ``admin_bodies``, ``signature``).

The broker (``broker/store`` files, ``broker/server`` handlers), the client, ``migrate`` and
``inspect`` all import from here; nothing here imports them.
"""
