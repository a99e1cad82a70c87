"""The small error hierarchy every mqbench package raises from.

Three kinds, handled differently (design, style rule 5):

* ``UserError``: bad input or bad config from the person running mqbench (a bad flag value, a
  missing file, a corrupt store handed to ``inspect``). The CLI prints one line naming the problem
  and exits with code 2. Never a traceback.
* ``PeerError``: a remote peer sent something malformed (a bad frame). The server closes that one
  connection and keeps serving everyone else.
* ``InvariantViolation``: our own state is inconsistent. The node stops rather than risk
  acknowledged data. Raised instead of ``assert``, which ``python -O`` strips.

Data errors (``CodecError``, ``CorruptDataError``) are ``UserError`` subclasses because, when they
reach the CLI, the cause is the input the user handed us; a server catches them and answers the
peer instead.
"""


class MqbenchError(Exception):
    """Base of every error mqbench raises on purpose."""


class UserError(MqbenchError):
    """Bad input or configuration; the message names the problem. CLI exit code 2."""


class CorruptDataError(UserError):
    """Bytes that do not parse as the format they claim to be.

    ``where`` names the file (or stream) and ``offset`` the byte position, when known, so that an
    operator can find the damage.
    """

    def __init__(self, message: str, *, where: str | None = None, offset: int | None = None):
        self.where = where
        self.offset = offset
        location = ""
        if where is not None:
            location = f"{where}"
            if offset is not None:
                location += f" at offset {offset}"
            location += ": "
        elif offset is not None:
            location = f"at offset {offset}: "
        super().__init__(location + message)


class CodecError(CorruptDataError):
    """A codec could not decompress its input (corrupt, truncated, or over the size limit)."""

    def __init__(self, codec: str, message: str):
        self.codec = codec
        super().__init__(f"{codec}: {message}")


class PeerError(MqbenchError):
    """A peer sent a malformed or oversized frame; close that connection, keep serving."""


class InvariantViolation(MqbenchError):
    """Our own state broke an invariant; stop the node rather than risk acknowledged data."""
