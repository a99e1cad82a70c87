"""The send path's C accelerator (broker/formats/_sendpath.c) against the Python code it speeds up,
on the same inputs: usual and unusual frames, malformed and truncated bytes (an untrusted peer),
send headers, answer frames and records. The C function may leave an input to Python; whatever it
takes must give what Python gives (values and types), and errors stay Python's."""
from __future__ import annotations

import json
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_mangling import mangled_reads

from mqbench.broker.formats import codes, command, frame, headers, record
from mqbench.broker.formats.command import RemotingCommand
from mqbench.client.pipeline import _ID_PROPERTIES, SendFrameTemplate
from mqbench.client.producer import send_header_v2 as client_header_v2
from mqbench.errors import PeerError, UserError

native = pytest.importorskip("mqbench.broker.formats._sendpath")
# kept small for CI's budget; each passed with 300+ examples when written
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except (PeerError, UserError, UnicodeError, ValueError, TypeError, OverflowError, AttributeError, struct.error) as exc:
        return type(exc).__name__, str(exc)


def _typed(cmd: RemotingCommand) -> list:
    return [(name, type(value), value) for name, value in sorted(vars(cmd).items())]


def _feed(pieces: list[bytes], fast) -> tuple:
    """What a FrameDecoder returns for ``pieces``, with the C loop (``fast``) or without (None)."""
    saved = frame._decode_frames
    frame._decode_frames = fast
    try:
        decoder = frame.FrameDecoder(frame_bytes_max=4096)
        out = []
        for piece in pieces:
            kind, got = _outcome(decoder.feed, piece)
            if kind != "ok":
                out.append((kind, got))
                break
            out.extend(_typed(cmd) for cmd in got)
        return tuple(map(repr, out)), decoder.pending_bytes
    finally:
        frame._decode_frames = saved


def _frame(header: bytes, body: bytes, serialize_type: int = 0) -> bytes:
    return (len(header) + len(body) + 4).to_bytes(4, "big") + ((serialize_type << 24) | len(header)).to_bytes(
        4, "big") + header + body


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "0", "-1", "007", "true", "TRUE", "x\u0001y\u0002", "\ud800", "é", "\U0001F600", '"\\/'])
_INT = st.integers(-2**31, 2**31 - 1) | st.integers(-2**40, 2**40) | st.sampled_from([0, -1, 310, 2**31, -2**31 - 1])
_VALUE = _INT | _TEXT | st.booleans() | st.none() | st.floats(allow_nan=False) | st.lists(st.integers(), max_size=2)


@st.composite
def json_headers(draw) -> bytes:
    """A JSON header: mostly the usual shape, with every way of leaving it drawn too."""
    doc: dict = {}
    keys = ["code", "language", "version", "opaque", "flag", "extFields", "serializeTypeCurrentRPC"]
    usual = draw(st.booleans())
    for key in draw(st.permutations(keys)):
        if usual:
            doc[key] = (draw(st.dictionaries(_TEXT, _TEXT, max_size=6)) if key == "extFields" else
                        draw(_TEXT) if key in ("language", "serializeTypeCurrentRPC") else
                        draw(st.integers(-2**31, 2**31 - 1)))
            continue
        if draw(st.integers(0, 9)) == 0:
            continue                                    # missing
        if key == "extFields":
            doc[key] = draw(st.dictionaries(_TEXT, _TEXT | (_VALUE if draw(st.integers(0, 6)) == 0 else _TEXT),
                                            max_size=6))
        elif key in ("language", "serializeTypeCurrentRPC"):
            doc[key] = draw(_TEXT | _VALUE) if draw(st.integers(0, 5)) == 0 else draw(st.sampled_from(["JAVA", "CPP"]))
        else:
            doc[key] = draw(_VALUE) if draw(st.integers(0, 5)) == 0 else draw(_INT)
    if draw(st.integers(0, 8)) == 0:
        doc[draw(st.sampled_from(["remark", "other"]))] = draw(_VALUE)
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])))
    raw = text.encode("utf-8", "surrogatepass")
    edit = draw(st.integers(0, 15))
    if edit == 0 and raw:                               # a byte changed
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([draw(st.integers(0, 255))]) + raw[i + 1:]
    elif edit == 1 and raw:                             # cut short
        raw = raw[:draw(st.integers(0, len(raw) - 1))]
    elif edit == 2:                                     # a repeated key
        raw = raw[:-1] + b',"code":5}'
    elif edit == 3:
        raw = b" \n" + raw + b"\t "
    return raw


def _send_frames(rng: random.Random, n: int) -> list[bytes]:
    template = SendFrameTemplate(codes.SEND_MESSAGE_V2, client_header_v2(
        "group", "Topic\u00e9", rng.randrange(8), 0, 0, 0, "", False, "broker-a"))
    return [template.frame(rng.randrange(2**31), rng.randrange(2**42), _ID_PROPERTIES % b"%032X" % rng.getrandbits(128),
                           rng.randbytes(rng.randrange(300))) for _ in range(n)]


@SETTINGS
@given(st.lists(st.tuples(json_headers(), st.binary(max_size=40), st.sampled_from([0, 0, 0, 1, 2])), max_size=4),
       st.integers(0, 2**32), st.integers(0, 3))
def test_frames_decode_as_the_python_loop(parts, seed, mangle) -> None:
    rng = random.Random(seed)
    data = b"".join(_frame(h, b, t) for h, b, t in parts) + b"".join(_send_frames(rng, rng.randrange(3)))
    pieces = mangled_reads(rng, data, mangle)
    assert _feed(pieces, native.decode_frames) == _feed(pieces, None)


def test_usual_send_frames_are_taken_by_c_and_equal() -> None:
    rng = random.Random(7)
    data = b"".join(_send_frames(rng, 50))
    out: list = []
    assert native.decode_frames(data, 0, 1 << 24, out, RemotingCommand) == len(data)
    assert _feed([data], native.decode_frames) == _feed([data], None)
    assert len(out) == 50 and out[0].ext_fields["b"] == "Topic\u00e9"


@pytest.mark.parametrize("header", [
    b'{"code":-0,"extFields":{}}', b'{"code":1e2,"extFields":{}}', b'{"code":1.0,"extFields":{}}',
    b'{"code":01,"extFields":{}}', b'{"code":2147483648,"extFields":{}}', b'{"code":-2147483648,"extFields":{}}',
    b'{"code":99999999999999999999,"extFields":{}}', b'{"code":1,"extFields":{"a":"\\/\\u00e9\\ud83d\\ude00"}}',
    b'{"code":1,"extFields":{"a":"\\ud83d"}}', b'{"code":1,"extFields":{"a":"\\ude00x"}}',
    b'{"code":1,"extFields":{"a":"x","a":"y"}}', b'{"code":1,"extFields":{"a":{"b":"c"}}}',
    b'{"code":1,"extFields":{"a":null}}', b'{"code":1,"extFields":{"\xc3\xa9":"\xc3"}}',
    b'{"code":1,"extFields":{}} x', b'{"code":1,"extFields":{},}', b'{"code":1,"extFields":{"a":"b",}}',
    b'{"code":1,"extFields":{"a":"\\x"}}', b'{"code":1,"extFields":{"a":"\x01"}}', b'{"code":1,"code":2,"extFields":{}}',
    b'{"code":true,"extFields":{}}', b'{"code":1,"language":3,"extFields":{}}', b'{"code":1}', b'[1]', b'',
    b'\xef\xbb\xbf{"code":1,"extFields":{}}', b'{"code":1,"extFields":{"a":"b"},"serializeTypeCurrentRPC":7}',
    b'{"code":1,"extFields":{"a":"\\u0000"}}', b'{"code":1,"extFields":{"a":"\xed\xa0\x80"}}',
])
def test_json_edges_as_python(header: bytes) -> None:
    data = _frame(header, b"body")
    assert _feed([data], native.decode_frames) == _feed([data], None)


def test_c_stops_at_what_it_does_not_take() -> None:
    usual = _send_frames(random.Random(1), 1)[0]
    remark = _frame(b'{"code":1,"remark":"r","extFields":{}}', b"")
    for data, taken in ((usual + remark + usual, len(usual)), (usual + usual[:10], len(usual)),
                        ((3).to_bytes(4, "big") + usual, 0), (_frame(b"{}", b"", 1), 0)):
        out: list = []
        assert native.decode_frames(data, 0, 1 << 24, out, RemotingCommand) == taken
        assert native.decode_frames(bytearray(data), 0, 1 << 24, [], RemotingCommand) == taken
    with pytest.raises(ValueError):
        native.decode_frames(usual, len(usual) + 1, 1 << 24, [], RemotingCommand)


_DIGITS = st.from_regex(r"-?[0-9]{1,20}", fullmatch=True) | st.sampled_from(["", "-", "+1", "1.0", "\u0661", " 1"])


@SETTINGS
@given(st.dictionaries(st.sampled_from("abcdefghijklmnz"), _DIGITS | _TEXT | st.sampled_from(["True", "tRuE", "false"]),
                       max_size=15),
       st.lists(st.sampled_from("abcdefghijklmn"), max_size=2), st.booleans())
def test_send_header_as_python(ext, drop, odd_value) -> None:
    ext.setdefault("a", "g")
    ext.setdefault("b", "t")
    for key in drop:
        ext.pop(key, None)
    if odd_value:
        ext["e"] = 3                                    # not a string: Python decides
    assert _outcome(headers.send_header_v2, ext) == _outcome(headers._send_header_v2, ext)
    assert native.send_header_v2(ext, headers.SendMessageHeader, codes.DEFAULT_TOPIC) is None or not odd_value


@SETTINGS
@given(st.integers(-2**70, 2**70) | st.booleans(), st.integers(-2**15, 2**15), _TEXT | st.text("0123456789ABCDEF", min_size=32,
                                                                                                 max_size=32),
       st.integers(-2**63, 2**63), st.integers(-2**70, 2**70), st.none() | _TEXT)
def test_success_frame_as_python(opaque, version, msg_id, queue_id, queue_offset, transaction_id) -> None:
    args = (opaque, version, msg_id, queue_id, queue_offset, transaction_id)
    saved = command._sendpath
    command._sendpath = None
    try:
        expected = _outcome(command.send_success_frame, *args)
    finally:
        command._sendpath = saved
    assert _outcome(command.send_success_frame, *args) == expected
    if expected[0] == "ok" and -2**31 <= opaque < 2**31:
        assert command.decode_frame_content(expected[1][4:]).ext_fields["msgId"] == msg_id


_HOST = st.sampled_from([("127.0.0.1", 10911), ("10.1.2.3", 0), ("::1", 5), ("fe80::1", 70000), ("bad", 1),
                         ("127.0.0.1", 2**31), ["127.0.0.1", 1]])


@SETTINGS
@given(st.text(st.characters(codec="utf-8"), max_size=140) | st.sampled_from(["T", "x" * 127, "x" * 128, "\ud800"]),
       st.integers(-2**31 - 1, 2**31) | st.booleans(), st.integers(-2**31, 2**31 - 1), st.integers(-2**33, 2**33),
       st.integers(-2**64, 2**64), _HOST, st.integers(-2**63, 2**63 - 1), _HOST, st.integers(-2**31, 2**31),
       st.binary(max_size=600), st.binary(max_size=64) | st.just(b"p" * 32768), st.sampled_from([0, 1, 2, 3]))
def test_record_as_python(topic, queue_id, flag, sysflag, born_ms, born_host, store_ms, store_host, reconsume,
                          body, properties, version) -> None:
    args = (topic, queue_id, flag, sysflag, born_ms, born_host, store_ms, store_host, reconsume, body, properties,
            version)
    saved = record._sendpath
    record._sendpath = None
    try:
        expected = _outcome(record.encode_fields, *args)        # also notes the hosts in record._HOSTS
        native_now = _outcome(lambda: native.encode_fields(*args, record._HOSTS))
    finally:
        record._sendpath = saved
    assert _outcome(record.encode_fields, *args) == expected
    if native_now[1] is not None:
        assert native_now == expected


def test_record_bytes_of_a_usual_send() -> None:
    args = ("Topic", 3, 0, 0, 1_700_000_000_000, ("127.0.0.1", 5555), 1_700_000_000_001, ("127.0.0.1", 10911), 0,
            b"x" * 1024, b"UNIQ_KEY\x01AB\x02WAIT\x01true\x02", 0)
    saved = record._sendpath
    record._sendpath = None
    try:
        expected = record.encode_fields(*args)
    finally:
        record._sendpath = saved
    assert native.encode_fields(*args, record._HOSTS) == expected
    assert record.decode_message(expected, 0)[0].body == b"x" * 1024


@SETTINGS
@given(st.lists(st.sampled_from(["\x01", "\x02", "a", "KEY", "é", "\U0001F600", "\x00", "\x01\x02", "\x02\x02"]),
                max_size=24).map("".join) | st.text(max_size=40))
def test_properties_as_python(text) -> None:
    saved = record._sendpath
    record._sendpath = None
    try:
        expected = record.decode_properties(text)
    finally:
        record._sendpath = saved
    got = native.decode_properties(text)
    assert got == expected and list(got.items()) == list(expected.items())
    assert record.decode_properties(text) == expected
    assert native.decode_properties(text.encode("utf-8", "surrogatepass")) is None   # bytes: Python decodes


@SETTINGS
@given(st.lists(st.binary(min_size=40, max_size=60) | st.builds(
    lambda q, qo, po: b"\0" * 12 + q.to_bytes(4, "big", signed=True) + b"\0" * 4 + qo.to_bytes(8, "big", signed=True)
    + po.to_bytes(8, "big", signed=True) + b"\0" * 20,
    st.integers(-2**31, 2**31 - 1), st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**63 - 1)), max_size=5),
       st.integers(0, 2**40), st.sampled_from(["7F00000100002A9F", "", "é"]))
def test_put_results_as_python(bodies, first, prefix) -> None:
    from mqbench.broker.server import proposals

    store = proposals.Proposals.__new__(proposals.Proposals)
    store._id_prefix, store.put_count, store._stored_bodies = prefix, 0, lambda lo, hi: list(bodies)
    saved = proposals._sendpath
    proposals._sendpath = None
    try:
        expected = _outcome(store._results, first, first + len(bodies) - 1)
    finally:
        proposals._sendpath = saved
    built = native.put_results(list(bodies), first, prefix, proposals.PutResult)
    if built is not None:
        assert ("ok", built) == expected
        assert [type(r.queue_offset) for r in built] == [int] * len(built)
    assert _outcome(store._results, first, first + len(bodies) - 1) == expected


@SETTINGS
@given(st.dictionaries(st.sampled_from(headers._LONG_NAMES + ("other",)),
                       _DIGITS | _TEXT | st.sampled_from(["True", "tRuE", "false"]), max_size=15),
       st.sampled_from(["producerGroup", "topic", "queueId", None]), st.booleans())
def test_long_name_send_header_as_python(ext, drop, odd_value) -> None:
    ext.setdefault("producerGroup", "g")
    ext.setdefault("topic", "t")
    ext.pop(drop, None)
    if odd_value:
        ext["queueId"] = 3
    cmd = RemotingCommand(codes.SEND_MESSAGE, ext_fields=ext)
    assert _outcome(headers.send_header, cmd) == _outcome(headers.SendMessageHeader.from_ext, ext)
