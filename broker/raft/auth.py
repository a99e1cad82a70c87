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

1. receiver -> sender, CHALLENGE (21 bytes): ``b"MQRA"``, version 1, ``server_nonce`` (16 fresh
   random bytes per connection).
2. sender -> receiver, HELLO (61 bytes): ``b"MQRA"``, version 1, ``src`` uint32, ``dst`` uint32,
   ``client_nonce`` (16 bytes), ``tag`` = HMAC-SHA256(secret, ``"mqbench-raft-hello"`` || server_nonce
   || client_nonce || src || dst) (32 bytes). The receiver checks the tag (constant time), that
   ``dst`` is itself and ``src`` a known peer; otherwise the connection is closed (``PeerError``).
3. Both derive ``key`` = HMAC-SHA256(secret, ``"mqbench-raft-session"`` || server_nonce ||
   client_nonce || src || dst). Every frame (``wire`` framing) is followed by a 16-byte tag =
   HMAC-SHA256(key, seq (uint64) || the whole frame)[:16], ``seq`` counting frames from 0. The
   receiver checks the tag, and that the frame's src/dst are the handshake's: a forged, altered,
   reordered, replayed (in this or another connection: the server nonce is fresh) or cross-peer
   frame closes the connection before anything reaches the Raft node.

Pure: the nonces are passed in (the transport draws them from ``os.urandom``).
"""
from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Container

from mqbench.errors import PeerError, UserError

from .types import Message
from .wire import DEFAULT_MAX_FRAME_BYTES, HEADER_BYTES, LENGTH, decode_body

MAGIC = b"MQRA"
VERSION = 1
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


class _FrameMac:
    """HMAC-SHA256 under one session key, keyed once: the tag of ``seq || frame`` from copies of
    the keyed inner and outer SHA-256 states (RFC 2104, the bytes ``hmac`` computes; about half
    the CPU of copying an ``hmac.HMAC`` per frame)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes):
        block = key.ljust(64, b"\0") if len(key) <= 64 else hashlib.sha256(key).digest().ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def tag(self, seq: int, frame: bytes | memoryview) -> bytes:
        inner = self._inner.copy()
        inner.update(_SEQ.pack(seq))
        inner.update(frame)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:TAG_BYTES]


class Sealer:
    """The sender's side of one connection: ``seal(frame) -> frame + tag``."""

    def __init__(self, key: bytes):
        self._mac = _FrameMac(key)
        self.seq = 0

    def seal(self, frame: bytes) -> bytes:
        tag = self._mac.tag(self.seq, frame)
        self.seq += 1
        return frame + tag


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
        self._buf += data
        buf = self._buf
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
            with memoryview(buf) as view:
                tag = session.tag(self._seq, view[pos:end])
            if not hmac.compare_digest(tag, bytes(buf[end:end + TAG_BYTES])):
                raise PeerError(f"raft frame {self._seq} from node {self.peer} failed authentication")
            self._seq += 1
            m = decode_body(buf, pos + LENGTH.size, end)
            if m.src != self.peer or m.dst != self._self_id:
                raise PeerError(f"raft frame {m.src}->{m.dst} on the authenticated connection "
                                f"{self.peer}->{self._self_id}")
            out.append(m)
            pos = end + TAG_BYTES
        del buf[:pos]
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
