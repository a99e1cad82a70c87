"""``mqbench dr --cluster ray://...``: every scheme and fault runs on Ray nodes now (partitions cut in
the room links on the nodes, scheme C's standby and replicator placed too: ``tests/on_ray``); what is
still refused (contradicting or incomplete Ray options) is one line (exit 2) before anything starts
(no Ray connection, no folder, no process); the refusals need no Ray."""
from __future__ import annotations

import importlib.util

import pytest
from click.testing import CliRunner

from mqbench.cli import cli
from mqbench.dr.drill import DrillSettings, ray_refusal
from mqbench.errors import UserError

RAY = "ray://127.0.0.1:1"      # nothing listens there: a refusal must come before any connection


def error_line(args: list[str]) -> str:
    result = CliRunner().invoke(cli, ["dr", *args])
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mqbench: error: "), result.output
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["--scheme", "A", "--cluster", RAY, "--ray", "auto"], ["either --cluster ray://... or --ray auto"]),
    (["--scheme", "A", "--ray-head-workers"], ["--ray-head-workers needs --cluster"]),
    (["--scheme", "A", "--cluster", "10.0.0.1:10001"], ["give ray://HEAD:10001"]),
])
def test_unsupported_ray_combinations_are_one_line_errors_before_anything_starts(tmp_path, args, words):
    line = error_line([*args, "--dir", str(tmp_path / "drill"), "--results", str(tmp_path / "results")])
    for word in words:
        assert word in line, line
    assert not (tmp_path / "drill").exists() and not (tmp_path / "results").exists()


def test_every_scheme_and_fault_is_accepted_on_ray(tmp_path):
    assert [ray_refusal(s, f) for s in "ABC" for f in ("instance", "host", "room", "partition")] == [None] * 12
    DrillSettings(scheme="C", fault="partition", directory=tmp_path, ray=RAY)
    DrillSettings(scheme="A", fault="partition", directory=tmp_path, ray=RAY)
    with pytest.raises(UserError, match="scheme 'D' is not one of"):
        DrillSettings(scheme="D", fault="room", directory=tmp_path, ray=RAY)


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed here")
@pytest.mark.parametrize("args", [["--scheme", "A", "--fault", "room"], ["--scheme", "C", "--fault", "partition"],
                                  ["--fault", "partition"]])
def test_a_drill_on_ray_without_ray_installed_says_how_to_get_it(tmp_path, args):
    line = error_line([*args, "--cluster", RAY, "--dir", str(tmp_path / "d"), "--no-save"])
    assert "pip install 'mqbench[ray]'" in line


def test_dr_help_names_the_ray_options_and_what_is_refused():
    result = CliRunner().invoke(cli, ["dr", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in ("--cluster ray://HEAD:10001", "--ray [auto]", "--ray-head-workers", "Every scheme and fault",
                  "a partition is cut there", "its replicator runs on a standby node"):
        assert words in text, words
