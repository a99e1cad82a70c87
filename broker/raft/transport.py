"""``RaftTransport``: Raft messages between broker processes over asyncio TCP (``wire`` framing).

* Inbound: a server accepts connections from peers (an asyncio Protocol per connection: bytes
  are decoded in the loop's read callback, no stream or task per connection); every decoded
  message addressed to this node from a known peer is handed to ``on_message`` (a plain
  callable, called on the event loop). A
  peer that sends a malformed frame, a frame for another node or from an unknown node gets its
  connection closed (counted in ``peer_errors``); the node and its other connections carry on.
* Outbound: ``send(message)`` never blocks and never raises for network trouble. Each peer has a
  bounded queue and one writer task that connects on demand, writes whatever is queued in one
  go, and after a failure drops what it held and retries with a backoff (Raft retransmits: a lost
  message costs a round trip, never correctness). A full queue drops the newest message.

* Authentication (``secret``, the cluster secret): every connection starts with the ``auth``
  handshake and every frame carries an HMAC-SHA256 tag (see ``auth`` for the protocol and why HMAC
  rather than TLS). A sender that cannot prove it holds the secret, a frame whose tag does not
  check, a frame whose src/dst differ from the handshake's, a replayed or reordered frame, no
  HELLO within ``handshake_timeout_ms``: the connection is closed (``peer_errors``) before anything
  reaches ``on_message``. With
  ``secret=None`` frames are plain (the in-process tests and the simulator only); the broker
  process logs a warning when it runs that way.
"""
from __future__ import annotations

import asyncio
import os
from typing import Callable

from mqbench.errors import PeerError

from . import auth
from .types import Message
from .wire import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, encode_entries, encode_head

# ``send`` writes at once only while the connection's buffer holds less than this (else the writer
# task queues, writes and drains as before: a slow peer gets backpressure, not an unbounded buffer)
DIRECT_WRITE_BUFFER_BYTES_MAX = 1 << 20


class RaftTransport:
    def __init__(self, node_id: int, peers: dict[int, tuple[str, int]], on_message: Callable[[Message], None], *,
                 host: str = "127.0.0.1", port: int = 0, queue_limit: int = 4096,
                 connect_timeout_ms: int = 1000, backoff_max_ms: int = 1000,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, secret: bytes | None = None,
                 handshake_timeout_ms: int = 2000):
        self.node_id = node_id
        self.secret = None if secret is None else auth.check_secret(secret)
        self.handshake_timeout_ms = handshake_timeout_ms
        self.peers = dict(peers)
        self.on_message = on_message
        #: called once the messages of one read were all handed to ``on_message`` (the driver
        #: handles their Ready there, ``RaftDriver.ready_now``), also when a bad frame after them
        #: closed the connection; None: nothing
        self.on_read: Callable[[], None] | None = None
        self.host, self.port = host, port
        self.queue_limit = queue_limit
        self.connect_timeout_ms = connect_timeout_ms
        self.backoff_max_ms = backoff_max_ms
        self.max_frame_bytes = max_frame_bytes
        self.peer_errors = 0
        self.dropped = 0
        self.received = 0
        self._server: asyncio.AbstractServer | None = None
        self._queues: dict[int, asyncio.Queue] = {}
        self._writers: dict[int, asyncio.Task] = {}
        self._inbound: set[_Inbound] = set()
        self._closing = False
        # the last entries encoded (and their auth.entries_digest, when sealed), shared by all peers
        self._encoded: tuple[tuple, bytes, bytes | None] = ((), b"", None)
        self._links: dict[int, tuple[asyncio.StreamWriter, auth.Sealer | None]] = {}   # connected, for ``send``
        self.direct_writes = 0

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port) (``port=0`` picks a free one)."""
        self._server = await asyncio.get_running_loop().create_server(lambda: _Inbound(self), self.host, self.port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        return self.host, self.port

    def set_peer_address(self, peer: int, address: tuple[str, int]) -> None:
        self.peers[peer] = address

    def send(self, m: Message) -> None:
        if self._closing or m.dst not in self.peers:
            self.dropped += 1
            return
        queue = self._queues.get(m.dst)
        if queue is None:
            queue = self._queues[m.dst] = asyncio.Queue(self.queue_limit)
            self._writers[m.dst] = asyncio.get_running_loop().create_task(self._write_loop(m.dst, queue))
        link = self._links.get(m.dst)
        if link is not None and queue.empty():
            # Nothing queued before it: write now, not in the writer task's next turn (one loop turn
            # less on the commit path of every Raft round: leader's APP, follower's APP_RESP)
            writer, sealer = link
            if not writer.transport.is_closing() and \
                    writer.transport.get_write_buffer_size() < DIRECT_WRITE_BUFFER_BYTES_MAX:
                pieces = self._pieces(m, sealer)
                try:
                    writer.writelines(pieces)
                    self.direct_writes += 1
                    return
                except (OSError, RuntimeError):
                    pass   # the writer task meets the same error on this connection and reconnects
            del self._links[m.dst]
        try:
            queue.put_nowait(m)
        except asyncio.QueueFull:
            self.dropped += 1

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for inbound in list(self._inbound):
            inbound.close()
        tasks = list(self._writers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- outbound ----------------------------------------------------------------------------
    async def _write_loop(self, peer: int, queue: asyncio.Queue) -> None:
        writer = None
        sealer = None
        backoff_ms = 10
        while True:
            m = await queue.get()
            batch = [m]
            while not queue.empty():
                batch.append(queue.get_nowait())
            try:
                if writer is None:
                    host, port = self.peers[peer]
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                            self.connect_timeout_ms / 1000)
                    if self.secret is not None:
                        sealer = await self._handshake(reader, writer, peer)
                self._links.pop(peer, None)     # until this batch is written: nothing may overtake it
                writer.writelines([piece for x in batch for piece in self._pieces(x, sealer)])
                await writer.drain()
                backoff_ms = 10
                if queue.empty():
                    self._links[peer] = (writer, sealer)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, PeerError, RuntimeError) as exc:
                # uvloop raises RuntimeError (not an OSError) for a write on a transport it closed when
                # the peer died; uncaught, it ended this task and the restarted peer never heard from
                # us again (it stayed a candidate). Any other RuntimeError is a bug: raise it.
                if isinstance(exc, RuntimeError) and (writer is None or not writer.transport.is_closing()):
                    raise
                self.dropped += len(batch)
                self._links.pop(peer, None)
                if writer is not None:
                    writer.close()
                    writer = None
                    sealer = None
                await asyncio.sleep(backoff_ms / 1000)
                backoff_ms = min(backoff_ms * 2, self.backoff_max_ms)

    def _pieces(self, m: Message, sealer: auth.Sealer | None) -> list[bytes]:
        """The bytes of ``encode_frame(m)`` (and its tag when ``sealer``) as pieces to write as they
        are: head, entries part, tag. The entries of a leader's appends (one tuple for every
        follower, see ``RaftDriver._as_stored``) are encoded, and hashed for the tag, once."""
        if not m.entries:
            head = encode_head(m, 0)
            return [head] if sealer is None else [head, sealer.tag(head, b"")]
        entries, part, digest = self._encoded
        if entries is not m.entries:
            part, digest = encode_entries(m.entries), None
            self._encoded = (m.entries, part, digest)
        head = encode_head(m, len(part))
        if sealer is None:
            return [head, part]
        if digest is None:
            digest = auth.entries_digest(part)
            self._encoded = (m.entries, part, digest)
        return [head, part, sealer.tag(head, digest)]

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: int) -> auth.Sealer:
        """Read the receiver's CHALLENGE, answer with our HELLO; the Sealer for this connection."""
        challenge = await asyncio.wait_for(reader.readexactly(auth.CHALLENGE_BYTES), self.handshake_timeout_ms / 1000)
        hello, sealer = auth.client_hello(self.secret, self.node_id, peer, challenge, os.urandom(auth.NONCE_BYTES))
        writer.write(hello)
        return sealer


class _Inbound(asyncio.Protocol):
    """One accepted connection: its bytes go through the decoder (plain or authenticated) as they
    arrive, and every message to this node from a peer goes to ``on_message`` in the same
    callback (no stream buffer, no task per connection). A peer error closes this connection only."""

    def __init__(self, owner: RaftTransport):
        self.owner = owner
        self.transport: asyncio.BaseTransport | None = None
        self.decoder: FrameDecoder | auth.ReceiverSession | None = None
        self._hello_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        owner = self.owner
        self.transport = transport
        if owner._closing:
            transport.close()
            return
        owner._inbound.add(self)
        if owner.secret is None:
            self.decoder = FrameDecoder(owner.max_frame_bytes)
            return
        server_nonce = os.urandom(auth.NONCE_BYTES)
        self.decoder = auth.ReceiverSession(owner.secret, owner.node_id, owner.peers, server_nonce,
                                            max_frame_bytes=owner.max_frame_bytes)
        transport.write(auth.challenge(server_nonce))  # type: ignore[attr-defined]
        # no HELLO within the bound: a peer error
        self._hello_timer = asyncio.get_running_loop().call_later(owner.handshake_timeout_ms / 1000, self._no_hello)

    def _no_hello(self) -> None:
        self._hello_timer = None
        if isinstance(self.decoder, auth.ReceiverSession) and self.decoder.peer is None:
            self._refuse()

    def data_received(self, data: bytes) -> None:
        owner, decoder = self.owner, self.decoder
        if decoder is None:
            return
        delivered = False
        try:
            messages = decoder.feed(data)
            if self._hello_timer is not None and getattr(decoder, "peer", None) is not None:
                self._hello_timer.cancel()
                self._hello_timer = None
            node_id, peers = owner.node_id, owner.peers
            for m in messages:
                if m.dst != node_id or m.src not in peers:
                    raise PeerError(f"message {m.src}->{m.dst} is not for node {node_id} from a peer")
                owner.received += 1
                delivered = True
                owner.on_message(m)
        except PeerError:
            self._refuse()
        if delivered and owner.on_read is not None:
            owner.on_read()     # also after a bad frame: what was delivered before it is handled

    def _refuse(self) -> None:
        self.owner.peer_errors += 1        # close this connection only
        self.close()

    def close(self) -> None:
        self.decoder = None
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        self.decoder = None
        self.owner._inbound.discard(self)
