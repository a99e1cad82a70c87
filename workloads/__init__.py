"""mqbench.workloads: built-in profiles (orders, notifications, iot), recorded traces and their tools.

What other packages call (each module's docstring states the contract):

* ``profile.load_profile(name_or_path) -> Profile``: a validated profile (topics, producers,
  consumers, rate shape, keys, tags, properties, delays, processing times).
* ``generator.generate_messages(profile, seed, count=None, duration_ms=None, shape_start_ms=0)``:
  lazy ``TraceMessage`` objects in send order, deterministic from the seed.
* ``trace.iter_trace_rows(path)`` / ``trace.read_trace_info(path)`` / ``trace.TraceWriter``: the
  ``mqbench.trace/1`` Parquet format, streamed.
* ``source.open_workload(source, seed, ...)``: any of the above by name or path, for a replayer.
* ``sample.load_sample(source, count, seed)``: bodies only, for codec figures.
* ``importer.import_trace`` and ``record.record_trace``: traces from exports and from live clusters.
"""
