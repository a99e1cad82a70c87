"""`mqbench workloads`: JSON schemas, identical files from a seed, one-line errors with exit code 2."""
import hashlib
import json

import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.workloads.trace import iter_trace_rows, read_trace_info


def run(*args):
    return CliRunner().invoke(cli, ["workloads", *args], catch_exceptions=False)


def test_list_table_and_json():
    result = run("list")
    assert result.exit_code == 0
    for name in ("orders", "notifications", "iot"):
        assert name in result.output
    doc = json.loads(run("list", "--json").stdout)
    assert doc["schema"] == "mqbench.workloads-list/1"
    orders = {p["profile"]: p for p in doc["profiles"]}["orders"]
    assert orders["delayed_share"] == pytest.approx(0.22) and orders["base_msgs_per_s"] == 3000
    assert "order_payment_timeout" in orders["topics"]


def test_show_profile_json_has_rates_sizes_delays_topics_and_compression():
    result = run("show", "orders", "--messages", "600", "--codecs", "none,zstd:3", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "mqbench.workload-show/1" and doc["kind"] == "profile"
    assert doc["rate"]["rate_msgs_per_s_max"] > doc["rate"]["rate_msgs_per_s_mean"] > doc["rate"]["rate_msgs_per_s_min"]
    timeline = doc["rate_timeline"]
    assert len(timeline) == 24 and timeline[1]["start_ms"] == 3_600_000
    evening, night = timeline[20]["rate_msgs_per_s_mean"], timeline[4]["rate_msgs_per_s_mean"]
    assert evening > 5 * night
    sample = doc["sample"]
    assert sample["messages"] == 600 and sample["body_bytes"]["p99"] >= sample["body_bytes"]["p50"]
    assert sample["delay"]["by_level"]["16"] > 0 and 0.15 < sample["delay"]["delayed_share"] < 0.3
    ratios = {c["codec"]: c for c in sample["compression"]}
    assert ratios["none"]["ratio_per_message"] == 1.0
    assert ratios["zstd:3"]["ratio_batch"] > ratios["zstd:3"]["ratio_per_message"] > 1.0
    assert {t["topic"] for t in sample["topics"]} == {"order_events", "order_payment_timeout"}
    by_topic = {t["topic"]: t["compression_ratio_per_message"] for t in sample["topics"]}
    assert by_topic["order_events"]["none"] == 1.0
    # both topics' per-message ratios bracket the overall one
    low, high = sorted(r["zstd:3"] for r in by_topic.values())
    assert low <= ratios["zstd:3"]["ratio_per_message"] <= high


def test_show_table_for_a_profile_and_a_trace(tmp_path):
    result = run("show", "iot", "--messages", "300", "--codecs", "zstd:3")
    assert result.exit_code == 0, result.output
    assert "iot_telemetry" in result.output and "zstd:3" in result.output and "level 3" in result.output
    out = tmp_path / "n.parquet"
    assert run("generate", "notifications", "--messages", "400", "--out", str(out)).exit_code == 0
    result = run("show", str(out), "--messages", "200", "--codecs", "lz4")
    assert result.exit_code == 0, result.output
    assert "400 messages" in result.output and "notify_marketing" in result.output
    doc = json.loads(run("show", str(out), "--codecs", "none", "--json").stdout)
    assert doc["kind"] == "trace" and doc["trace"]["profile"] == "notifications" and doc["sample"]["messages"] == 400


def test_generate_is_deterministic_from_the_seed(tmp_path):
    digests = []
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        out = tmp_path / f"{name}.parquet"
        result = run("generate", "orders", "--messages", "800", "--seed", seed, "--out", str(out), "--json")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["messages"] == 800 and doc["seed"] == int(seed)
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1] != digests[2]
    info = read_trace_info(tmp_path / "a.parquet")
    assert (info.profile, info.seed, info.source, info.messages) == ("orders", 5, "generated", 800)


def test_generate_by_duration(tmp_path):
    out = tmp_path / "d.parquet"
    assert run("generate", "iot", "--duration", "200ms", "--out", str(out)).exit_code == 0
    offsets = [m.send_offset_us for m in iter_trace_rows(out)]
    assert offsets[-1] < 200_000 and 3000 < len(offsets) < 5000


def test_import_command(tmp_path):
    src = tmp_path / "export.jsonl"
    src.write_text('{"ts": 1764000000000, "body": "a", "topic": "t"}\n{"ts": "bad", "body": "b", "topic": "t"}\n'
                   '{"ts": 1764000000100, "body": "c", "topic": "t"}\n')
    out = tmp_path / "i.parquet"
    result = run("import", str(src), "--out", str(out), "--time-column", "ts")
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "export.jsonl line 2: time 'bad' is neither an epoch number nor ISO-8601" in result.stderr
    result = run("import", str(src), "--out", str(out), "--time-column", "ts", "--skip-bad", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["messages"] == 2 and doc["skipped_rows"] == 1 and doc["skipped"][0]["where"] == "line 2"
    assert "skipped" in result.stderr and "line 2" in result.stderr
    assert [m.body for m in iter_trace_rows(out)] == [b"a", b"c"]


@pytest.mark.parametrize("args,message", [
    (["show", "nosuch"], "no profile 'nosuch'"),
    (["show", "orders", "--codecs", "brotli"], "brotli"),
    (["generate", "orders", "--out", "x.parquet"], "give --messages N, --duration D or both"),
    (["generate", "orders", "--messages", "5", "--out", "/nonexistent/dir/x.parquet"], "does not exist"),
    (["import", "/nonexistent.jsonl", "--out", "x.parquet"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.startswith("mqbench: error:")
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0


def test_show_reports_a_damaged_trace_in_one_line(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 definitely not parquet PAR1")
    result = run("show", str(bad))
    assert result.exit_code == 2 and "bad.parquet: not a readable Parquet file" in result.stderr


def test_show_an_empty_trace(tmp_path):
    from mqbench.workloads.trace import TraceWriter

    empty = tmp_path / "empty.parquet"
    with TraceWriter(empty, source="recorded", source_detail="nothing sent"):
        pass
    result = run("show", str(empty))
    assert result.exit_code == 0, result.output
    assert "0 messages" in result.stdout and "sample: no messages" in result.stdout
    doc = json.loads(run("show", str(empty), "--json").stdout)
    assert doc["sample"]["messages"] == 0 and doc["sample"]["body_bytes"]["avg"] is None
