"""Incremental frame decoder: bytes in, in any pieces; RemotingCommands out. Sans-I/O.

The frame layout is documented in ``command``. The length field is checked as soon as its 4 bytes
arrive, so an oversized frame is refused before any of it is buffered. ``frame_bytes_max`` bounds
the whole frame including the length field, as Netty's ``LengthFieldBasedFrameDecoder`` does in
RocketMQ (``com.rocketmq.remoting.frameMaxLength``, 16 MiB by default).

Contract: ``feed(data)`` returns every command completed by ``data`` (possibly none, possibly
several) and keeps any partial frame for the next call. A malformed or oversized frame raises
``PeerError``; the decoder is then poisoned and every later ``feed`` raises the same error, because
the byte stream has lost its framing and the only safe move is to close the connection.

``feed(data, pending, taken)`` also takes a read's *quick answers* (``take_answer``): a response
whose receiver in ``pending`` (opaque -> receiver, a connection's table of its requests) says by
its type's ``QUICK_CODES`` that it reads nothing of an answer with that code but the code is
moved from ``pending`` to ``taken`` instead of being returned as a command, so a load generator's
acknowledgements of one read are handed over together, with no command built (C) and no call
per answer. Only receivers of one type are taken per call (the type of ``taken[0]``); the
others come back as commands as ever. When ``feed`` raises, ``taken`` holds the receivers of the
whole answers before the bad frame (out of ``pending``: the caller hands them over).
"""
from __future__ import annotations

from typing import Any

from mqbench import native
from mqbench.broker.formats.codes import FLAG_RESPONSE
from mqbench.broker.formats.command import LENGTH, RemotingCommand, decode_frame_at
from mqbench.errors import PeerError

# C: the loop below over whole frames whose JSON header has the usual shape (and take_answer for
# each of them, given a table); it stops at any other frame, which the loop decodes (or refuses) as
# before (_sendpath.c)
_sendpath = native.load("mqbench.broker.formats._sendpath")
_decode_frames = _sendpath.decode_frames if _sendpath is not None else None

FRAME_BYTES_MAX_DEFAULT = 16 * 1024 * 1024


class FrameDecoder:
    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        if frame_bytes_max < 8:
            raise ValueError("frame_bytes_max must allow at least the 8-byte frame prefix")
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()
        self._error: PeerError | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview, pending: dict[int, Any] | None = None,
             taken: list[Any] | None = None) -> list[RemotingCommand]:
        """The commands completed by ``data``; with ``pending`` and ``taken``, the quick answers'
        receivers go to ``taken`` instead (module doc)."""
        if self._error is not None:
            raise self._error
        commands: list[RemotingCommand] = []
        if not self._buffer and type(data) is bytes:
            buffer: bytes | bytearray = data       # whole frames read at once: decoded from the read's bytes
        else:
            self._buffer += data
            buffer = self._buffer
        pos = 0
        fast = _decode_frames
        try:
            while len(buffer) - pos >= 4:
                if fast is not None:
                    if pending is None or taken is None:
                        pos = fast(buffer, pos, self.frame_bytes_max, commands, RemotingCommand)
                    else:
                        pos = fast(buffer, pos, self.frame_bytes_max, commands, RemotingCommand, pending, taken)
                    if len(buffer) - pos < 4:
                        break
                (length,) = LENGTH.unpack_from(buffer, pos)
                if length < 4:
                    raise PeerError(f"frame length {length} is below the 4-byte minimum")
                if length + 4 > self.frame_bytes_max:
                    raise PeerError(f"frame of {length + 4} bytes exceeds the {self.frame_bytes_max}-byte limit")
                if len(buffer) - pos - 4 < length:
                    break
                cmd = decode_frame_at(buffer, pos + 4, pos + 4 + length)
                if pending is None or taken is None or not take_answer(cmd, pending, taken):
                    commands.append(cmd)
                pos += 4 + length
        except PeerError as exc:
            self._error = exc
            self._buffer = bytearray()
            raise
        if buffer is data:
            if pos < len(data):
                self._buffer += memoryview(data)[pos:]      # the partial frame at the end
        elif pos:
            del self._buffer[:pos]
        return commands


def take_answer(cmd: RemotingCommand, pending: dict[int, Any], taken: list[Any]) -> bool:
    """Move ``cmd``'s receiver from ``pending`` to ``taken`` when ``cmd`` is a response, its
    receiver's type lists ``cmd.code`` in ``QUICK_CODES`` and is the type of ``taken[0]`` (when
    there is one): True when moved (the module doc's quick answers; C does the same in
    ``decode_frames`` for the frames it decodes)."""
    if not cmd.flag & FLAG_RESPONSE:
        return False
    receiver = pending.get(cmd.opaque)
    if receiver is None:
        return False
    kind = type(receiver)
    if taken and type(taken[0]) is not kind:
        return False
    if cmd.code not in getattr(kind, "QUICK_CODES", ()):
        return False
    del pending[cmd.opaque]
    taken.append(receiver)
    return True
