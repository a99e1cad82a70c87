"""Authenticated Raft connections: a per-connection handshake, then an HMAC-SHA256 tag on every frame.

Why HMAC and not mutual TLS. The peers of a group are processes that ``mqbench cluster up`` (or
``run`` / ``dr``) starts from one cluster directory, so a shared secret (32 random bytes in
``DIR/cluster.secret``, mode 0600) is already where every peer can read it; TLS would need a CA, a
certificate and key per replica, their renewal, and ``ssl`` on the hot path for an integrity property
the secret gives us in ~60 lines. What is wanted is *integrity and origin* (only a member can put a
frame into a follower's log), not confidentiality: the Raft port carries the same messages clients
read back from the broker anyway. The cost is one SHA-256 pass over each frame (CPU, no extra round
trip after the handshake). What it does not give: secrecy of the stream, and protection against a
peer whose secret leaked (rotate it: ``cluster down``, delete ``DIR/cluster.secret``, ``up``).

Protocol (all integers big-endian). Connections are one-way: the connecting side (the *sender*)
only sends Raft messages, the accepting side (the *receiver*) only reads them.

1. receiver -> sender, CHALLENGE (21 bytes): ``b"MQRA"``, version 2, ``server_nonce`` (16 fresh
   random bytes per connection).
2. sender -> receiver, HELLO (61 bytes): ``b"MQRA"``, version 2, ``src`` uint32, ``dst`` uint32,
   ``client_nonce`` (16 bytes), ``tag`` = HMAC-SHA256(secret, ``"mqbench-raft-hello"`` || server_nonce
   || client_nonce || src || dst) (32 bytes). The receiver checks the tag (constant time), that
   ``dst`` is itself and ``src`` a known peer; otherwise the connection is closed (``PeerError``).
3. Both derive ``key`` = HMAC-SHA256(secret, ``"mqbench-raft-session"`` || server_nonce ||
   client_nonce || src || dst). Every frame (``wire`` framing) is followed by a 16-byte tag =
   HMAC-SHA256(key, seq (uint64) || head || D)[:16], ``seq`` counting frames from 0, ``head`` the
   frame's first 60 bytes (length field and header, ``wire.FRAME_OVERHEAD_BYTES``) and ``D`` =
   SHA-256(the entries part, the frame's bytes after ``head``), left out when that part is empty
   (the length field says which). The receiver checks the tag, and that the frame's src/dst are
   the handshake's: a forged, altered, reordered, replayed (in this or another connection: the
   server nonce is fresh) or cross-peer frame closes the connection before anything reaches the
   Raft node.

   Why hash-then-MAC (version 2; version 1 MACed the whole frame under each session key): a
   leader sends the same entries part to every follower, so it hashes that part once per round
   (``entries_digest``) and each follower's tag costs two SHA-256 blocks more, not another pass
   over the entries: for a group of three, three passes over a round's bytes instead of four.
   Forging a frame still needs the session key, or a second entries part with the same SHA-256.

Pure: the nonces are passed in (the transport draws them from ``os.urandom``).
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Container

from mqbench.errors import PeerError, UserError

from .types import Message
from .wire import DEFAULT_MAX_FRAME_BYTES, FRAME_OVERHEAD_BYTES, HEADER_BYTES, LENGTH, decode_body

MAGIC = b"MQRA"
VERSION = 2
NONCE_BYTES = 16
TAG_BYTES = 16
SECRET_BYTES_MIN = 16
_CHALLENGE = struct.Struct(">4sB16s")
_HELLO = struct.Struct(">4sBII16s32s")
CHALLENGE_BYTES = _CHALLENGE.size        # 21
HELLO_BYTES = _HELLO.size                # 61
_SEQ = struct.Struct(">Q")
_IDS = struct.Struct(">II")


def check_secret(secret: bytes) -> bytes:
    """``secret`` if it is long enough to be one; UserError otherwise."""
    if not isinstance(secret, (bytes, bytearray)) or len(secret) < SECRET_BYTES_MIN:
        raise UserError(f"a cluster secret must be at least {SECRET_BYTES_MIN} bytes")
    return bytes(secret)


def challenge(server_nonce: bytes) -> bytes:
    if len(server_nonce) != NONCE_BYTES:
        raise ValueError("server nonce must be 16 bytes")
    return _CHALLENGE.pack(MAGIC, VERSION, server_nonce)


def _hello_tag(secret: bytes, server_nonce: bytes, client_nonce: bytes, src: int, dst: int) -> bytes:
    return hmac.new(secret, b"mqbench-raft-hello" + server_nonce + client_nonce + _IDS.pack(src, dst),
                    hashlib.sha256).digest()


def _session_key(secret: bytes, server_nonce: bytes, client_nonce: bytes, src: int, dst: int) -> bytes:
    return hmac.new(secret, b"mqbench-raft-session" + server_nonce + client_nonce + _IDS.pack(src, dst),
                    hashlib.sha256).digest()


def entries_digest(entries_part: bytes | memoryview) -> bytes:
    """``D`` of the module doc for a frame's entries part (b"" when it has none): one SHA-256
    pass, shared by every connection the same entries go to."""
    return hashlib.sha256(entries_part).digest() if len(entries_part) else b""


class _FrameMac:
    """HMAC-SHA256 under one session key, keyed once: the tag of ``seq || head || digest`` from
    copies of the keyed inner and outer SHA-256 states (RFC 2104, the bytes ``hmac`` computes;
    about half the CPU of copying an ``hmac.HMAC`` per frame)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes):
        block = key.ljust(64, b"\0") if len(key) <= 64 else hashlib.sha256(key).digest().ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def tag(self, seq: int, head: bytes | memoryview, digest: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(_SEQ.pack(seq) + bytes(head) + digest)      # 8 + 60 + 0/32 bytes
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_BYTES]


class Sealer:
    """The sender's side of one connection: ``tag(head, digest)`` for the next frame (its first 60
    bytes and ``entries_digest`` of the rest: the caller writes head, entries part and tag with no
    copy of the frame); ``seal(frame) -> frame + tag`` for a whole frame."""

    def __init__(self, key: bytes):
        self._mac = _FrameMac(key)
        self.seq = 0

    def tag(self, head: bytes | memoryview, digest: bytes) -> bytes:
        tag = self._mac.tag(self.seq, head, digest)
        self.seq += 1
        return tag

    def seal(self, frame: bytes) -> bytes:
        with memoryview(frame) as view:
            return frame + self.tag(view[:FRAME_OVERHEAD_BYTES], entries_digest(view[FRAME_OVERHEAD_BYTES:]))


def client_hello(secret: bytes, src: int, dst: int, challenge_bytes: bytes, client_nonce: bytes) -> tuple[bytes, Sealer]:
    """The sender's answer to a CHALLENGE: (HELLO bytes, the Sealer for the frames that follow).
    PeerError when the challenge is not one."""
    if len(challenge_bytes) != CHALLENGE_BYTES:
        raise PeerError(f"raft challenge of {len(challenge_bytes)} bytes, expected {CHALLENGE_BYTES}")
    magic, version, server_nonce = _CHALLENGE.unpack(challenge_bytes)
    if magic != MAGIC or version != VERSION:
        raise PeerError("the Raft peer did not answer with an mqbench challenge (is it authenticated?)")
    if len(client_nonce) != NONCE_BYTES:
        raise ValueError("client nonce must be 16 bytes")
    hello = _HELLO.pack(MAGIC, VERSION, src, dst, client_nonce, _hello_tag(secret, server_nonce, client_nonce, src, dst))
    return hello, Sealer(_session_key(secret, server_nonce, client_nonce, src, dst))


class ReceiverSession:
    """The receiver's side of one connection: feed the bytes after the CHALLENGE was sent; returns
    the Raft messages of every complete, authentic frame. Any failure raises ``PeerError`` (close
    the connection). ``peer`` is the authenticated sender once the HELLO was read, else None."""

    def __init__(self, secret: bytes, self_id: int, peers: Container[int], server_nonce: bytes, *,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES):
        self._secret = secret
        self._self_id = self_id
        self._peers = peers                 # a container of allowed sender ids (looked up live)
        self._server_nonce = server_nonce
        self._max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._mac: _FrameMac | None = None
        self._seq = 0
        self.peer: int | None = None

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        # a read that holds whole frames is parsed where it lies (no copy into the buffer)
        if self._buf or self._mac is None or type(data) is not bytes:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        pos = 0
        out: list[Message] = []
        if self._mac is None:
            if len(buf) < HELLO_BYTES:
                if buf[:len(MAGIC)] != MAGIC[:len(buf)]:
                    raise PeerError("raft connection did not start with an mqbench HELLO")
                return out
            self._mac = self._accept_hello(bytes(buf[:HELLO_BYTES]))
            pos = HELLO_BYTES
        session = self._mac
        while len(buf) - pos >= LENGTH.size:
            (length,) = LENGTH.unpack_from(buf, pos)
            if length < HEADER_BYTES or length > self._max_frame_bytes:
                raise PeerError(f"raft frame length {length} outside [{HEADER_BYTES}, {self._max_frame_bytes}]")
            end = pos + LENGTH.size + length
            if len(buf) < end + TAG_BYTES:
                break
            head_end = pos + FRAME_OVERHEAD_BYTES
            with memoryview(buf) as view:
                tag = session.tag(self._seq, view[pos:head_end], entries_digest(view[head_end:end]))
            if not hmac.compare_digest(tag, bytes(buf[end:end + TAG_BYTES])):
                raise PeerError(f"raft frame {self._seq} from node {self.peer} failed authentication")
            self._seq += 1
            m = decode_body(buf, pos + LENGTH.size, end)
            if m.src != self.peer or m.dst != self._self_id:
                raise PeerError(f"raft frame {m.src}->{m.dst} on the authenticated connection "
                                f"{self.peer}->{self._self_id}")
            out.append(m)
            pos = end + TAG_BYTES
        if buf is self._buf:
            del buf[:pos]
        elif pos < len(buf):
            self._buf += memoryview(buf)[pos:]      # the start of a frame that is still coming
        return out

    def _accept_hello(self, hello: bytes) -> _FrameMac:
        magic, version, src, dst, client_nonce, tag = _HELLO.unpack(hello)
        if magic != MAGIC or version != VERSION:
            raise PeerError("raft connection did not start with an mqbench HELLO")
        expected = _hello_tag(self._secret, self._server_nonce, client_nonce, src, dst)
        if not hmac.compare_digest(expected, tag):
            raise PeerError(f"raft HELLO claiming node {src} failed authentication")
        if dst != self._self_id or src not in self._peers:
            raise PeerError(f"raft HELLO {src}->{dst} is not for node {self._self_id} from a peer")
        self.peer = src
        return _FrameMac(_session_key(self._secret, self._server_nonce, client_nonce, src, dst))
