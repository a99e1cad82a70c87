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
