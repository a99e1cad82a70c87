"""Raft wire framing (worked example, whole / byte by byte / trailing bytes / fuzz) and the asyncio
TCP transport (delivery, malformed peers closed while the node keeps serving, peers down)."""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.broker.raft.transport import RaftTransport
from mqbench.broker.raft.types import Entry, EntryKind, Message, MsgType
from mqbench.broker.raft.wire import FrameDecoder, decode_body, encode_entries, encode_frame
from mqbench.errors import PeerError

HEARTBEAT_HEX = ("00000038" "01030000" "00000001" "00000002" "0000000000000003" + "00" * 16
                 + "0000000000000007" + "00" * 8 + "00000000")

messages = st.builds(
    Message, st.sampled_from(list(MsgType)), st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1),
    st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
    st.lists(st.builds(Entry, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=64),
                       st.sampled_from(list(EntryKind))), max_size=4).map(tuple),
    st.integers(0, 2**64 - 1), st.booleans(), st.integers(0, 2**64 - 1), st.booleans())


def test_worked_example_byte_for_byte():
    frame = encode_frame(Message(MsgType.HEARTBEAT, 1, 2, 3, commit=7))
    assert frame.hex() == HEARTBEAT_HEX
    assert FrameDecoder().feed(frame) == [Message(MsgType.HEARTBEAT, 1, 2, 3, commit=7)]


@given(st.lists(messages, min_size=1, max_size=4))
def test_round_trip_whole_and_byte_by_byte(msgs):
    stream = b"".join(encode_frame(m) for m in msgs)
    assert FrameDecoder().feed(stream) == msgs
    decoder = FrameDecoder()
    out = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i:i + 1]))
    assert out == msgs and decoder.buffered_bytes == 0


@given(messages, st.binary(max_size=8), st.binary(max_size=8))
def test_encoded_entries_once_and_a_frame_read_in_place_give_the_same_bytes_and_message(m, before, after):
    """The leader encodes an append's entries once for every follower (``encode_entries``), and a
    receiver decodes a frame where it lies in its buffer: the same frame, the same message."""
    frame = encode_frame(m)
    assert encode_frame(m, encode_entries(m.entries)) == frame
    buffer = bytearray(before + frame[4:] + after)
    decoded = decode_body(buffer, len(before), len(before) + len(frame) - 4)
    assert decoded == m == decode_body(frame[4:])
    assert all(type(e) is Entry and type(e.data) is bytes and type(e.kind) is EntryKind for e in decoded.entries)
    del buffer[:1]           # nothing still holds the buffer


@pytest.mark.parametrize("key_bytes", [16, 32, 64, 65, 100])
def test_frame_tags_are_hmac_sha256_of_seq_head_and_the_entries_digest(key_bytes):
    """The keyed-once MAC of ``auth`` gives the bytes of ``hmac`` over seq, the frame's first 60
    bytes and SHA-256 of the rest when there is a rest (the protocol of the module doc)."""
    import hashlib
    import hmac
    import struct

    from mqbench.broker.raft import auth

    key = bytes(range(key_bytes))
    sealer = auth.Sealer(key)
    app = encode_frame(Message(MsgType.APP, 1, 2, 5, 4, 9, (Entry(10, 5, b"abc" * 300), Entry(11, 5, b"")), 8))
    for seq, frame in enumerate([encode_frame(Message(MsgType.HEARTBEAT, 1, 2, 3)), app, b"x" * 1000, b""]):
        rest = frame[60:]
        digest = hashlib.sha256(rest).digest() if rest else b""
        expected = hmac.new(key, struct.pack(">Q", seq) + frame[:60] + digest, hashlib.sha256).digest()[:auth.TAG_BYTES]
        assert sealer.seal(frame) == frame + expected


def test_a_session_reads_the_same_frames_however_the_bytes_arrive():
    """Whole frames in one read are parsed where they lie, reads that cut frames go through the
    buffer: the same messages either way, and a changed entry byte is refused in both."""
    import random

    import pytest

    from mqbench.broker.raft import auth
    from mqbench.errors import PeerError

    secret, server_nonce = b"s" * 32, b"v" * 16
    hello, sealer = auth.client_hello(secret, 1, 2, auth.challenge(server_nonce), b"c" * 16)
    msgs = [Message(MsgType.APP, 1, 2, 5, 4, 9 + i, tuple(Entry(10 + i + k, 5, bytes([i]) * (k * 100))
                                                         for k in range(i % 4)), 8) for i in range(12)]
    sealed = [sealer.seal(encode_frame(m)) for m in msgs]
    rng = random.Random(4)
    for cuts in ("frames", "random", "bytes"):
        session = auth.ReceiverSession(secret, 2, {1, 3}, server_nonce)
        got = session.feed(hello)
        stream = b"".join(sealed)
        if cuts == "frames":
            reads = sealed
        elif cuts == "random":
            reads, at = [], 0
            while at < len(stream):
                n = rng.randrange(1, 700)
                reads.append(stream[at:at + n])
                at += n
        else:
            reads = [stream[i:i + 1] for i in range(len(stream))]
        for data in reads:
            got += session.feed(data)
        assert got == msgs and session.buffered_bytes == 0
    for at in (len(sealed[3]) - 20, 61, 30):           # an entry byte, the first after the head, the head
        session = auth.ReceiverSession(secret, 2, {1, 3}, server_nonce)
        session.feed(hello)
        assert session.feed(sealed[0]) == msgs[:1]
        session.feed(sealed[1])
        session.feed(sealed[2])
        bad = bytearray(sealed[3])
        bad[at] ^= 1
        with pytest.raises(PeerError):
            session.feed(bytes(bad))


def test_trailing_bytes_wait_for_the_next_frame():
    frame = encode_frame(Message(MsgType.APP, 1, 2, 5, 4, 9, (Entry(10, 5, b"abc"),), 8))
    decoder = FrameDecoder()
    assert len(decoder.feed(frame + frame[:7])) == 1
    assert decoder.buffered_bytes == 7
    assert len(decoder.feed(frame[7:])) == 1


@pytest.mark.parametrize("mutate, problem", [
    (lambda f: f[:4] + b"\x02" + f[5:], "version"),
    (lambda f: f[:5] + b"\x63" + f[6:], "type"),
    (lambda f: f[:6] + b"\x80" + f[7:], "flags"),
    (lambda f: b"\x00\x00\x00\x05" + f[4:], "length"),
    (lambda f: b"\x7f\xff\xff\xff" + f[4:], "length"),
    (lambda f: f[:56] + b"\x00\x00\x00\x09" + f[60:], "entries"),
    (lambda f: f[:8] + b"\x00\x00\x00\x00" + f[12:], "src"),
])
def test_malformed_frames_are_peer_errors(mutate, problem):
    frame = encode_frame(Message(MsgType.APP, 1, 2, 5, 4, 9, (Entry(10, 5, b"abc"),), 8))
    with pytest.raises(PeerError, match=problem):
        FrameDecoder().feed(mutate(frame))


def test_stray_bytes_inside_a_frame_are_a_peer_error():
    frame = bytearray(encode_frame(Message(MsgType.HEARTBEAT, 1, 2, 3)))
    frame[3] += 2
    with pytest.raises(PeerError, match="stray"):
        decode_body(bytes(frame[4:]) + b"xx")


@given(st.binary(max_size=300))
def test_fuzzed_bytes_decode_or_raise_peer_error(data):
    try:
        FrameDecoder().feed(data)
    except PeerError:
        pass


# -- transport ----------------------------------------------------------------------------------
async def _pair():
    got = {1: [], 2: []}
    t1 = RaftTransport(1, {}, got[1].append)
    t2 = RaftTransport(2, {}, got[2].append)
    a1, a2 = await t1.start(), await t2.start()
    t1.set_peer_address(2, a2)
    t2.set_peer_address(1, a1)
    return t1, t2, got


async def _until(predicate, timeout_s: float = 5.0):
    async def wait():
        while not predicate():
            await asyncio.sleep(0.005)
    await asyncio.wait_for(wait(), timeout_s)


def test_transport_delivers_messages_both_ways():
    async def main():
        t1, t2, got = await _pair()
        try:
            app = Message(MsgType.APP, 1, 2, 4, 3, 7, tuple(Entry(8 + i, 4, b"x" * 1000) for i in range(50)), 7)
            for _ in range(20):
                t1.send(app)
            t2.send(Message(MsgType.APP_RESP, 2, 1, 4, index=57))
            await _until(lambda: len(got[2]) == 20 and len(got[1]) == 1)
            assert got[2][0] == app and got[1][0].index == 57
        finally:
            await t1.close()
            await t2.close()
    asyncio.run(main())


def test_a_malformed_peer_is_disconnected_and_others_still_served():
    async def main():
        t1, t2, got = await _pair()
        try:
            reader, writer = await asyncio.open_connection(t2.host, t2.port)
            writer.write(b"\x00\x00\x00\x40" + b"\xff" * 64)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""    # closed by the transport
            writer.close()
            # a frame addressed to another node closes that connection too
            reader, writer = await asyncio.open_connection(t2.host, t2.port)
            writer.write(encode_frame(Message(MsgType.HEARTBEAT, 1, 3, 1)))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert t2.peer_errors == 2
            t1.send(Message(MsgType.HEARTBEAT, 1, 2, 1))
            await _until(lambda: len(got[2]) == 1)
        finally:
            await t1.close()
            await t2.close()
    asyncio.run(main())


def test_a_read_ends_with_on_read_even_when_a_bad_frame_follows_what_was_delivered():
    """The driver handles the Ready of a read's messages in ``on_read`` (its loop is not woken for
    them), so a read whose later frame closes the connection still ends with ``on_read``."""
    async def main():
        t1, t2, got = await _pair()
        reads = []
        t2.on_read = lambda: reads.append(len(got[2]))
        try:
            reader, writer = await asyncio.open_connection(t2.host, t2.port)
            writer.write(encode_frame(Message(MsgType.HEARTBEAT, 1, 2, 1))
                         + encode_frame(Message(MsgType.HEARTBEAT, 1, 3, 1)))     # the second: not for node 2
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""    # closed by the transport
            writer.close()
            assert len(got[2]) == 1 and reads == [1] and t2.peer_errors == 1
        finally:
            await t1.close()
            await t2.close()
    asyncio.run(main())


def test_sending_to_a_peer_that_is_down_drops_and_recovers():
    async def main():
        got = []
        t1 = RaftTransport(1, {2: ("127.0.0.1", 9)}, lambda m: None, connect_timeout_ms=200, backoff_max_ms=20)
        await t1.start()
        try:
            t1.send(Message(MsgType.HEARTBEAT, 1, 2, 1))
            t1.send(Message(MsgType.HEARTBEAT, 1, 9, 1))          # unknown peer: dropped at once
            await _until(lambda: t1.dropped >= 2)
            t2 = RaftTransport(2, {1: (t1.host, t1.port)}, got.append)
            t1.set_peer_address(2, await t2.start())
            async def resend():
                while not got:
                    t1.send(Message(MsgType.HEARTBEAT, 1, 2, 2))
                    await asyncio.sleep(0.02)
            await asyncio.wait_for(resend(), 5)
            await t2.close()
        finally:
            await t1.close()
    asyncio.run(main())


# -- authenticated transport (cluster secret) ---------------------------------------------------
SECRET = b"s" * 32


async def _auth_pair(secret1: bytes = SECRET, secret2: bytes = SECRET):
    got = {1: [], 2: []}
    t1 = RaftTransport(1, {}, got[1].append, secret=secret1)
    t2 = RaftTransport(2, {}, got[2].append, secret=secret2)
    a1, a2 = await t1.start(), await t2.start()
    t1.set_peer_address(2, a2)
    t2.set_peer_address(1, a1)
    return t1, t2, got


def test_authenticated_transport_delivers_messages_both_ways():
    async def main():
        t1, t2, got = await _auth_pair()
        try:
            app = Message(MsgType.APP, 1, 2, 4, 3, 7, tuple(Entry(8 + i, 4, b"x" * 1000) for i in range(50)), 7)
            for _ in range(20):
                t1.send(app)
            t2.send(Message(MsgType.APP_RESP, 2, 1, 4, index=57))
            await _until(lambda: len(got[2]) == 20 and len(got[1]) == 1)
            assert got[2][0] == app and got[1][0].index == 57
            assert t1.peer_errors == t2.peer_errors == 0
        finally:
            await t1.close()
            await t2.close()
    asyncio.run(main())


def test_a_forged_append_from_the_leaders_id_is_refused_and_the_connection_closed():
    """Finding 1: one APP frame with src = the leader's id, sent by anyone who can connect, used to
    reach the follower's Raft node. Now it is refused before the node sees it, plain or with a
    HELLO made without the secret, and the real leader's frames still arrive."""
    from mqbench.broker.raft import auth

    async def main():
        t1, t2, got = await _auth_pair()
        try:
            forged = Message(MsgType.APP, 1, 2, 1, 1, 5, (Entry(6, 1, b"forged"),), 6)
            # 1. a plain frame, as the attack was made
            reader, writer = await asyncio.open_connection(t2.host, t2.port)
            await asyncio.wait_for(reader.readexactly(auth.CHALLENGE_BYTES), 5)
            writer.write(encode_frame(forged))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            # 2. a well-formed handshake made with a guessed secret
            reader, writer = await asyncio.open_connection(t2.host, t2.port)
            challenge = await asyncio.wait_for(reader.readexactly(auth.CHALLENGE_BYTES), 5)
            hello, sealer = auth.client_hello(b"g" * 32, 1, 2, challenge, b"n" * 16)
            writer.write(hello + sealer.seal(encode_frame(forged)))
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert t2.peer_errors == 2 and got[2] == []
            t1.send(Message(MsgType.HEARTBEAT, 1, 2, 1))
            await _until(lambda: len(got[2]) == 1)
        finally:
            await t1.close()
            await t2.close()
    asyncio.run(main())


def test_authenticated_frames_cannot_be_replayed_altered_or_sent_as_another_node():
    from mqbench.broker.raft import auth

    async def attempt(t2, make):
        reader, writer = await asyncio.open_connection(t2.host, t2.port)
        challenge = await asyncio.wait_for(reader.readexactly(auth.CHALLENGE_BYTES), 5)
        writer.write(make(challenge))
        await writer.drain()
        closed = await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        return closed

    async def main():
        t1, t2, got = await _auth_pair()
        try:
            hb = encode_frame(Message(MsgType.HEARTBEAT, 1, 2, 1))

            def replayed(challenge):
                hello, sealer = auth.client_hello(SECRET, 1, 2, challenge, b"n" * 16)
                sealed = sealer.seal(hb)
                return hello + sealed + sealed          # the same frame twice: seq 1 expected

            def altered(challenge):
                hello, sealer = auth.client_hello(SECRET, 1, 2, challenge, b"n" * 16)
                sealed = bytearray(sealer.seal(hb))
                sealed[30] ^= 1                          # the term
                return hello + bytes(sealed)

            def other_src(challenge):
                hello, sealer = auth.client_hello(SECRET, 1, 2, challenge, b"n" * 16)
                return hello + sealer.seal(encode_frame(Message(MsgType.HEARTBEAT, 3, 2, 1)))

            def stale_hello(challenge):
                hello, sealer = auth.client_hello(SECRET, 1, 2, auth.challenge(b"o" * 16), b"n" * 16)
                return hello + sealer.seal(hb)           # a HELLO recorded from another connection

            for make in (replayed, altered, other_src, stale_hello):
                assert await attempt(t2, make), make.__name__
            # at most the replayed frame's first copy (it may go down with the connection too)
            assert len(got[2]) <= 1 and all((m.src, m.term, m.log_term) == (1, 1, 0) for m in got[2])
            assert t2.peer_errors == 4
        finally:
            await t1.close()
            await t2.close()
    asyncio.run(main())


def test_peers_with_different_secrets_never_exchange_messages():
    async def main():
        t1, t2, got = await _auth_pair(SECRET, b"t" * 32)
        try:
            for _ in range(5):
                t1.send(Message(MsgType.HEARTBEAT, 1, 2, 1))
                await asyncio.sleep(0.05)
            await _until(lambda: t2.peer_errors >= 1)
            assert got[2] == []
        finally:
            await t1.close()
            await t2.close()
    asyncio.run(main())


def test_a_connection_that_never_says_hello_is_closed():
    from mqbench.broker.raft import auth

    async def main():
        t2 = RaftTransport(2, {1: ("127.0.0.1", 9)}, lambda m: None, secret=SECRET, handshake_timeout_ms=200)
        await t2.start()
        try:
            reader, writer = await asyncio.open_connection(t2.host, t2.port)
            await asyncio.wait_for(reader.readexactly(auth.CHALLENGE_BYTES), 5)
            writer.write(b"MQ")                       # a slow start, then nothing
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            assert t2.peer_errors == 1
        finally:
            await t2.close()
    asyncio.run(main())
