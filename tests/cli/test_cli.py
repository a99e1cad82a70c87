"""CLI behaviour: help everywhere, JSON documents with schema versions, one-line errors, exit 2."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mqbench import __version__
from mqbench.cli import COMMANDS, cli


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.output


def _all_command_paths():
    import click

    paths = []

    def walk(command, prefix):
        paths.append(prefix)
        if isinstance(command, click.Group):
            ctx = click.Context(command)
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), prefix + [name])

    walk(cli, [])
    return paths


def test_every_command_has_help():
    paths = _all_command_paths()
    assert ["codecs", "bench"] in paths and ["limits"] in paths
    for path in paths:
        result = run(*path, "--help")
        assert result.exit_code == 0, path
        assert "Usage:" in result.output


def test_codecs_bench_json_carries_schema_and_units():
    result = run("codecs", "bench", "--workload", "iot", "--codecs", "none,zstd:3", "--batch", "1,8",
                 "--messages", "64", "--min-time-ms", "1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["schema"] == "mqbench.codecs-bench/1" and doc["tool_version"] == __version__
    assert len(doc["cells"]) == 4
    for cell in doc["cells"]:
        assert {"compress_mb_per_s", "decompress_mb_per_s", "compression_ratio", "batch_msgs"} <= set(cell)
    # a profile also gets the stored-bytes prediction, batchable and whole workload apart (codecs.footprint)
    stored = doc["stored_per_msg"]
    assert [(s["codec"], s["batch_msgs"]) for s in stored] == [("none", 1), ("none", 8), ("zstd:3", 1), ("zstd:3", 8)]
    assert all(s["batchable_bytes_per_msg"] > 0 and s["whole_bytes_per_msg"] > 0 for s in stored)


def test_codecs_bench_with_dictionary(tmp_path):
    dictionary = tmp_path / "orders.dict"
    result = run("codecs", "train-dict", "--workload", "orders", "--messages", "500", "--size-bytes", "8192",
                 "--out", str(dictionary))
    assert result.exit_code == 0, result.output
    assert dictionary.stat().st_size > 0
    result = run("codecs", "bench", "--workload", "orders", "--codecs", "zstd:3", "--batch", "1",
                 "--messages", "200", "--min-time-ms", "1", "--dict", str(dictionary), "--json")
    cells = json.loads(result.output)["cells"]
    plain, with_dict = cells
    assert with_dict["codec"] == "zstd:3+dict"
    assert with_dict["compression_ratio"] > plain["compression_ratio"]


def test_codecs_bench_on_a_file_of_bodies(tmp_path):
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(json.dumps({"id": i, "status": "PAID", "amount": i * 3.5}) for i in range(100)))
    result = run("codecs", "bench", "--workload", str(path), "--codecs", "lz4", "--batch", "10",
                 "--min-time-ms", "1", "--json")
    doc = json.loads(result.output)
    assert doc["payload_source"] == "file:export.jsonl" and doc["messages"] == 100
    assert doc["stored_per_msg"] is None      # bodies alone: no topics, keys or delays to build records from


@pytest.mark.parametrize("args, message", [
    (["codecs", "bench", "--codecs", "brotli"], "unknown codec 'brotli'"),
    (["codecs", "bench", "--workload", "/no/such/file"], "neither a built-in profile"),
    (["codecs", "bench", "--codecs", "zstd:40"], "zstd level must be"),
    (["codecs", "train-dict", "--workload", "/no/such", "--out", "x"], "neither a built-in profile"),
])
def test_user_errors_are_one_line_exit_2(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_bad_flag_value_is_exit_2():
    result = CliRunner().invoke(cli, ["codecs", "bench", "--batch", "x,y"])
    assert result.exit_code == 2 and "--batch" in result.output


def test_empty_workload_file_is_a_user_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = CliRunner().invoke(cli, ["codecs", "bench", "--workload", str(empty)])
    assert result.exit_code == 2 and "holds no message bodies" in result.output


def test_real_subprocess_json_and_error():
    """The installed console script, as a user runs it."""
    ok = subprocess.run([sys.executable, "-m", "mqbench", "codecs", "list", "--json"], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["schema"] == "mqbench.codecs-list/1"
    bad = subprocess.run([sys.executable, "-m", "mqbench", "codecs", "bench", "--codecs", "nope"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "mqbench: error: unknown codec 'nope'; known codecs: none, zlib, zstd, lz4, snappy"


def test_limits_json_small_budget(tmp_path):
    result = run("limits", "--dir", str(tmp_path), "--budget-s", "4", "--json")
    doc = json.loads(result.output)
    assert doc["schema"] == "mqbench.limits/1"
    assert doc["disk_write_fdatasync_mb_per_s"] > 0 and doc["disk_fdatasync_per_s"] > 0
    assert doc["loopback_small_frames_per_s"] > 0 and doc["loopback_mb_per_s"] > 0
    assert {c["codec"] for c in doc["codecs"]} == {"zlib:5", "zstd:3", "lz4", "snappy"}
    assert list(tmp_path.iterdir()) == []  # the probe file is removed


def test_commands_are_discovered_from_modules():
    assert {"codecs", "limits"} <= set(COMMANDS)
