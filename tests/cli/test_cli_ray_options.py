"""The Ray options that ``mqbench run``, ``dr`` and ``cluster up`` share (``--ray auto``,
``--ray-head-workers``) have one home (``mqbench.cli.options``): the same --help text in every
command, and the same refusals, one line (exit 2) before anything starts. No Ray needed."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from mqbench.cli import cli

RAY = "ray://127.0.0.1:1"      # nothing listens there: a refusal must come before any connection
COMMANDS = {"run": ["run", "orders"], "dr": ["dr", "--scheme", "A"], "cluster up": ["cluster", "up", "--layout", "single"]}


def _command(path: list[str]):
    command, ctx = cli, click.Context(cli)
    for word in path:
        if not isinstance(command, click.Group):
            break
        command = command.get_command(ctx, word)
        ctx = click.Context(command, parent=ctx)
    return command


def _help(path: list[str], option: str) -> str | None:
    params = [p for p in _command(path).params if option in getattr(p, "opts", ())]
    return params[0].help if params else None


def error_line(args: list[str]) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mqbench: error: "), result.output
    return lines[0]


def test_the_shared_ray_options_read_the_same_in_every_command():
    head = {name: _help(path, "--ray-head-workers") for name, path in COMMANDS.items()}
    assert None not in head.values() and len(set(head.values())) == 1, head
    auto = {name: _help(COMMANDS[name], "--ray") for name in ("run", "dr")}
    assert None not in auto.values() and len(set(auto.values())) == 1, auto


@pytest.mark.parametrize("name", list(COMMANDS))
def test_ray_head_workers_without_a_ray_cluster_is_refused_in_every_command(tmp_path, name):
    # --acl names a missing file: a command that ignored --ray-head-workers would fail on that instead
    where = str(tmp_path / "d")
    extra = {"run": ["--acl", str(tmp_path / "missing.yml"), "--out", where],
             "dr": ["--dir", where, "--no-save"],
             "cluster up": ["--acl", str(tmp_path / "missing.yml"), "--dir", where]}[name]
    args = [*COMMANDS[name], "--ray-head-workers", *extra]
    line = error_line(args)
    assert "--ray-head-workers needs --cluster ray://..." in line, line
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("name", ["run", "dr"])
def test_cluster_and_ray_auto_together_are_refused(tmp_path, name):
    line = error_line([*COMMANDS[name], "--cluster", RAY, "--ray", "auto", "--dir" if name == "dr" else "--out",
                       str(tmp_path / "d")])
    assert "give either --cluster ray://... or --ray auto, not both" in line, line
