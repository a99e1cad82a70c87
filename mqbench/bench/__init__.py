"""The user-facing benchmarks behind ``mqbench bench <what>``: one module per benchmark.

Each module has ``run(...) -> dict``, which measures and returns the JSON document (schema
``mqbench.bench-<what>/1``, units last in every field name), and ``render(doc) -> str``, the
terminal table. The click commands in ``mqbench/cli/bench_cmd.py`` only parse flags and call
these two. Every benchmark measures this machine's limits (``mqbench.limits``) in the same run and
prints its figures as ratios to them, plus CPU microseconds per message; its duration is bounded by
its flags.
"""
