"""``mqbench dr --cluster ray://...``: what cannot run on Ray nodes is refused with one line (exit 2)
before anything starts (no Ray connection, no folder, no process); the refusals need no Ray."""
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
    (["--scheme", "C", "--fault", "room", "--cluster", RAY], ["scheme C is not supported on Ray nodes", "--scheme A or B"]),
    (["--fault", "room", "--cluster", RAY], ["scheme C is not supported on Ray nodes"]),     # --scheme all has C
    (["--scheme", "A", "--fault", "partition", "--cluster", RAY], ["--fault partition is not supported on Ray nodes",
                                                                   "instance, host, room"]),
    (["--scheme", "B", "--fault", "partition", "--ray", "auto"], ["--fault partition is not supported"]),
    (["--scheme", "A", "--cluster", RAY, "--ray", "auto"], ["either --cluster ray://... or --ray auto"]),
    (["--scheme", "A", "--ray-head-workers"], ["--ray-head-workers needs --cluster"]),
    (["--scheme", "A", "--cluster", "10.0.0.1:10001"], ["give ray://HEAD:10001"]),
])
def test_unsupported_ray_combinations_are_one_line_errors_before_anything_starts(tmp_path, args, words):
    line = error_line([*args, "--dir", str(tmp_path / "drill"), "--results", str(tmp_path / "results")])
    for word in words:
        assert word in line, line
    assert not (tmp_path / "drill").exists() and not (tmp_path / "results").exists()


def test_drill_settings_on_ray_refuse_what_the_cli_refuses(tmp_path):
    with pytest.raises(UserError, match="scheme C is not supported on Ray nodes"):
        DrillSettings(scheme="C", fault="instance", directory=tmp_path, ray=RAY)
    with pytest.raises(UserError, match="--fault partition is not supported on Ray nodes"):
        DrillSettings(scheme="A", fault="partition", directory=tmp_path, ray=RAY)
    DrillSettings(scheme="C", fault="partition", directory=tmp_path)          # locally both run
    assert [ray_refusal(s, f) for s in "AB" for f in ("instance", "host", "room")] == [None] * 6


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed here")
def test_a_supported_drill_on_ray_without_ray_installed_says_how_to_get_it(tmp_path):
    line = error_line(["--scheme", "A", "--fault", "room", "--cluster", RAY, "--dir", str(tmp_path / "d"), "--no-save"])
    assert "pip install 'mqbench[ray]'" in line


def test_dr_help_names_the_ray_options_and_what_is_refused():
    result = CliRunner().invoke(cli, ["dr", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in ("--cluster ray://HEAD:10001", "--ray [auto]", "--ray-head-workers", "partition and scheme C are refused"):
        assert words in text, words
