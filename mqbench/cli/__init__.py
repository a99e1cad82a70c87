"""The ``mqbench`` command line: one thin click module per command group.

Command modules are imported lazily so that ``mqbench --help`` and quick commands do not pay for
importing pyarrow or the broker. Every error from mqbench's own hierarchy is turned into a one-line
message and an exit code here, in one place (see ``mqbench.errors``).
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from mqbench import __version__
from mqbench.errors import InvariantViolation, MqbenchError, UserError


def _discover_commands() -> dict[str, str]:
    """Command name -> module. A module ``mqbench/cli/NAME_cmd.py`` defines the click command ``NAME``.

    Discovery by file name means a new command group lands without editing a shared list.
    """
    commands = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name.endswith("_cmd"):
            commands[module.name[: -len("_cmd")]] = f"{__name__}.{module.name}"
    return commands


COMMANDS: dict[str, str] = _discover_commands()

EXIT_USER_ERROR = 2
EXIT_INVARIANT = 70  # EX_SOFTWARE


class ReportedError(click.ClickException):
    """An mqbench error shown to the user as one line, with the exit code of its kind."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:  # noqa: D401 - click API
        click.echo(f"mqbench: error: {self.format_message()}", err=True)


class MqbenchGroup(click.Group):
    """A click group that loads its commands lazily and reports mqbench errors in one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        target = COMMANDS.get(name)
        if target is None:
            return None
        return getattr(importlib.import_module(target), name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise ReportedError(str(exc), EXIT_USER_ERROR) from exc
        except InvariantViolation as exc:
            raise ReportedError(f"internal invariant violated, stopping: {exc}", EXIT_INVARIANT) from exc
        except MqbenchError as exc:
            raise ReportedError(str(exc), 1) from exc
        except BrokenPipeError:
            raise  # the reader of our output left (`| head`); main() ends quietly
        except FileNotFoundError as exc:
            raise ReportedError(f"no such file: {exc.filename}", EXIT_USER_ERROR) from exc
        except PermissionError as exc:
            raise ReportedError(f"permission denied: {exc.filename}", EXIT_USER_ERROR) from exc
        except OSError as exc:
            raise ReportedError(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), 1) from exc


@click.group(cls=MqbenchGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mqbench")
def cli() -> None:
    """mqbench: benchmark and migration toolkit for RocketMQ upgrades.

    Compare codecs, batching, delay schemes and deployment layouts on a reference Raft broker
    (or a real RocketMQ cluster) with your own workload, and move stores and consumer offsets
    between storage format versions.
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        cli.main(args=argv, prog_name="mqbench")
    except BrokenPipeError:
        # `mqbench ... | head`: the reader left; that is not an error worth a traceback.
        sys.stderr.close()
        sys.exit(0)
