"""Incremental frame decoder: bytes in, in any pieces; RemotingCommands out. Sans-I/O.

The frame layout is documented in ``command``. The length field is checked as soon as its 4 bytes
arrive, so an oversized frame is refused before any of it is buffered. ``frame_bytes_max`` bounds
the whole frame including the length field, as Netty's ``LengthFieldBasedFrameDecoder`` does in
RocketMQ (``com.rocketmq.remoting.frameMaxLength``, 16 MiB by default).

Contract: ``feed(data)`` returns every command completed by ``data`` (possibly none, possibly
several) and keeps any partial frame for the next call. A malformed or oversized frame raises
``PeerError``; the decoder is then poisoned and every later ``feed`` raises the same error, because
the byte stream has lost its framing and the only safe move is to close the connection.
"""
from __future__ import annotations

from mqbench import native
from mqbench.broker.formats.command import LENGTH, RemotingCommand, decode_frame_at
from mqbench.errors import PeerError

# C: the loop below over whole frames whose JSON header has the usual shape; it stops at any other
# frame, which the loop decodes (or refuses) as before (_sendpath.c)
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

    def feed(self, data: bytes | bytearray | memoryview) -> list[RemotingCommand]:
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
                    pos = fast(buffer, pos, self.frame_bytes_max, commands, RemotingCommand)
                    if len(buffer) - pos < 4:
                        break
                (length,) = LENGTH.unpack_from(buffer, pos)
                if length < 4:
                    raise PeerError(f"frame length {length} is below the 4-byte minimum")
                if length + 4 > self.frame_bytes_max:
                    raise PeerError(f"frame of {length + 4} bytes exceeds the {self.frame_bytes_max}-byte limit")
                if len(buffer) - pos - 4 < length:
                    break
                commands.append(decode_frame_at(buffer, pos + 4, pos + 4 + length))
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
