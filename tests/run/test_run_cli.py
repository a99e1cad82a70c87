"""``mqbench run`` end to end through the CLI, against a real name server and the scripted broker.

The drivers are real worker processes (spawn) talking TCP to the cluster served from a thread.
Proves: a matrix run writes one valid result folder; the table printed at the end is exactly what
``mqbench report`` rebuilds from the folder alone; the time series holds every cell's windows; bad
flags and unreachable clusters are one-line errors with exit code 2.
"""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.harness.report import LoadedResult, render
from mqbench.harness.results import load_result, validate_result
from run_scripted_cluster import ThreadedCluster

TOPICS = ("order_events", "order_payment_timeout")
SHORT = ["--duration", "1500ms", "--warmup", "500ms", "--window", "500ms", "--rate", "200", "--drain", "3s"]


@pytest.fixture(scope="module")
def target():
    with ThreadedCluster(TOPICS) as cluster:
        yield cluster


@pytest.mark.realproc
def test_a_matrix_run_writes_a_valid_result_and_report_rebuilds_the_printed_table(target, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["run", "orders", "--target", target.namesrv_addr, "--matrix", "codec=none,zstd:3",
                                 "--batch", "4", "--out", str(tmp_path), "--seed", "7", *SHORT])
    assert result.exit_code == 0, result.output
    folders = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1
    folder, doc = load_result(folders[0])  # validates the schema, every field and every histogram
    validate_result(doc)
    assert [c["name"] for c in doc["cells"]] == ["codec=none,batch=4,delay=on", "codec=zstd:3,batch=4,delay=on"]
    assert doc["seed"] == 7 and doc["target"] == target.namesrv_addr and doc["failed_cells"] == []
    assert doc["layout"]["name"] == f"target {target.namesrv_addr}"
    for cell in doc["cells"]:
        agg = cell["aggregates"]
        assert agg["published"] > 100 and agg["publish_errors"] == 0
        assert agg["consume_backlog_msgs_after_drain"] == 0
        assert agg["consumed_undelayed_total"] == agg["expected_deliveries_total"]
        assert cell["settings"]["payload"]["codec"] == cell["settings"]["codec"]
        assert len(cell["windows"]) == 3 and "consume_backlog_msgs" in cell["windows"][0]
    # What the run printed is what `mqbench report` prints from the folder alone.
    report = runner.invoke(cli, ["report", str(folder)])
    assert report.exit_code == 0
    assert result.stdout == report.stdout
    assert (folder / "table.md").read_text() == render([LoadedResult(folder, doc)], "markdown")
    series = pq.read_table(folder / "timeseries.parquet").to_pylist()
    assert [(r["cell"], r["window_index"]) for r in series] == [
        (c["name"], i) for c in doc["cells"] for i in range(3)]
    assert sum(r["published"] for r in series) == sum(c["aggregates"]["published"] for c in doc["cells"])


@pytest.mark.realproc
def test_json_output_names_the_folder_and_the_figures(target, tmp_path):
    result = CliRunner().invoke(cli, ["run", "orders", "--target", target.namesrv_addr, "--delay", "off", "--json",
                                      "--out", str(tmp_path), *SHORT])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "mqbench.run/1"
    cell = doc["cells"][0]
    assert cell["name"] == "codec=none,batch=profile,delay=off"
    assert cell["aggregates"]["delayed_consumed"] == 0  # delays stripped
    assert cell["aggregates"]["throughput_msgs_per_s"] == pytest.approx(200, rel=0.25)
    load_result(doc["result_dir"])


@pytest.mark.realproc
def test_a_missing_topic_on_a_target_fails_the_cell_by_name(tmp_path):
    with ThreadedCluster(["order_events"]) as cluster:
        result = CliRunner().invoke(cli, ["run", "orders", "--target", cluster.namesrv_addr, "--out", str(tmp_path),
                                          *SHORT])
    assert result.exit_code == 2
    assert "order_payment_timeout" in result.stderr and "Traceback" not in result.output
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("args, message", [
    (["--rate", "fast"], "--rate 'fast' must be"),
    (["--rate", "-5"], "must be more than 0"),
    (["--matrix", "codec=gzip"], "codec 'gzip'"),
    (["--batch", "0"], "batch '0' must be"),
    (["--layout", "nosuch"], "no layout 'nosuch'"),
    (["--limits", "/nonexistent.json"], "does not exist"),
    (["--duration", "soon"], "is not a duration"),
])
def test_bad_flags_are_one_line_errors(args, message, tmp_path):
    result = CliRunner().invoke(cli, ["run", "orders", "--out", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_an_unknown_workload_and_an_unreachable_target_are_user_errors(tmp_path):
    result = CliRunner().invoke(cli, ["run", "nosuch", "--target", "127.0.0.1:1", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no profile 'nosuch'" in result.stderr
    result = CliRunner().invoke(cli, ["run", "orders", "--target", "127.0.0.1:1", "--keep-going", "--matrix",
                                      "codec=none,lz4", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.count("no name server answered") >= 2 and "every cell failed" in result.stderr
