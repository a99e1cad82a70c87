"""The html report's charts: drawn from the result files' windows and histograms, nothing else."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from mqbench.harness.charts import CDF_PERCENTILES, _nice_max, latency_cdf_chart, throughput_chart
from mqbench.harness.metrics import RunMetrics
from mqbench.harness.report import LoadedResult, render
from mqbench.harness.results import build_cell, build_result, load_result, write_result

S = 1_000_000_000


def result(tmp_path, rates_per_window, latency_ms):
    cells = []
    for name, rates in rates_per_window.items():
        metrics = RunMetrics(0, duration_ms=10_000 * len(rates), warmup_ms=0, window_ms=10_000)
        for index, rate in enumerate(rates):
            for k in range(rate * 10):
                t = index * 10 * S + k * (10 * S // (rate * 10))
                metrics.record_ack(t, t + latency_ms[name] * 1_000_000, 100)
        cells.append(build_cell(name, {"codec": name}, metrics))
    doc = build_result(cells=cells, seed=1, command_line=["mqbench", "run"], machine={"cpu_model": "x"}, limits=None,
                       layout={"name": "single", "hosts": 1, "groups": 1, "replicas_per_group": 1, "instances": 1,
                               "instances_per_host": 1.0},
                       workload={"profile": "orders", "trace_file": None, "trace_sha256": None}, codec={},
                       batch={}, payload_source={}, warmup_ms=0, duration_ms=10_000 * 3, window_ms=10_000,
                       git={"commit": None, "dirty": None}, created_utc=datetime(2026, 1, 1, tzinfo=timezone.utc))
    return [LoadedResult(*load_result(write_result(doc, tmp_path)))]


def polylines(svg):
    return [[tuple(map(float, p.split(","))) for p in m.split()] for m in re.findall(r'points="([^"]*)"', svg)]


def test_throughput_lines_follow_the_windows(tmp_path):
    loaded = result(tmp_path, {"none": [100, 200, 400], "zstd": [50, 50, 50]}, {"none": 2, "zstd": 3})
    svg = throughput_chart(loaded)
    lines = polylines(svg)
    assert len(lines) == 2 and [len(line) for line in lines] == [3, 3]
    ys = [y for _, y in lines[0]]
    assert ys[0] > ys[1] > ys[2]  # screen y falls as msgs/s rise: 100 < 200 < 400
    # Heights are proportional to the window rates (SVG y grows downwards from the plot top).
    base = max(y for _, y in lines[1])
    assert (base - ys[2]) / (base - ys[1]) == pytest.approx((400 - 50) / (200 - 50), rel=0.01)
    assert f">{_nice_max(400):,.6g}<" in svg and ">none<" in svg and ">zstd<" in svg


def test_latency_by_percentile_is_read_from_the_histograms(tmp_path):
    loaded = result(tmp_path, {"a": [100, 100, 100]}, {"a": 7})
    svg = latency_cdf_chart(loaded, "publish_latency")
    (line,) = polylines(svg)
    assert len(line) == len(CDF_PERCENTILES)
    assert len({y for _, y in line}) == 1  # every ack took 7 ms: a flat line
    assert latency_cdf_chart(loaded, "e2e_latency").count("<polyline") == 0  # nothing consumed: no line


def test_the_html_report_embeds_the_charts_without_assets(tmp_path):
    loaded = result(tmp_path, {"a": [10, 20, 30]}, {"a": 1})
    text = render(loaded, "html")
    assert text.count("<svg") == 3 and text.count("<tr>") == 2
    assert not re.search(r"<(script|link|img|iframe)\b|src=|href=|@import|url\(", text)


def test_baseline_deltas_compare_the_same_cell(tmp_path):
    from mqbench.harness.report import add_baseline_deltas, report_rows

    base = result(tmp_path / "base", {"none": [100, 100, 100], "zstd": [100, 100, 100]}, {"none": 10, "zstd": 10})
    new = result(tmp_path / "new", {"zstd": [150, 150, 150], "lz4": [50, 50, 50]}, {"zstd": 5, "lz4": 20})
    rows = add_baseline_deltas(report_rows(new), report_rows(base))
    zstd, lz4 = rows
    assert zstd["baseline"].endswith(" zstd") and lz4["baseline"].endswith(" none")  # no lz4 in base: first row
    assert zstd["throughput_delta_share"] == pytest.approx(0.5, rel=0.01)
    assert zstd["publish_latency_p99_delta_share"] == pytest.approx(-0.5, rel=0.01)
    assert lz4["throughput_delta_share"] == pytest.approx(-0.5, rel=0.01)
    assert zstd["disk_user_bytes_per_msg_delta_share"] is None  # not measured in either
    text = render(new, "terminal", baseline=base[0])
    assert "vs base achieved" in text and re.search(r"\+50\.\d%", text) and re.search(r"-50\.\d%", text)
    assert f"baseline: {base[0].folder.name}" in text
    assert "vs base" not in render(new, "terminal")


def test_an_unfinished_search_is_not_shown_as_a_capacity(tmp_path):
    from mqbench.harness.report import report_rows

    loaded = result(tmp_path, {"a": [10, 10, 10]}, {"a": 1})
    row = report_rows(loaded)[0]
    assert row["capacity_msgs_per_s"] is None and row["verdict"] == "held"
    # An unfinished search (the figure once shown was the average over the whole search, drain
    # checks at rate 0 included) is failed, with no capacity, no sizing basis and no offered rate.
    cell = loaded[0].doc["cells"][0]
    for name in ("verdict", "verdict_signals", "verdict_detail", "capacity_msgs_per_s"):
        cell.pop(name)
    cell["max_rate_search"] = {"state": "hold", "sustainable_rate_per_s": None, "peak_healthy_rate_per_s": 1600,
                               "checks": 40}
    row = report_rows(loaded, daily_messages=1e9)[0]
    assert row["verdict"] == "failed" and row["verdict_signals"] == "search unfinished"
    assert row["capacity_msgs_per_s"] is None and row["sizing_basis_msgs_per_s"] is None
    assert row["hosts_needed"] is None and row["offered_msgs_per_s"] is None
