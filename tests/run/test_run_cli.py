"""``mqbench run`` end to end through the CLI, against a real name server and the scripted broker.

The drivers are real worker processes (spawn) talking TCP to the cluster served from a thread.
Proves: a matrix run writes one valid result folder; the table printed at the end is exactly what
``mqbench report`` rebuilds from the folder alone; the time series holds every cell's windows; bad
flags and unreachable clusters are one-line errors with exit code 2.
"""
from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.harness.report import LoadedResult, render
from mqbench.harness.results import load_result, validate_result
from run_scripted_cluster import ThreadedCluster

TOPICS = ("order_events", "order_payment_timeout")
SHORT = ["--duration", "1500ms", "--warmup", "500ms", "--window", "500ms", "--rate", "200", "--drain", "3s",
         "--limits", "none", "--quiet"]


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


@pytest.mark.realproc
def test_an_overloaded_run_is_saturated_not_a_capacity_and_exits_3(tmp_path):
    # Finding 1: 3x a broker's capacity used to print "capacity <achieved> (offered load)" and exit 0.
    # The scripted broker serves one send at a time for 5 ms (at most 200 msgs/s); 600 are offered.
    with ThreadedCluster(TOPICS, serial_ms=5) as cluster:
        result = CliRunner().invoke(cli, [
            "run", "orders", "--target", cluster.namesrv_addr, "--delay", "off", "--batch", "1", "--rate", "600",
            "--duration", "4s", "--warmup", "500ms", "--window", "1s", "--in-flight", "20", "--drain", "3s",
            "--limits", "none", "--quiet", "--out", str(tmp_path)])
    assert result.exit_code == 3, result.output
    folder, doc = load_result(next(p for p in tmp_path.iterdir() if not p.name.startswith(".")))
    cell = doc["cells"][0]
    assert cell["verdict"] == "saturated"
    assert {"achieved under offered", "send backlog", "publish delay growing"} <= set(cell["verdict_signals"])
    assert cell["offered_msgs_per_s"] == 600 and cell["achieved_msgs_per_s"] < 300
    assert cell["capacity_msgs_per_s"] is None  # a fixed-rate cell never reports a capacity
    assert "saturated: achieved under offered" in result.stdout and "held" not in result.stdout.split("Legend")[0]
    # Sizing from it is refused: the row is not sized.
    report = CliRunner().invoke(cli, ["report", str(folder), "--json", "--daily-messages", "1G"])
    assert json.loads(report.stdout)["rows"][0]["hosts_needed"] is None


@pytest.mark.realproc
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_piped_output_gets_one_line_per_window_unless_quiet(target, tmp_path):
    args = ["run", "orders", "--target", target.namesrv_addr, "--delay", "off", "--duration", "3s", "--warmup",
            "1s", "--window", "1s", "--rate", "100", "--drain", "3s", "--limits", "none"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")])
    # Written either way (a stall of this shared machine can make even 100 msgs/s late: exit 3).
    assert result.exit_code in (0, 3), result.output
    lines = [line for line in result.stdout.splitlines() if "| offered " in line]
    assert len(lines) >= 3
    number = r"[\d,]+(\.\d)?"
    for line in lines:
        assert re.search(rf"^\d\d:\d\d:\d\dZ cell 1/1 codec=none\S* (warm-up|measuring) {number} s \| offered "
                         rf"{number}/s \| achieved {number}/s \| pub (p50 {number} ms p99 {number} ms|p50 - p99 -) \| "
                         rf"errors {number} \| backlog send {number} consume {number}$", line), line
    # The figures depend on the machine's load (workers report twice a second); the format is the contract.
    assert any("measuring" in line for line in lines)
    quiet = CliRunner().invoke(cli, [*args, "--quiet", "--out", str(tmp_path / "b")])
    assert quiet.exit_code in (0, 3) and "| offered " not in quiet.stdout


def test_a_bad_layout_on_the_axis_and_a_layout_axis_on_a_target_are_one_line_errors(tmp_path):
    result = CliRunner().invoke(cli, ["run", "orders", "--matrix", "layout=single,nosuch", "--limits", "none",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no layout 'nosuch'" in result.stderr
    result = CliRunner().invoke(cli, ["run", "orders", "--matrix", "layout=single,raft3", "--target", "127.0.0.1:1",
                                      "--limits", "none", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "layout axis needs the embedded cluster" in result.stderr
