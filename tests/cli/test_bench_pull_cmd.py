"""``mqbench bench pull``: a tiny backlog is filled, drained whole, and reported with CPU per message."""
from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from mqbench.cli import cli


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


@pytest.mark.realproc
@pytest.mark.slow  # two broker starts (~20 s on a loaded machine); run with -m slow
def test_bench_pull_drains_the_whole_backlog(tmp_path):
    result = CliRunner().invoke(cli, ["bench", "pull", "--messages", "3000", "--queues", "2", "--consumers", "2",
                                      "--limits-budget-s", "1", "--dir", str(tmp_path), "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["schema"] == "mqbench.bench-pull/1" and _positive(doc["limits"]["loopback_small_frames_per_s"])
    [row] = doc["rows"]
    assert (row["layout"], row["backlog_msgs"], row["received_msgs"], row["drained"]) == ("single", 3000, 3000, True)
    for field in ("fill_s", "drain_msgs_per_s", "broker_cpu_us_per_msg", "client_cpu_us_per_msg",
                  "drain_ratio_to_loopback_frames"):
        assert _positive(row[field]), (field, row)
    # two processes of one group, each on its own queue: each drained its share, nothing twice (the
    # fill puts 1,500 and 1,499 on the two queues, the first send one on either)
    assert row["consumers"] == 2 and len(row["consumer_processes"]) == 2
    assert sorted(p["received_msgs"] for p in row["consumer_processes"]) in ([1500, 1500], [1499, 1501])
    assert all(_positive(p["cpu_us_per_msg"]) for p in row["consumer_processes"])
    assert list(tmp_path.iterdir()) == []  # the cluster's folder is removed


def test_bench_pull_errors_are_one_line():
    result = CliRunner().invoke(cli, ["bench", "pull", "--layout", "no-such-layout", "--limits-budget-s", "1"])
    assert result.exit_code == 2 and "no-such-layout" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["bench", "pull", "--queues", "2", "--consumers", "3", "--limits-budget-s", "1"])
    assert result.exit_code == 2 and "--consumers must be 1..2" in result.output and "Traceback" not in result.output
    assert "pull" in CliRunner().invoke(cli, ["bench", "--help"]).output
