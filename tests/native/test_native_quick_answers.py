"""A read's quick answers (``FrameDecoder.feed(data, pending, taken)``, ``frame.take_answer``) taken
by the C loop (``_sendpath.decode_frames`` with a table) exactly as by the Python loop: the same
receivers taken in the same order, the same table left, the same commands returned and the same
errors, for usual, unusual, malformed and cut frames (an untrusted peer), with receivers of
several kinds in the table."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_mangling import mangled_reads

from mqbench.broker.formats import codes, frame
from mqbench.broker.formats.command import RemotingCommand, encode_command, send_success_frame
from mqbench.errors import PeerError

native = pytest.importorskip("mqbench.broker.formats._sendpath")
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Quick:
    QUICK_CODES = frozenset({codes.SUCCESS, codes.FLUSH_DISK_TIMEOUT})


class _OtherQuick:
    QUICK_CODES = frozenset({codes.SUCCESS})


class _NotQuick:
    pass


class _NoneCodes:
    QUICK_CODES = ()


_KINDS = (_Quick, _Quick, _Quick, _OtherQuick, _NotQuick, _NoneCodes)


def _answer(rng: random.Random, opaque: int) -> bytes:
    """One frame: mostly a broker's SEND_OK, else another answer, a request, an unusual header."""
    shape = rng.randrange(8)
    if shape <= 2:
        return send_success_frame(opaque, 0, "%032X" % rng.getrandbits(128), rng.randrange(8), rng.randrange(1 << 40),
                                  None)
    code = rng.choice([codes.SUCCESS, codes.FLUSH_DISK_TIMEOUT, codes.SYSTEM_BUSY, codes.MESSAGE_ILLEGAL])
    flag = codes.FLAG_RESPONSE if shape != 3 else 0
    remark = "busy" if shape == 4 else None            # a remark: C leaves the frame to Python
    ext = {"msgId": "\u00e9" * rng.randrange(2), "x": "1"} if shape != 5 else {}
    serialize = codes.SERIALIZE_ROCKETMQ if shape == 6 else codes.SERIALIZE_JSON
    return encode_command(RemotingCommand(code=code, opaque=opaque, flag=flag, remark=remark, ext_fields=ext,
                                          body=rng.randbytes(rng.randrange(3)), serialize_type=serialize))


def _typed(cmd: RemotingCommand) -> list:
    return [(name, type(value), value) for name, value in sorted(vars(cmd).items())]


def _run(pieces: list[bytes], table: dict, fast) -> tuple:
    """Feed ``pieces`` with the C loop (``fast``) or the Python one (None): per piece the commands
    or the error, then the receivers taken (by identity) and the table's keys left."""
    saved = frame._decode_frames
    frame._decode_frames = fast
    try:
        pending = dict(table)
        decoder = frame.FrameDecoder(frame_bytes_max=4096)
        out: list = []
        for piece in pieces:
            taken: list = []
            try:
                out.append(("ok", [_typed(c) for c in decoder.feed(piece, pending, taken)]))
            except PeerError as exc:
                out.append(("PeerError", str(exc)))
            out.append(("taken", [id(r) for r in taken]))
            if out[-2][0] != "ok":
                break
        return repr(out), sorted(pending), decoder.pending_bytes
    finally:
        frame._decode_frames = saved


@SETTINGS
@given(st.integers(0, 2**32), st.integers(0, 12), st.integers(0, 3))
def test_c_takes_the_quick_answers_python_takes(seed, count, mangle) -> None:
    rng = random.Random(seed)
    opaques = [rng.randrange(1, 40) for _ in range(count)]           # repeats: an answer twice
    table = {opaque: rng.choice(_KINDS)() for opaque in set(opaques) if rng.random() < 0.85}
    if table and rng.random() < 0.2:
        table[next(iter(table))] = None
    data = b"".join(_answer(rng, opaque) for opaque in opaques)
    pieces = mangled_reads(rng, data, mangle)
    assert _run(pieces, table, native.decode_frames) == _run(pieces, table, None)


def test_send_oks_are_taken_without_commands_and_the_rest_kept_in_order() -> None:
    quick, other, plain = _Quick(), _OtherQuick(), _NotQuick()
    busy = encode_command(RemotingCommand(code=codes.SYSTEM_BUSY, opaque=3, flag=codes.FLAG_RESPONSE))
    request = encode_command(RemotingCommand(code=codes.HEART_BEAT, opaque=1))
    data = b"".join([send_success_frame(1, 0, "A1", 0, 5, None), busy, request,
                     send_success_frame(4, 0, "A4", 0, 6, None), send_success_frame(5, 0, "A5", 0, 7, None),
                     send_success_frame(6, 0, "A6", 0, 8, None), send_success_frame(2, 0, "A2", 0, 9, None)])
    for fast in (native.decode_frames, None):
        first, last = _Quick(), _Quick()
        pending = {1: first, 3: quick, 4: other, 5: plain, 6: last, 2: None}
        taken: list = []
        saved = frame._decode_frames
        frame._decode_frames = fast
        try:
            commands = frame.FrameDecoder().feed(data, pending, taken)
        finally:
            frame._decode_frames = saved
        assert taken == [first, last]                          # in order, one kind (the first's)
        assert sorted(pending) == [2, 3, 4, 5]
        assert [(c.code, c.opaque, c.flag) for c in commands] == [
            (codes.SYSTEM_BUSY, 3, 1), (codes.HEART_BEAT, 1, 0), (codes.SUCCESS, 4, 1), (codes.SUCCESS, 5, 1),
            (codes.SUCCESS, 2, 1)]


def test_answers_before_a_bad_frame_are_taken_and_the_error_stays_python_s() -> None:
    good = send_success_frame(1, 0, "A1", 0, 5, None)
    bad = (3).to_bytes(4, "big") + b"\x00\x00\x00"
    for fast in (native.decode_frames, None):
        saved = frame._decode_frames
        frame._decode_frames = fast
        try:
            receiver = _Quick()
            pending, taken = {1: receiver, 2: _Quick()}, []
            with pytest.raises(PeerError, match="below the 4-byte minimum"):
                frame.FrameDecoder().feed(good + bad, pending, taken)
            assert taken == [receiver] and list(pending) == [2]
        finally:
            frame._decode_frames = saved


def test_a_table_needs_a_list_to_take_into() -> None:
    with pytest.raises(TypeError):
        native.decode_frames(b"", 0, 1 << 24, [], RemotingCommand, {})
