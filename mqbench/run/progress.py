"""What ``mqbench run`` shows while it runs: a live line on a terminal, one line per window when piped.

``ProgressLine(stream, enabled)``: ``show(text)`` rewrites the line in place (carriage return and
erase-to-end), ``note(text)`` prints a permanent line above it, ``close()`` clears it.
``describe(...)`` builds the text from a tracker's totals; pure, so it is tested as text.

``WindowLines(stream, enabled)``: when the output is not a terminal (a soak piped to a log, CI),
one permanent line per window, the figures people grep (like RocketMQ's ``producer.sh``)::

    10:02:13Z cell 1/1 codec=none,batch=profile,delay=on measuring 20.0 s | offered 500/s | achieved 498/s |
    pub p50 2.1 ms p99 15.3 ms | errors 0 | backlog send 0 consume 12

``window_line(...)`` is the pure text of one line.
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


def window_line(clock_utc: str, cell_label: str, phase: str, elapsed_s: float, window_s: float, now: dict,
                before: dict, p50_ms: float | None, p99_ms: float | None) -> str:
    """One window's line from the tracker's totals at its end (``now``) and start (``before``)."""
    offered = (now["intended"] - before["intended"]) / window_s if window_s > 0 else 0.0
    achieved = (now["acked"] - before["acked"]) / window_s if window_s > 0 else 0.0
    latency = ("pub p50 - p99 -" if p50_ms is None or p99_ms is None
               else f"pub p50 {p50_ms:,.1f} ms p99 {p99_ms:,.1f} ms")
    return (f"{clock_utc} {cell_label} {phase} {elapsed_s:.1f} s | offered {offered:,.0f}/s | achieved {achieved:,.0f}/s "
            f"| {latency} | errors {now['errors'] - before['errors']:,} | backlog send {now['publish_backlog']:,} "
            f"consume {now['consume_backlog']:,}")


class WindowLines:
    """Permanent per-window lines (``window_line``), written only when ``enabled``."""

    def __init__(self, stream=None, enabled: bool = False):
        self.stream = stream
        self.enabled = enabled

    def write(self, text: str) -> None:
        if self.enabled:
            stream = self.stream or sys.stdout
            stream.write(text + "\n")
            stream.flush()


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
