"""What one client may cost a remoting server: the bounds ``RemotingServer`` enforces (issue 18).

=============================  ===========  ===================================================
limit                          default      when it is reached
=============================  ===========  ===================================================
``connections_max``            see below    a new connection is closed at once (logged, counted)
``partial_frame_bytes_max``    64 MiB       bytes of frames received but not yet complete, over
                                            ALL connections: the connection whose bytes go past
                                            it is closed
``frame_timeout_ms``           30 s         a frame that started arriving is not complete (a
                                            slow-loris sender): that connection is closed
``idle_timeout_ms``            120 s        nothing received and no request in flight
                                            (RocketMQ's serverChannelMaxIdleTimeSeconds): closed
``output_bytes_max``           8 MiB        responses queued for one connection (encoded, not yet
                                            taken by the peer): the server stops reading from it
                                            and runs none of its requests until the peer reads
``output_stall_timeout_ms``    60 s         a connection stays over ``output_bytes_max`` this
                                            long (the peer does not read): closed
=============================  ===========  ===================================================

``connections_max`` defaults to the process's open-file limit (RLIMIT_NOFILE, soft) minus a
reserve for the store, Raft peers and the name server (``max(256, limit // 8)``), at most 50,000 and
at least 32: client connections alone can never use up the descriptors the store needs.
"""
from __future__ import annotations

from dataclasses import dataclass

CONNECTIONS_CEILING = 50_000
CONNECTIONS_FLOOR = 32
FD_RESERVE_MIN = 256


def connections_max_default(fd_limit: int | None = None) -> int:
    """The default connection cap for an open-file limit (the process's own when None)."""
    if fd_limit is None:
        try:
            import resource
            fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):
            fd_limit = 1024
        if fd_limit < 0:            # RLIM_INFINITY
            fd_limit = CONNECTIONS_CEILING * 2
    reserve = max(FD_RESERVE_MIN, fd_limit // 8)
    return max(CONNECTIONS_FLOOR, min(CONNECTIONS_CEILING, fd_limit - reserve))


@dataclass(frozen=True)
class ServerLimits:
    """The bounds of the module table; ``connections_max`` None = ``connections_max_default()``."""
    connections_max: int | None = None
    partial_frame_bytes_max: int = 64 * 1024 * 1024
    frame_timeout_ms: int = 30_000
    idle_timeout_ms: int = 120_000
    output_bytes_max: int = 8 * 1024 * 1024
    output_stall_timeout_ms: int = 60_000

    def resolved_connections_max(self) -> int:
        return self.connections_max if self.connections_max is not None else connections_max_default()


class PartialFrameBudget:
    """The bytes of incomplete frames held over all connections of one server (``ServerLimits``)."""

    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max
        self.bytes = 0

    def change(self, delta: int) -> bool:
        """Account ``delta`` bytes; False when the total is now over the budget."""
        self.bytes += delta
        return self.bytes <= self.bytes_max
