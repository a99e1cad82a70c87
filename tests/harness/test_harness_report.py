"""mqbench report: every format from result files written by the harness, and the sizing arithmetic."""
from __future__ import annotations

import csv
import io
import json
import math
import re

import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.errors import UserError
from mqbench.harness.report import LoadedResult, machines_needed, render, report_document, report_rows
from mqbench.harness.results import load_result


def _invoke(*args):
    return CliRunner().invoke(cli, ["report", *map(str, args)])


def _loaded(result_folders):
    return [LoadedResult(*load_result(folder)) for folder in result_folders[0]]


def test_rows_are_read_from_the_result_files_and_traceable(result_folders):
    rows = report_rows(_loaded(result_folders))
    folders, docs = result_folders
    assert [(r["result"], r["cell"]) for r in rows] == [
        (folders[0].name, "codec=none"), (folders[0].name, "codec=zstd:3"), (folders[1].name, "codec=lz4")]
    assert [r["commit"] for r in rows] == ["0123456789", "0123456789", "fedcba9876+dirty"]
    assert [r["seed"] for r in rows] == [11, 11, 12]
    for row, cell in zip(rows, [c for d in docs for c in d["cells"]]):
        assert row["throughput_msgs_per_s"] == cell["aggregates"]["throughput_msgs_per_s"]
        assert row["publish_latency_ms_p99"] == cell["aggregates"]["publish_latency_ms_p99"]
    # Only the max-rate run has a capacity: the rate that held on repeat; it is sized by what it
    # absorbed there. A fixed-rate cell reports offered and achieved, never a capacity.
    search = docs[1]["cells"][0]["max_rate_search"]
    assert rows[2]["verdict"] == "held" and rows[2]["capacity_msgs_per_s"] == search["capacity_msgs_per_s"]
    assert rows[2]["sizing_basis_msgs_per_s"] == search["sustainable_rate_per_s"] <= search["capacity_msgs_per_s"]
    assert rows[2]["first_unheld_rate_msgs_per_s"] == search["first_unheld_rate_msgs_per_s"]
    assert rows[0]["capacity_msgs_per_s"] is None and rows[0]["verdict"] == "held"
    assert rows[0]["offered_msgs_per_s"] == 1500
    assert rows[0]["achieved_msgs_per_s"] == pytest.approx(1500, rel=0.02)
    # Ratios to the limits recorded in the same result (loopback 140,000 frames/s).
    assert rows[0]["loopback_share_of_limit"] == pytest.approx(rows[0]["achieved_msgs_per_s"] / 140_000)
    disk_mb_per_s = rows[0]["achieved_msgs_per_s"] * rows[0]["disk_bytes_per_msg"] / 1e6
    assert rows[0]["disk_share_of_limit"] == pytest.approx(disk_mb_per_s / 180.0)


@pytest.mark.parametrize("fmt", ["terminal", "markdown", "csv", "html"])
def test_every_format_names_each_run_commit_and_seed(result_folders, fmt):
    folders, _ = result_folders
    outcome = _invoke(*folders, "--format", fmt, "--daily-messages", "100G")
    assert outcome.exit_code == 0, outcome.output
    text = outcome.output
    for folder in folders:
        assert folder.name in text
    assert "0123456789" in text and "fedcba9876+dirty" in text
    if fmt != "csv":
        assert "peak factor 3" in text and "headroom 0.7" in text and "100,000,000,000 messages/day" in text


def test_markdown_is_a_table_with_one_row_per_cell(result_folders):
    text = render(_loaded(result_folders), "markdown", daily_messages=1e11)
    table_lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + 3
    assert all(line.count("|") == table_lines[0].count("|") for line in table_lines)
    assert "hosts needed" in table_lines[0]


def test_csv_carries_every_field(result_folders):
    text = render(_loaded(result_folders), "csv", daily_messages=1e11)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 3
    assert {"result", "commit", "seed", "publish_latency_ms_p999", "hosts_needed", "disk_share_of_limit"} <= set(rows[0])
    assert int(rows[2]["hosts_needed"]) >= 3


def test_html_is_one_self_contained_file(result_folders):
    text = render(_loaded(result_folders), "html")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text.count("<tr>") == 4
    # No external assets: no links, scripts, images or fonts fetched from anywhere.
    assert not re.search(r"<(script|link|img|iframe)\b|src=|href=|@import|url\(", text)


def test_json_document(result_folders):
    folders, docs = result_folders
    outcome = _invoke(*folders, "--json", "--daily-messages", "100e9", "--peak-factor", "2.5", "--headroom", "0.6")
    assert outcome.exit_code == 0, outcome.output
    doc = json.loads(outcome.output)
    assert doc["schema"] == "mqbench.report/2" and doc["tool_version"]
    assert [r["result"] for r in doc["runs"]] == [f.name for f in folders]
    assert doc["runs"][1]["git"]["dirty"] is True and doc["runs"][0]["seed"] == 11
    assert doc["sizing"]["peak_msgs_per_s"] == pytest.approx(1e11 / 86400 * 2.5)
    row = doc["rows"][2]
    expected = math.ceil(doc["sizing"]["peak_msgs_per_s"] / (row["sizing_basis_msgs_per_s"] / 9 * 3 * 0.6))
    assert row["hosts_needed"] == expected


def test_machines_needed_hand_computed():
    # 100 billion/day = 1,157,407.4 msgs/s; x3 peak = 3,472,222.2 msgs/s. 60,000 msgs/s measured on
    # 9 instances, 3 per host: 20,000 per host, 14,000 usable at 0.7 -> 248.02 -> 249 hosts.
    sizing = machines_needed(100e9, 3.0, 0.7, 60_000, 9, 3.0, 3)
    assert sizing["average_msgs_per_s"] == pytest.approx(1_157_407.407, abs=0.001)
    assert sizing["peak_msgs_per_s"] == pytest.approx(3_472_222.222, abs=0.001)
    assert sizing["per_instance_msgs_per_s"] == pytest.approx(6_666.667, abs=0.001)
    assert sizing["per_host_msgs_per_s"] == pytest.approx(20_000)
    assert sizing["hosts_needed"] == 249
    # Exact division needs no extra host: 8.64e9/day = 100,000 msgs/s, x2 = 200,000; 50,000 per host
    # (one instance per host) x 0.8 = 40,000 -> exactly 5.
    assert machines_needed(8.64e9, 2.0, 0.8, 50_000, 1, 1.0, 1)["hosts_needed"] == 5
    # A tiny volume still needs one host per replica of a group.
    assert machines_needed(1e6, 3.0, 0.7, 60_000, 9, 3.0, 3)["hosts_needed"] == 3
    # Two instances per host double what a host carries: 10,000 per instance -> 20,000 per host.
    assert machines_needed(86_400 * 100_000, 1.0, 1.0, 40_000, 4, 2.0, 2)["hosts_needed"] == 5


@pytest.mark.parametrize("args, message", [
    ((1e9, 0.5, 0.7), "peak factor"), ((1e9, 3.0, 0.0), "headroom"), ((1e9, 3.0, 1.5), "headroom"),
    ((0, 3.0, 0.7), "daily messages"),
])
def test_machines_needed_rejects_bad_inputs(args, message):
    with pytest.raises(UserError, match=message):
        machines_needed(*args, 1000.0, 1, 1.0)


@pytest.mark.parametrize("flags, message", [
    (["--headroom", "0"], "headroom"), (["--peak-factor", "0.5"], "peak-factor"),
    (["--daily-messages", "lots"], "not a message count"), (["--daily-messages", "0"], "more than 0"),
    (["--format", "pdf"], "format"),
])
def test_bad_flags_exit_2_with_the_flag_named(result_folders, flags, message):
    outcome = _invoke(result_folders[0][0], *flags)
    assert outcome.exit_code == 2
    assert message in outcome.output and "Traceback" not in outcome.output


def test_missing_result_is_one_line_exit_2(tmp_path):
    outcome = _invoke(tmp_path / "nope")
    assert outcome.exit_code == 2
    assert outcome.output.strip() == f"mqbench: error: no such result: {tmp_path / 'nope'}"


def test_table_md_in_the_folder_is_the_markdown_report(result_folders):
    folders, _ = result_folders
    loaded = LoadedResult(*load_result(folders[0]))
    assert (folders[0] / "table.md").read_text() == render([loaded], "markdown")


def test_a_folder_of_results_stands_for_all_of_them(result_folders, tmp_path):
    folders, _ = result_folders
    outcome = _invoke(folders[0].parent, "--format", "csv")
    assert outcome.exit_code == 0, outcome.output
    assert [row["result"] for row in csv.DictReader(io.StringIO(outcome.output))] == [
        folders[0].name, folders[0].name, folders[1].name]
    outcome = _invoke(tmp_path)
    assert outcome.exit_code == 2 and "no result.json and no result folders" in outcome.output


def test_baseline_flag_adds_deltas_against_the_named_result(result_folders):
    folders, docs = result_folders
    outcome = _invoke(folders[1], "--json", "--baseline", folders[0], "--daily-volume", "1G")
    assert outcome.exit_code == 0, outcome.output
    doc = json.loads(outcome.output)
    row = doc["rows"][0]
    base = docs[0]["cells"][0]["achieved_msgs_per_s"]
    assert row["baseline"]
    assert row["throughput_delta_share"] == pytest.approx(
        (row["achieved_msgs_per_s"] - base) / base)
    assert doc["sizing"]["daily_messages"] == 1e9
    table = _invoke(folders[1], "--format", "table", "--baseline", folders[0])
    assert table.exit_code == 0 and "baseline" in table.output


def test_baseline_must_name_one_result(result_folders):
    folders, _ = result_folders
    outcome = _invoke(folders[1], "--baseline", folders[0].parent)
    assert outcome.exit_code == 2
    assert "name one result folder" in outcome.output


DR_ROW = {"scheme": "A", "layout": "dr-a", "fault": "room", "target": "room1", "rpo_promised_zero": True,
          "acked_msgs": 500, "rpo_lost_msgs": 0, "lost_seqs_first": [], "duplicates_msgs": 2, "detection_ms": 1200,
          "election_ms": 60, "leader_readiness_ms": 5, "client_recovery_ms": 30, "rto_ms": 1295,
          "write_latency_ms_p50_no_rooms": 4, "write_latency_ms_p50": 9, "write_latency_ms_p99": 30,
          "write_latency_added_ms_p50": 5, "instances": 3, "cross_room_bytes_per_msg": 2300.5, "notes": []}


def test_a_folder_that_also_holds_dr_results_renders_them_in_a_dr_table(result_folders, tmp_path):
    # Finding 7: `mqbench report results/` refused the whole folder once `mqbench dr` wrote there;
    # then it skipped DR results with a note. Now they get a table of their own, in every format.
    import shutil

    from mqbench.dr.report import build_document, write_document

    folders, _ = result_folders
    for folder in folders:
        shutil.copytree(folder, tmp_path / folder.name)
    drills = [DR_ROW, {**DR_ROW, "scheme": "C", "fault": "kill-leader", "rpo_promised_zero": False,
                       "rpo_lost_msgs": 21, "duplicates_msgs": 0, "election_ms": None, "rto_ms": 8450}]
    dr = write_document(build_document(drills, seed=5, command_line=["mqbench", "dr"], machine={"cpu_cores": 2},
                                       settings={"rate": 1}, git={"commit": "abcdef0123", "dirty": False}), tmp_path)
    outcome = _invoke(tmp_path)
    assert outcome.exit_code == 0, outcome.output
    assert folders[0].name in outcome.output and folders[1].name in outcome.output
    assert "skipped" not in outcome.output
    section = outcome.output.split("DR drills")[1]
    header = section.strip().splitlines()[0]
    for name in ("scheme", "fault", "RPO 0 promised", "lost (RPO)", "dup", "RTO ms", "detect ms"):
        assert name in header
    lines = section.strip().splitlines()
    assert any(line.split()[:3] == ["A", "room", "room1"] and "1,295" in line for line in lines)
    assert any(line.split()[:2] == ["C", "kill-leader"] and "8,450" in line and " 21 " in line for line in lines)
    assert f"{dr.name}: commit abcdef0123, seed 5" in section
    assert "  RTO ms: " in section.split("Legend:")[1] and "  lost (RPO): " in section.split("Legend:")[1]
    markdown = _invoke(tmp_path, "--format", "markdown").output
    assert "## DR drills" in markdown and "| A | room | room1 | yes | 500 | 0 | 2 |" in markdown
    html_text = _invoke(tmp_path, "--format", "html").output
    assert "<h2>DR drills</h2>" in html_text and "<td>kill-leader</td>" in html_text
    doc = json.loads(_invoke(tmp_path, "--json").output)
    assert len(doc["runs"]) == 2 and doc["skipped"] == []
    assert [(d["result"], d["scheme"], d["rto_ms"]) for d in doc["dr"]] == [(dr.name, "A", 1295), (dr.name, "C", 8450)]
    only_dr = _invoke(dr)
    assert only_dr.exit_code == 0, only_dr.output
    assert "DR drills" in only_dr.output and "kill-leader" in only_dr.output
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "result.json").write_text('{"schema": "mqbench.dr-result/1", "drills": 3}')
    bad = _invoke(tmp_path / "broken")
    assert bad.exit_code == 2 and "drills" in bad.output


def test_the_default_table_reads_and_wide_carries_everything(result_folders):
    folders, _ = result_folders
    default = _invoke(*folders).output
    header = default.splitlines()[0]
    for name in ("profile", "layout", "cell", "offered msgs/s", "achieved msgs/s", "verdict", "pub p50 ms",
                 "pub p99 ms", "e2e p99 ms", "achieved batch", "broker CPU µs/msg", "user disk B/msg"):
        assert name in header
    assert "send lateness" not in header and max(len(line) for line in default.split("\n\n")[0].splitlines()) < 250
    # A legend line for every column shown.
    legend = default.split("Legend:")[1]
    for name in ("offered msgs/s", "verdict", "achieved batch", "user disk B/msg"):
        assert f"  {name}: " in legend
    wide = _invoke(*folders, "--wide").output
    for name in ("send lateness p99 ms", "delayed msg error p99 ms", "consumed msgs/s (all groups)",
                 "delayed msgs pending", "capacity msgs/s", "first unheld msgs/s", "achieved/host msgs/s",
                 "achieved/instance msgs/s", "client CPU µs/msg"):
        assert name in wide.splitlines()[0] and f"  {name}: " in wide.split("Legend:")[1]
    for fmt in ("markdown", "html"):
        text = _invoke(*folders, "--format", fmt).output
        assert "Legend" in text
        assert ("held: achieved &gt;= 99% of offered" if fmt == "html" else "held: achieved >= 99% of offered") in text


def test_sizing_uses_held_rows_only_and_carries_the_reference_broker_caveat(tmp_path, result_doc_factory):
    # Finding 5: the reference broker's offered load on 2 shared cores became "hosts needed 600".
    from datetime import datetime, timezone

    from mqbench.harness.results import write_result

    doc = result_doc_factory(seed=5, rate=1500, cells={"codec=none": 120.0, "codec=zstd:3": 1000.0},
                          created=datetime(2026, 12, 1, tzinfo=timezone.utc))
    loaded = [LoadedResult(write_result(doc, tmp_path), doc)]
    held, saturated = report_rows(loaded, daily_messages=2e9)
    assert held["verdict"] == "held" and held["hosts_needed"] >= 3
    assert saturated["verdict"] == "saturated" and saturated["hosts_needed"] is None
    assert saturated["sizing_basis_msgs_per_s"] is None
    text = render(loaded, "terminal", daily_messages=2e9)
    assert "Caveat (run 1): measured on mqbench's embedded reference broker (Python), not on RocketMQ" in text
    assert "Only rows that held are sized" in text
    doc["target"] = "10.0.0.1:9876"
    assert "Caveat" not in render(loaded, "terminal", daily_messages=2e9)
    assert "Caveat" not in render([LoadedResult(loaded[0].folder, {**doc, "target": None})], "terminal")


def test_a_batched_cell_shows_its_batched_topics_beside_the_whole_cell_with_the_reason(tmp_path, result_doc_factory):
    # Issue 16: the whole-cell zstd disk B/msg was +90 % over `codecs bench` because 22 % of orders
    # messages are delayed and RocketMQ never batches delayed messages. Both figures, side by side.
    doc = result_doc_factory(seed=5, rate=500, cells={"codec=none": 120.0, "codec=zstd:3": 130.0},
                             created=__import__("datetime").datetime(2026, 1, 2, tzinfo=__import__("datetime").timezone.utc))
    doc["layout"] = {**doc["layout"], "replicas_per_group": 3}
    unbatched, batched = doc["cells"]
    unbatched.update(disk_user_bytes_per_msg=2_527.0, disk_batched_bytes_per_msg=None)
    batched.update(disk_user_bytes_per_msg=652.0, disk_batched_bytes_per_msg=423.0)
    batched["aggregates"].update(acked_msgs_total=10_000, delayed_acked_total=2_200)
    batched["batch_achieved"] = {"records_total": 100, "msgs_total": 6_360, "msgs_per_record_mean": 63.6,
                                 "msgs_per_record_p50": 64, "msgs_per_record_p99": 64, "asked_msgs": 64,
                                 "under_half_asked": False}
    loaded = [LoadedResult(tmp_path, doc)]
    text = render(loaded, "terminal")
    header = text.splitlines()[0]
    assert header.index("user disk B/msg") < header.index("batched topics disk B/msg")
    row = next(line for line in text.splitlines() if "codec=zstd:3" in line)
    assert "652" in row and "423" in row
    assert "codec=zstd:3: 22% of its messages are delayed" in text
    assert "RocketMQ never batches delayed messages" in text
    assert "whole cell 652 B/msg, batched topics 423 B/msg (141 per copy" in text
    assert "  batched topics disk B/msg: " in text.split("Legend:")[1]
    rows = report_document(loaded)["rows"]
    assert rows[1]["disk_batched_bytes_per_msg_per_copy"] == pytest.approx(141.0)
    assert rows[1]["unbatched_msgs_share"] == pytest.approx(0.22)
    # A report of cells that batch nothing keeps the default table as it was.
    plain = render([LoadedResult(tmp_path, {**doc, "cells": [unbatched]})], "terminal")
    assert "batched topics" not in plain.splitlines()[0]
    assert "batched topics disk B/msg" in render(loaded, "markdown") and "batched topics" in render(loaded, "html")
