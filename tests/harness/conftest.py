"""Result folders built through the real writer from the pacer and metrics run over simulated systems."""
from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from mqbench.harness.maxrate import MaxRateSearch, SearchSettings, Thresholds
from mqbench.harness.metrics import merge_runs
from mqbench.harness.results import build_cell, build_result, write_result
from simsystem import FluidBroker, run_search, simulate_run

LIMITS = {"disk_write_fdatasync_mb_per_s": 180.0, "disk_fdatasync_per_s": 900.0,
          "loopback_small_frames_per_s": 140_000.0, "loopback_mb_per_s": 1500.0, "codecs": []}
MACHINE = {"cpu_model": "Simulated CPU", "cpu_cores": 2, "memory_bytes": 8 * 2**30, "kernel": "6.1",
           "python": "3.11.9", "hostname": "sim"}
LAYOUT = {"name": "3-hosts-3-instances", "hosts": 3, "groups": 3, "replicas_per_group": 3, "instances": 9,
          "instances_per_host": 3.0}


def make_result_doc(*, seed: int, rate, cells: dict[str, float], created: datetime, profile: str = "orders",
                    commit: str = "0123456789abcdef0123456789abcdef01234567", dirty: bool = False,
                    max_rate_capacity: float | None = None) -> dict:
    """A result document; ``cells`` maps a cell name to its broker's mean service time (us)."""
    built = []
    for position, (name, service_us) in enumerate(cells.items()):
        parts = simulate_run(rate=rate, seed=seed * 100 + position, duration_ms=20_000, warmup_ms=4_000,
                             service_us_mean=service_us, workers=2)
        metrics = merge_runs(parts)
        search = None
        if max_rate_capacity is not None:
            search = run_search(MaxRateSearch(SearchSettings(), Thresholds(publish_latency_ms_p99_max=200.0)),
                                FluidBroker(max_rate_capacity, noise_share=0.02, rng=random.Random(seed))).result()
        rng = random.Random(seed + position)
        built.append(build_cell(name, {"codec": name.split("=")[1], "batch_msgs": 1}, metrics,
                                disk_bytes_per_msg=rng.uniform(300, 900), replication_bytes=rng.randrange(10**6, 10**8),
                                cpu_seconds=rng.uniform(2, 8), max_rate_search=search,
                                offered_msgs_per_s=rate if isinstance(rate, (int, float)) else None))
    return build_result(cells=built, seed=seed, command_line=["mqbench", "run", profile, "--seed", str(seed)],
                        machine=MACHINE, limits=LIMITS, layout=LAYOUT,
                        workload={"profile": profile, "trace_file": None, "trace_sha256": None},
                        codec={"spec": "none"}, batch={"batch_msgs": 1, "delay_scheme": "timer"},
                        payload_source={"kind": "profile", "profile": profile}, warmup_ms=4_000, duration_ms=20_000,
                        window_ms=10_000, git={"commit": commit, "dirty": dirty}, created_utc=created)


@pytest.fixture(scope="session")
def result_doc_factory():
    """``make_result_doc`` for tests: ``from conftest import`` picks whichever tests/*/conftest.py is
    first on sys.path when the whole suite is collected, so tests take it as a fixture."""
    return make_result_doc


@pytest.fixture(scope="session")
def result_folders(tmp_path_factory):
    """Two runs: a constant-rate matrix of two codecs, and a bursty run with a max-rate search."""
    base = tmp_path_factory.mktemp("results")
    first = make_result_doc(seed=11, rate=1500, cells={"codec=none": 120.0, "codec=zstd:3": 170.0},
                            created=datetime(2026, 11, 24, 17, 15, tzinfo=timezone.utc))
    second = make_result_doc(seed=12, rate=[(0, 1000), (8_000, 2500), (12_000, 1000)], cells={"codec=lz4": 140.0},
                             created=datetime(2026, 11, 24, 18, 0, 5, tzinfo=timezone.utc), profile="iot",
                             commit="fedcba9876543210fedcba9876543210fedcba98", dirty=True, max_rate_capacity=42_000)
    return [write_result(first, base), write_result(second, base)], [first, second]
