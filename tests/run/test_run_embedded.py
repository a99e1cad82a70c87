"""``mqbench run`` on the real embedded cluster (``single`` layout for speed): the CI end-to-end run.

Two cells (codec none and zstd:3 on every body, batches of 8), each on a fresh broker process with
its Raft store, real driver processes. Proves the whole path: cluster up, topics created, open-loop
sends acknowledged, consumed and decompressed, machine figures read from the broker processes and
their stores, a valid result folder, and the printed table equal to ``mqbench report``'s.
"""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.harness.results import load_result


@pytest.mark.realproc
def test_a_short_matrix_on_the_embedded_single_layout(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, [
        "run", "orders", "--layout", "single", "--matrix", "codec=none,zstd:3", "--batch", "8",
        "--compress-over", "0", "--duration", "2s", "--warmup", "1s", "--window", "1s", "--rate", "300",
        "--drain", "5s", "--limits", "none", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    folder, doc = load_result(next(p for p in tmp_path.iterdir() if not p.name.startswith(".")))
    assert not (tmp_path / ".work").exists()  # the stores of the per-cell clusters are removed
    assert doc["layout"]["name"] == "single" and doc["target"] is None
    for cell in doc["cells"]:
        agg = cell["aggregates"]
        assert agg["published"] > 300 and agg["publish_errors"] == 0
        assert agg["consume_backlog_msgs_after_drain"] == 0
        assert agg["e2e_latency_count"] > 0
        assert cell["cpu_s_per_million_msgs"] > 0
        assert cell["disk_bytes_per_msg"] > 300  # body (~550 B raw, less compressed) + headers + queue unit
        assert cell["replication_bytes"] is not None
    zstd = doc["cells"][1]["settings"]["payload"]
    assert zstd["compression_ratio_as_sent"] == pytest.approx(zstd["compression_ratio_per_msg"])
    assert zstd["compression_ratio_per_msg"] > 1.2
    report = runner.invoke(cli, ["report", str(folder)])
    assert report.exit_code == 0 and report.stdout == result.stdout
