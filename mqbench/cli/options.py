"""Options and parsers shared by the command modules, so each flag behaves the same everywhere."""
from __future__ import annotations

import re

import click

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


def parse_duration_ms(text: str) -> int:
    """Parse ``500ms``, ``10s``, ``2m``, ``1h``, ``3d`` or a bare number of seconds into ms.

    Raises ValueError with a message naming the accepted forms.
    """
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (examples: 500ms, 10s, 2m, 1h)")
    return int(float(match.group(1)) * _DURATION_UNIT_MS[match.group(2)])


class DurationMs(click.ParamType):
    """A click parameter holding a duration, converted to integer milliseconds."""

    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_duration_ms(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class IntList(click.ParamType):
    """A comma-separated list of positive integers such as ``1,16,256``."""

    name = "list"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        try:
            items = [int(part) for part in value.split(",") if part.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)
        if not items or any(item <= 0 for item in items):
            self.fail(f"{value!r} must list positive integers", param, ctx)
        return items


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (versioned schema) instead of a table.")
seed_option = click.option("--seed", type=int, default=1, show_default=True, help="Seed for every random choice, so runs repeat.")

# The Ray options of the commands that can place hosts (and a run's workers) on a Ray cluster (`run`,
# `dr`, `cluster up`): declared once, so their --help and their refusals read the same everywhere.
# Each command declares its own --cluster (what runs on the nodes differs per command).
ray_mode_option = click.option("--ray", "ray_mode", type=click.Choice(["auto"]), default=None,
                               help="'auto': the Ray cluster this command runs in (a RayJob's entrypoint), as "
                                    "--cluster.")
ray_head_workers_option = click.option("--ray-head-workers", is_flag=True,
                                       help="With --cluster: the head node may take layout hosts (and a run's "
                                            "workers) too; by default it takes none.")


def ray_address(cluster: str | None, head_workers: bool, mode: str | None = None, *,
                offers_mode: bool = True) -> str | None:
    """The Ray address that ``--cluster`` / ``--ray auto`` give (``"auto"`` for the latter), or None when
    the command is not to run on Ray. ``UserError`` (one line, before anything starts) for both
    together and for ``--ray-head-workers`` without either. ``offers_mode``: whether the command has
    ``--ray`` at all (the error then names it)."""
    from mqbench.errors import UserError

    if cluster is not None and mode is not None:
        raise UserError("give either --cluster ray://... or --ray auto, not both")
    if cluster is None and mode is None:
        if head_workers:
            raise UserError("--ray-head-workers needs --cluster ray://..." + (" (or --ray auto)" if offers_mode else ""))
        return None
    return cluster if cluster is not None else "auto"
