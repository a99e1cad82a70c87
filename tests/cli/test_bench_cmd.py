"""``mqbench bench <what>``: every user benchmark runs in a tiny bounded configuration, prints its
versioned JSON document, and every figure it reports is a number > 0 (a benchmark that measured
nothing, or lost its CPU or limits readings, fails here)."""
from __future__ import annotations

import json
import math
import os

import pytest
from click.testing import CliRunner

from mqbench.cli import cli

LIMITS = ["--limits-budget-s", "1"]


def bench_json(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["bench", *args, *LIMITS, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_document(doc: dict, what: str) -> None:
    assert doc["schema"] == f"mqbench.bench-{what}/1"
    assert doc["tool_version"] and doc["machine"]["cpu_cores"] >= 1
    from mqbench import native     # which compiled accelerators measured it, by name
    assert set(doc["native"]) == set(native.MODULES) and all(isinstance(v, bool) for v in doc["native"].values())


def test_bench_help_lists_the_user_benchmarks():
    result = CliRunner().invoke(cli, ["bench", "--help"])
    assert result.exit_code == 0
    for what in ("broker", "store", "failover", "timer", "migrate", "compression", "replicated", "raft-core"):
        assert what in result.output


@pytest.mark.realproc
def test_bench_broker_reports_broker_and_client_cpu_per_cell(tmp_path):
    cpu = str(min(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else None
    pinning = ["--broker-cpus", cpu, "--sender-cpus", cpu] if cpu is not None else []
    doc = bench_json("broker", "--layouts", "single", "--batch", "1,4", "--body-bytes", "128", "--seconds", "0.5",
                     "--concurrency", "4", "--queue-type", "simple,batch", "--dir", str(tmp_path), *pinning)
    check_document(doc, "broker")
    if cpu is not None:      # the pinned pair is recorded, and sampled on one CPU
        assert doc["broker_cpus"] == doc["sender_cpus"] == [int(cpu)]
        assert all(r["sender_on_broker_cpu_share"] == 1.0 for r in doc["rows"]), doc["rows"]
    assert positive(doc["limits"]["loopback_small_frames_per_s"])
    cells = [(r["layout"], r["queue_type"], r["batch_msgs"], r["body_bytes"]) for r in doc["rows"]]
    # a single message is one record on either queue type: no BatchCQ cell at batch 1
    assert cells == [("single", "SimpleCQ", 1, 128), ("single", "SimpleCQ", 4, 128), ("single", "BatchCQ", 4, 128)]
    for row in doc["rows"]:
        for field in ("acked_msgs", "throughput_msgs_per_s", "requests_per_s", "latency_ms_p50", "latency_ms_p99",
                      "broker_cpu_us_per_msg", "client_cpu_us_per_msg", "throughput_ratio_to_loopback_frames"):
            assert positive(row[field]), (field, row)
        assert row["latency_ms_p50"] <= row["latency_ms_p99"] <= row["latency_ms_max"]
        # split by role: a single broker leads its group of one, so it holds all of the CPU
        assert positive(row["broker_cpu_s_leaders"]) and abs(row["broker_cpu_s_followers"]) <= 0.002, row
    assert list(tmp_path.iterdir()) == []  # the cluster's folder is removed


def test_bench_broker_refuses_an_unknown_queue_type():
    result = CliRunner().invoke(cli, ["bench", "broker", "--queue-type", "simple,lazy", *LIMITS])
    assert result.exit_code == 2 and "unknown queue type 'lazy'" in result.output


def test_bench_store_reports_ratios_to_the_disk(tmp_path):
    doc = bench_json("store", "--seconds", "0.05", "--body-bytes", "1024", "--batch", "8",
                     "--recovery-bytes", str(2 << 20), "--dir", str(tmp_path))
    check_document(doc, "store")
    assert positive(doc["limits"]["disk_write_fdatasync_mb_per_s"])
    kinds = [r["kind"] for r in doc["results"]]
    assert kinds.count("append") == 3 and "sequential read (cold cache)" in kinds
    recoveries = [k for k in kinds if k.startswith("recovery")]
    assert recoveries == ["recovery, checkpoint intact", "recovery, checkpoint lost"]
    for row in doc["results"]:
        if row["kind"].startswith("recovery"):
            assert positive(row["recovery_s"]) and positive(row["log_bytes"])
            continue
        for field in ("messages", "msgs_per_s", "log_mb_per_s", "cpu_us_per_msg", "log_ratio_to_disk_write"):
            assert positive(row[field]), (field, row)


@pytest.mark.realproc
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_bench_failover_times_one_kill():
    doc = bench_json("failover", "--layouts", "raft3", "--kills", "1")
    check_document(doc, "failover")
    (run,) = doc["runs"]
    assert run["failover_ms"]["count"] == 1
    for value in (run["failover_ms"]["median"], run["election_ms"]["median"], run["acked_msgs"],
                  run["client_cpu_us_per_msg"], run["failover_p50_ratio_to_dledger"]):
        assert positive(value)


@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_bench_timer_delivers_nothing_early(tmp_path):
    doc = bench_json("timer", "--pending", "50", "--probes", "10", "--probe-seconds", "0.3", "--burst", "100",
                     "--dir", str(tmp_path))
    check_document(doc, "timer")
    (case,) = doc["cases"]
    assert case["delivered_early_count"] == 0 and case["delivery_error_ms_min"] >= 0
    for field in ("burst_throughput_msgs_per_s", "burst_cpu_us_per_msg", "burst_log_mb_per_s",
                  "burst_log_ratio_to_disk_write"):
        assert positive(case[field]), field


def test_bench_migrate_reports_ratio_to_cp(tmp_path):
    doc = bench_json("migrate", "--size-bytes", str(2 << 20), "--small-bytes", str(1 << 20), "--targets", "v5",
                     "--dir", str(tmp_path))
    check_document(doc, "migrate")
    (result,) = doc["results"]
    assert result["carried_every_message"] is True
    for field in ("migrate_mb_per_s", "ratio_to_cp", "ratio_to_disk_write", "cpu_us_per_msg", "peak_rss_mib"):
        assert positive(result[field]), field
    assert positive(doc["cp_mb_per_s"])
    # which code measured it: the migrate scan's accelerator is named in the document and the table
    from mqbench.bench.migrate import render
    assert "mqbench.migrate._scan" in doc["native"]
    assert "migrate._scan on" in render(doc) or "migrate._scan off" in render(doc)


def test_bench_compression_reports_ratio_to_the_raw_codec():
    doc = bench_json("compression", "--profiles", "orders", "--codecs", "zstd:3", "--batches", "16",
                     "--messages", "64", "--min-time-ms", "2")
    check_document(doc, "compression")
    assert doc["limits_codecs"] and {c["mode"] for c in doc["cells"]} == {
        "per-message", "per-message >=4096", "per-message >=0", "batch 16"}
    for cell in doc["cells"]:
        for field in ("stored_bytes_per_msg", "ratio", "compress_mb_per_s", "compress_cpu_us_per_msg",
                      "decompress_cpu_us_per_msg"):
            assert positive(cell[field]), (field, cell)
    compressed = [c for c in doc["cells"] if c["codec"] == "zstd:3" and c["compressed_fraction"]]
    assert compressed and all(positive(c["compress_vs_raw"]) for c in compressed)


def test_bench_replicated_reports_cpu_per_put(tmp_path):
    doc = bench_json("replicated", "--replicas", "3", "--durability", "fsync", "--concurrency", "4",
                     "--seconds", "0.3", "--dir", str(tmp_path))
    check_document(doc, "replicated")
    (row,) = doc["rows"]
    for field in ("acked_msgs", "puts_per_s", "latency_ms_p99", "cpu_us_per_msg", "leader_fdatasyncs",
                  "puts_ratio_to_loopback_frames", "puts_ratio_to_fdatasyncs"):
        assert positive(row[field]), field


def test_bench_raft_core_reports_cpu_per_entry():
    doc = bench_json("raft-core", "--batch", "1,16", "--seconds", "0.05", "--body-bytes", "128")
    check_document(doc, "raft-core")
    assert len(doc["cells"]) == 4
    for cell in doc["cells"]:
        for field in ("entries_per_s", "raft_messages_per_s", "cpu_us_per_entry", "raft_messages_ratio_to_loopback_frames"):
            assert positive(cell[field]), field


def test_bench_errors_are_one_line():
    result = CliRunner().invoke(cli, ["bench", "migrate", "--targets", "v9"])
    assert result.exit_code == 2 and "v9" in result.output
    result = CliRunner().invoke(cli, ["bench", "broker", "--layouts", "no-such-layout", *LIMITS])
    assert result.exit_code == 2 and "no-such-layout" in result.output
    result = CliRunner().invoke(cli, ["bench", "broker", "--sender-cpus", "0-x", *LIMITS])
    assert result.exit_code == 2 and "0-x" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["bench", "compression", "--profiles", "nope", "--no-limits"])
    assert result.exit_code == 2 and "nope" in result.output
