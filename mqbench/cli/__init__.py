"""The ``mqbench`` command line: one thin click module per command group.

Command modules are imported lazily so that ``mqbench --help`` and quick commands do not pay for
importing pyarrow or the broker. Every error from mqbench's own hierarchy is turned into a one-line
message and an exit code here, in one place (see ``mqbench.errors``).
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import signal
import sys
import threading

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
CLEANUP_GRACE_S = 30.0   # after an interrupt, the longest the clean-up may take before the process exits
_INTERRUPTED_BY = [signal.SIGINT, False]   # the signal that interrupted the command (exit 128 + it), and whether one did


def _interrupt(signum, _frame) -> None:
    """SIGINT, SIGTERM, SIGHUP: KeyboardInterrupt, raised where the main thread is (inside
    asyncio.run too: the loop stops and its tasks are cancelled), so every finally block runs:
    clusters stopped, work folders removed. Not asyncio.run's own SIGINT handling, which only
    cancels the main task, and Python 3.11's wait_for can lose that cancellation (the run then went
    on). Only the first signal: ``timeout`` signals the command and then its whole process group,
    and a second interrupt inside the clean-up would cut it short (SIGKILL still ends everything:
    lifelines)."""
    if _INTERRUPTED_BY[1]:
        return
    _INTERRUPTED_BY[:] = [signum, True]
    watchdog = threading.Timer(CLEANUP_GRACE_S, _give_up, (signum,))
    watchdog.daemon = True      # a clean-up that hangs (a thread waiting on a loop that is gone) is cut
    watchdog.start()
    raise KeyboardInterrupt


def _give_up(signum: int) -> None:
    """The clean-up after an interrupt did not end in time: exit now. What this process started
    still ends with it (lifelines), and its leftover folders go with the next run or --all-stale."""
    try:
        sys.stderr.write(f"mqbench: error: interrupted by {signal.Signals(signum).name}; the clean-up did not finish "
                         f"within {CLEANUP_GRACE_S:.0f} s, exiting (what this command started ends with it)\n")
        sys.stderr.flush()
    finally:
        os._exit(128 + signum)


def interrupt_on_termination() -> None:
    """Install ``_interrupt`` for SIGINT (unless ignored, as in a background job), SIGTERM and
    SIGHUP (main thread only; the console entry calls it)."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) is not signal.SIG_IGN or signum != signal.SIGINT:
                signal.signal(signum, _interrupt)


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
        except KeyboardInterrupt as exc:
            # Ctrl-C, or SIGTERM / SIGHUP turned into it by main(): the finally blocks on the way
            # here stopped what the command started; one line, no traceback, 128 + the signal
            signum = _INTERRUPTED_BY[0]
            raise ReportedError(f"interrupted by {signal.Signals(signum).name}; stopped what this command "
                                "had started", 128 + signum) from exc
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
    interrupt_on_termination()
    try:
        cli.main(args=argv, prog_name="mqbench")
    except BrokenPipeError:
        # `mqbench ... | head`: the reader left; that is not an error worth a traceback.
        sys.stderr.close()
        sys.exit(0)
