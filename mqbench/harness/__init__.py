"""The benchmark harness core: open-loop pacing, mergeable latency metrics, result files, reports.

* ``pacer``: intended send times for a rate shape (sans-I/O) and the max-sustainable-rate search;
* ``metrics``: HdrHistogram recorders per 10-second window and per run, warm-up discarded;
* ``results``: the ``results/<UTC>-<profile>-<hash>/`` folder (``result.json``, ``timeseries.parquet``,
  ``table.md``), written atomically and loaded with validation;
* ``report``: capacity-review tables from result files only.
"""
