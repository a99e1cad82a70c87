"""Result folders: round trip, atomic writing, and every kind of bad file named clearly."""
from __future__ import annotations

import copy
import json
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.cli import cli
from mqbench.errors import CorruptDataError, UserError
from mqbench.harness.histograms import decode_histogram
from mqbench.harness.results import (RESULT_FILE, RESULT_SCHEMA, TABLE_FILE, TIMESERIES_FILE, folder_name,
                                     git_info, load_result, validate_result, write_result)


def test_round_trip(result_folders):
    folders, docs = result_folders
    for folder, doc in zip(folders, docs):
        loaded_folder, loaded = load_result(folder)
        assert loaded_folder == folder
        assert loaded == json.loads(json.dumps(doc))
        assert load_result(folder / RESULT_FILE)[1] == loaded
        assert sorted(p.name for p in folder.iterdir()) == [RESULT_FILE, TABLE_FILE, TIMESERIES_FILE]
    assert folders[0].name == "20261124T171500Z-orders-0123456"
    assert folders[1].name == "20261124T180005Z-iot-fedcba9"
    assert not any(p.name.startswith(".") for p in folders[0].parent.iterdir())  # no temp folder left


def test_result_carries_what_makes_it_traceable(result_folders):
    _, doc = load_result(result_folders[0][1])
    assert doc["schema"] == RESULT_SCHEMA and doc["git"]["dirty"] is True and doc["seed"] == 12
    assert doc["limits"]["disk_write_fdatasync_mb_per_s"] == 180.0
    cell = doc["cells"][0]
    assert cell["aggregates"]["sustainable_rate_per_s"] == cell["max_rate_search"]["sustainable_rate_per_s"]
    assert cell["aggregates"]["sustainable_rate_per_s"] <= 42_000
    histogram = decode_histogram(cell["histograms"]["publish_latency"])
    assert histogram.get_total_count() == cell["aggregates"]["published"] > 10_000
    assert cell["aggregates"]["early_deliveries"] > 0  # the simulated 1 s timer wheel rounds down
    assert cell["aggregates"]["delay_error_ms_p1"] < 0 < cell["aggregates"]["delay_error_ms_max"]
    assert cell["cpu_s_per_million_msgs"] > 0


def test_result_says_which_accelerators_were_in_use(result_folders):
    from mqbench import native

    _, doc = load_result(result_folders[0][1])
    assert doc["native"] == native.report() and set(doc["native"]) == set(native.MODULES)


def test_timeseries_has_one_row_per_cell_and_window(result_folders):
    folders, docs = result_folders
    table = pq.read_table(folders[0] / TIMESERIES_FILE).to_pylist()
    assert [(r["cell"], r["window_index"]) for r in table] == [
        ("codec=none", 0), ("codec=none", 1), ("codec=zstd:3", 0), ("codec=zstd:3", 1)]
    assert table[0]["throughput_msgs_per_s"] == docs[0]["cells"][0]["windows"][0]["throughput_msgs_per_s"]
    assert table[0]["publish_latency_ms_p99"] == docs[0]["cells"][0]["windows"][0]["publish_latency_ms_p99"]


def test_a_taken_folder_name_gets_a_suffix_and_a_failed_write_leaves_nothing(result_folders, tmp_path):
    _, docs = result_folders
    first = write_result(docs[0], tmp_path, table_md="x\n")
    second = write_result(docs[0], tmp_path, table_md="x\n")
    assert second.name == first.name + "-2"
    with pytest.raises(AttributeError):
        write_result(docs[0], tmp_path, table_md=object())  # fails after the JSON and Parquet are written
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name, second.name]


def test_folder_name_of_a_trace_run_outside_git():
    doc = {"created_utc": "2026-01-02T03:04:05Z", "workload": {"profile": None, "trace_file": "/data/prod orders.parquet"},
           "git": {"commit": None, "dirty": None}}
    assert folder_name(doc) == "20260102T030405Z-prod_orders-nogit"


def test_git_info_reads_the_checkout_and_is_empty_outside_one(tmp_path):
    from pathlib import Path

    import mqbench

    info = git_info(Path(mqbench.__file__).parent)
    assert len(info["commit"]) == 40 and isinstance(info["dirty"], bool)
    assert git_info(tmp_path) == {"commit": None, "dirty": None}


def _write_doc(tmp_path, doc) -> str:
    folder = tmp_path / "bad"
    folder.mkdir(exist_ok=True)
    (folder / RESULT_FILE).write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return str(folder)


def _mutations():
    def setter(path, value):
        def apply(doc):
            target = doc
            for key in path[:-1]:
                target = target[key]
            if value is _DELETE:
                del target[path[-1]]
            else:
                target[path[-1]] = value
        return apply

    return [
        (setter(["schema"], "mqbench.result/3"), "schema 'mqbench.result/3' is not supported"),
        (setter(["schema"], "omb.result"), "not an mqbench result"),
        (setter(["seed"], "seven"), "field 'seed' must be int"),
        (setter(["seed"], True), "field 'seed' must be int, got a boolean"),
        (setter(["machine"], _DELETE), "field 'machine' is missing"),
        (setter(["cells"], []), "at least one cell"),
        (setter(["layout", "hosts"], 0), "layout.hosts must be a positive integer"),
        (setter(["git", "dirty"], "yes"), "git must hold"),
        (setter(["cells", 0, "histograms", "e2e_latency"], "AAAA"), "cells\\[0\\]: histogram e2e_latency"),
        (setter(["cells", 0, "histograms", "publish_delay"], _DELETE), "histogram 'publish_delay' is missing"),
        (setter(["cells", 0, "aggregates", "throughput_msgs_per_s"], _DELETE), "aggregate 'throughput_msgs_per_s'"),
        (setter(["cells", 0, "windows"], [1]), "windows\\[0\\]"),
        (setter(["duration_ms"], 0), "duration_ms"),
        (setter(["cells", 0, "verdict"], "great"), "verdict 'great' is not one of held, saturated, failed"),
        (setter(["cells", 0, "verdict_signals"], _DELETE), "field 'verdict_signals' is missing"),
        (setter(["native"], {"mqbench.migrate._scan": "yes"}), "native must map"),
    ]


_DELETE = object()


@pytest.mark.parametrize("index", range(16))
def test_bad_documents_are_rejected_naming_the_problem(result_folders, tmp_path, index):
    mutate, message = _mutations()[index]
    doc = copy.deepcopy(result_folders[1][0])
    mutate(doc)
    with pytest.raises(CorruptDataError, match=message):
        load_result(_write_doc(tmp_path, doc))


def test_duplicate_cell_names_are_rejected(result_folders):
    doc = copy.deepcopy(result_folders[1][0])
    doc["cells"][1]["name"] = doc["cells"][0]["name"]
    with pytest.raises(CorruptDataError, match="appears twice"):
        validate_result(doc)


def test_unreadable_files_are_user_errors(tmp_path):
    with pytest.raises(CorruptDataError, match="not JSON"):
        load_result(_write_doc(tmp_path, '{"schema": "mqbench.result/1",'))
    with pytest.raises(CorruptDataError, match="must be a JSON object"):
        load_result(_write_doc(tmp_path, "[1, 2]"))
    (tmp_path / "bad" / RESULT_FILE).write_bytes(b"\xff\xfe{}")
    with pytest.raises(CorruptDataError, match="not UTF-8"):
        load_result(tmp_path / "bad")
    with pytest.raises(UserError, match="no such result"):
        load_result(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no result.json"):
        load_result(tmp_path / "empty")


def test_cli_reports_a_bad_result_in_one_line_with_exit_2(result_folders, tmp_path):
    doc = copy.deepcopy(result_folders[1][0])
    doc["schema"] = "mqbench.result/9"
    path = _write_doc(tmp_path, doc)
    outcome = CliRunner().invoke(cli, ["report", path])
    assert outcome.exit_code == 2
    lines = outcome.output.strip().splitlines()
    assert len(lines) == 1 and "mqbench.result/9" in lines[0] and "Traceback" not in outcome.output


def test_build_result_refuses_an_invalid_document():
    from mqbench.harness.results import build_result

    with pytest.raises(CorruptDataError, match="at least one cell"):
        build_result(cells=[], seed=1, command_line=[], machine={}, limits=None,
                     layout={"name": "x", "hosts": 1, "groups": 1, "replicas_per_group": 1, "instances": 1,
                             "instances_per_host": 1.0},
                     workload={}, codec={}, batch={}, payload_source={}, warmup_ms=0, duration_ms=1, window_ms=1,
                     git={"commit": None, "dirty": None}, created_utc=datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_workload_info_hashes_the_trace_and_layout_summary_counts_instances(tmp_path):
    import hashlib

    from mqbench.broker.layout import load_layout
    from mqbench.harness.results import layout_summary, workload_info

    trace = tmp_path / "orders.parquet"
    trace.write_bytes(b"PAR1" + bytes(range(256)) * 10)
    info = workload_info(trace_file=trace)
    assert info["trace_sha256"] == hashlib.sha256(trace.read_bytes()).hexdigest() and info["profile"] is None
    assert workload_info(profile="orders")["trace_sha256"] is None
    with pytest.raises(UserError, match="exactly one"):
        workload_info()
    with pytest.raises(UserError, match="does not exist"):
        workload_info(trace_file=tmp_path / "gone.parquet")
    layout = load_layout("3x3")
    summary = layout_summary(layout)
    assert summary["instances"] == sum(len(r) for r in layout.groups.values())
    assert summary["instances_per_host"] == summary["instances"] / len(layout.hosts)
    assert summary["replicas_per_group"] == max(len(r) for r in layout.groups.values())


_JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
                            | st.text(max_size=8), lambda inner: st.lists(inner, max_size=3)
                            | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            if key != "histograms" or len(prefix) < 3:
                yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value[:2]):
            yield from _paths(child, prefix + (index,))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_fuzzed_documents_load_and_report_or_fail_with_a_named_error(result_folders, tmp_path_factory, data):
    from mqbench.harness.report import LoadedResult, render

    doc = copy.deepcopy(result_folders[1][0])
    paths = [p for p in _paths(doc) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        target = doc
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = data.draw(_JSON_VALUES)
        except (KeyError, IndexError, TypeError):
            continue
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / RESULT_FILE).write_text(json.dumps(doc))
    try:
        loaded = load_result(folder)
    except UserError:
        return
    for fmt in ("terminal", "markdown", "csv", "html"):
        render([LoadedResult(*loaded)], fmt, daily_messages=1e11)


@given(blob=st.binary(max_size=300))
def test_fuzzed_bytes_are_corrupt_data(tmp_path_factory, blob):
    folder = tmp_path_factory.mktemp("bytes")
    (folder / RESULT_FILE).write_bytes(blob)
    with pytest.raises(UserError):
        load_result(folder)


@pytest.mark.parametrize("field, value", [("window_start_ms", None), ("duration_ms", "10s"),
                                          ("publish_latency_ms_p99", "fast")])
def test_a_window_field_that_is_not_a_number_is_named(result_folders, tmp_path, field, value):
    # found by the fuzz test above: such a window used to pass validation and break the html charts
    doc = copy.deepcopy(result_folders[1][0])
    doc["cells"][0]["windows"][0][field] = value
    (tmp_path / RESULT_FILE).write_text(json.dumps(doc))
    with pytest.raises(UserError, match=rf"windows\[0\]\.{field} must be a number"):
        load_result(tmp_path)


def test_a_schema_1_result_still_loads_and_is_judged_by_the_same_rules(result_folders, tmp_path):
    from mqbench.harness.report import LoadedResult, report_rows

    doc = copy.deepcopy(result_folders[1][0])
    doc["schema"] = "mqbench.result/1"
    for cell in doc["cells"]:
        for name in ("verdict", "verdict_signals", "verdict_detail", "offered_msgs_per_s", "achieved_msgs_per_s",
                     "capacity_msgs_per_s", "first_unheld_rate_msgs_per_s"):
            del cell[name]
    folder, loaded = load_result(_write_doc(tmp_path, doc))
    rows = report_rows([LoadedResult(folder, loaded)])
    assert [row["verdict"] for row in rows] == [cell["verdict"] for cell in result_folders[1][0]["cells"]]


def test_the_achieved_batch_says_whether_it_is_under_half_the_asked_size():
    # Issue 16 finding 2: the cell says so in a field; the validator accepts that flag, nothing else odd.
    from mqbench.harness.result_schema import _check_optional_cell_fields
    from mqbench.errors import CorruptDataError

    batch = {"records_total": 3, "msgs_total": 4, "msgs_per_record_mean": 1.3, "msgs_per_record_p50": 1,
             "msgs_per_record_p99": 2, "asked_msgs": 64, "under_half_asked": True}
    _check_optional_cell_fields({"batch_achieved": batch, "disk_stamp_bytes_total": 10}, "cell")
    for bad in ({**batch, "under_half_asked": "yes"}, {**batch, "msgs_total": True}):
        with pytest.raises(CorruptDataError):
            _check_optional_cell_fields({"batch_achieved": bad}, "cell")
