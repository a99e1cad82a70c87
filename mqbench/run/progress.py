"""The one-line progress display of ``mqbench run``: on a terminal only, quiet when piped.

``ProgressLine(stream, enabled)``: ``show(text)`` rewrites the line in place (carriage return and
erase-to-end), ``note(text)`` prints a permanent line above it, ``close()`` clears it.
``describe(...)`` builds the text from a tracker's totals; pure, so it is tested as text.
"""
from __future__ import annotations

import sys

from mqbench.output import is_terminal


def describe(cell_label: str, phase: str, elapsed_s: float, total_s: float, totals: dict, rate_per_s: float | None,
             acked_per_s: float) -> str:
    rate = "" if rate_per_s is None else f" | offered {rate_per_s:,.0f}/s"
    return (f"{cell_label} {phase} {elapsed_s:5.1f}/{total_s:.0f} s{rate} | acked {totals['acked']:,} "
            f"({acked_per_s:,.0f}/s) | consumed {totals['consumed']:,} | backlog pub {totals['publish_backlog']:,} "
            f"cons {totals['consume_backlog']:,} | errors {totals['errors']:,}")


class ProgressLine:
    def __init__(self, stream=None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = is_terminal(self.stream) if enabled is None else enabled
        self._shown = False

    def show(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[2K" + text[:200])
            self.stream.flush()
            self._shown = True

    def note(self, text: str) -> None:
        if self.enabled:
            self.close()
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown = False
