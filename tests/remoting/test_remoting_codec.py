"""The remoting codec: exact bytes of both header encodings, incremental decoding, fuzzing."""
import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand, decode_frame_content, encode_command
from mqbench.broker.formats.frame import FrameDecoder
from mqbench.errors import PeerError, UserError

# A request written out by hand from the layout tables (not by the encoder):
# SEND_MESSAGE_V2 (310 = 0x0136), language PYTHON (3), version 7, opaque 42, flag 0, no remark,
# extFields {"b": "T"}, body b"hi", binary (ROCKETMQ) header.
BINARY_HEADER = bytes.fromhex(
    "0136"        # code 310
    "03"          # language PYTHON
    "0007"        # version 7
    "0000002a"    # opaque 42
    "00000000"    # flag
    "00000000"    # remark length 0
    "00000008"    # ext fields length: 2 + 1 + 4 + 1
    "0001" "62"   # key "b"
    "00000001" "54"  # value "T"
)
BINARY_FRAME = (struct.pack(">i", 4 + len(BINARY_HEADER) + 2) + struct.pack(">i", (1 << 24) | len(BINARY_HEADER))
                + BINARY_HEADER + b"hi")

JSON_HEADER = (b'{"code":105,"language":"PYTHON","version":0,"opaque":9,"flag":1,"remark":"no route",'
               b'"extFields":{"topic":"T"},"serializeTypeCurrentRPC":"JSON"}')
JSON_FRAME = struct.pack(">ii", 4 + len(JSON_HEADER), len(JSON_HEADER)) + JSON_HEADER

# What ali-ons 3.x puts on the wire (lib/protocol/command/remoting_command.js): the header-length
# word without a type byte, numbers and booleans as JSON values in extFields, no remark.
ONS_HEADER = (b'{"code":310,"language":"JAVA","opaque":3,"flag":0,"version":121,"extFields":'
              b'{"a":"PID_x","b":"T","e":2,"g":1700000000000,"k":false}}')
ONS_FRAME = struct.pack(">ii", 4 + len(ONS_HEADER) + 3, len(ONS_HEADER)) + ONS_HEADER + b"abc"


def test_binary_header_bytes_match_the_layout():
    cmd = RemotingCommand(code=310, opaque=42, language="PYTHON", version=7, ext_fields={"b": "T"}, body=b"hi",
                          serialize_type=codes.SERIALIZE_ROCKETMQ)
    assert encode_command(cmd) == BINARY_FRAME
    assert FrameDecoder().feed(BINARY_FRAME) == [cmd]


def test_json_header_bytes_and_flags():
    cmd = RemotingCommand(code=105, opaque=9, flag=codes.FLAG_RESPONSE, remark="no route", ext_fields={"topic": "T"})
    assert encode_command(cmd) == JSON_FRAME
    decoded = FrameDecoder().feed(JSON_FRAME)[0]
    assert decoded == cmd and decoded.is_response and not decoded.is_oneway


def test_ali_ons_frame_decodes_with_java_string_values():
    cmd = FrameDecoder().feed(ONS_FRAME)[0]
    assert cmd.code == codes.SEND_MESSAGE_V2 and cmd.language == "JAVA" and cmd.version == 121
    assert cmd.ext_fields == {"a": "PID_x", "b": "T", "e": "2", "g": "1700000000000", "k": "false"}
    assert cmd.body == b"abc" and cmd.remark is None


def test_response_to_keeps_opaque_and_header_type():
    request = RemotingCommand.request(codes.HEART_BEAT, {"x": 1, "y": True, "z": None}, opaque=77,
                                      serialize_type=codes.SERIALIZE_ROCKETMQ)
    assert request.ext_fields == {"x": "1", "y": "true"}
    response = request.response_to(codes.SYSTEM_ERROR, "boom")
    assert response.opaque == 77 and response.is_response and response.serialize_type == codes.SERIALIZE_ROCKETMQ
    assert RemotingCommand.request(1, oneway=True).is_oneway


FRAMES = [BINARY_FRAME, JSON_FRAME, ONS_FRAME]


def test_fed_whole_byte_by_byte_and_several_per_chunk():
    expected = [FrameDecoder().feed(f)[0] for f in FRAMES]
    stream = b"".join(FRAMES)
    decoder = FrameDecoder()
    got = []
    for i in range(len(stream)):
        got += decoder.feed(stream[i:i + 1])
    assert got == expected and decoder.pending_bytes == 0
    assert FrameDecoder().feed(stream) == expected


def test_trailing_partial_frame_is_kept():
    decoder = FrameDecoder()
    assert decoder.feed(JSON_FRAME + BINARY_FRAME[:11]) == [FrameDecoder().feed(JSON_FRAME)[0]]
    assert decoder.pending_bytes == 11
    assert decoder.feed(BINARY_FRAME[11:])[0].code == 310


def test_oversized_frame_refused_from_its_length_field_alone():
    decoder = FrameDecoder(frame_bytes_max=1024)
    with pytest.raises(PeerError, match="exceeds the 1024-byte limit"):
        decoder.feed(struct.pack(">i", 1021))
    with pytest.raises(PeerError):  # poisoned: the stream has lost its framing
        decoder.feed(JSON_FRAME)


def test_frame_at_the_limit_is_accepted():
    frame = struct.pack(">ii", 4 + len(JSON_HEADER) + 10, len(JSON_HEADER)) + JSON_HEADER + b"x" * 10
    assert FrameDecoder(frame_bytes_max=len(frame)).feed(frame)[0].body == b"x" * 10
    with pytest.raises(PeerError):
        FrameDecoder(frame_bytes_max=len(frame) - 1).feed(frame)


@pytest.mark.parametrize("frame, problem", [
    (struct.pack(">i", 3) + b"abc", "below the 4-byte minimum"),
    (struct.pack(">ii", 8, 10) + b"{}{}", "header length 10 exceeds"),
    (struct.pack(">ii", 6, (2 << 24) | 2) + b"{}", "unknown header serialize type 2"),
    (struct.pack(">ii", 7, 3) + b"{x}", "JSON header does not parse"),
    (struct.pack(">ii", 6, 2) + b"[]", "not an object"),
    (struct.pack(">ii", 15, 11) + b'{"code":"a"}'[:11], "JSON header does not parse"),
    (struct.pack(">ii", 16, 12) + b'{"code":"a"}', "'code'"),
    (struct.pack(">ii", 6, 2) + b"{}", "no 'code'"),
    (struct.pack(">ii", 28, 24) + b'{"code":1,"extFields":1}', "extFields"),
    (struct.pack(">ii", 38, 34) + b'{"code":1,"extFields":{"a":[1,2]}}', "nested"),
    (struct.pack(">ii", 28, 24) + b'{"code":1,"opaque":1e99}', "'opaque'"),
    (struct.pack(">ii", 8, (1 << 24) | 4) + b"\0" * 4, "shorter than the fixed 21"),
    (struct.pack(">ii", 4 + 21, (1 << 24) | 21) + bytes(13) + struct.pack(">i", 5) + bytes(4), "remark length 5"),
    (struct.pack(">ii", 4 + 21, (1 << 24) | 21) + bytes(13) + struct.pack(">ii", 0, 9), "ext-fields length 9"),
    (struct.pack(">ii", 4 + 24, (1 << 24) | 24) + bytes(13) + struct.pack(">iih", 0, 3, 7) + b"k", "ext field name length 7"),
    (struct.pack(">ii", 4 + 22, (1 << 24) | 22) + bytes(13) + struct.pack(">ii", 0, 0) + b"z", "1 bytes after its ext fields"),
    (struct.pack(">ii", 4 + 21, (1 << 24) | 21) + bytes(13) + struct.pack(">i", 4) + b"\xff\xfe\xfd\xfc" + b"", "ext-fields length"),
])
def test_malformed_frames_name_the_problem(frame, problem):
    with pytest.raises(PeerError, match=problem.replace("(", r"\(").replace("[", r"\[")):
        FrameDecoder().feed(frame)


def test_binary_header_rejects_codes_that_do_not_fit_int16():
    with pytest.raises(UserError, match="int16"):
        encode_command(RemotingCommand(code=200050, serialize_type=codes.SERIALIZE_ROCKETMQ))
    assert FrameDecoder().feed(encode_command(RemotingCommand(code=200050)))[0].code == 200050


# --- property tests -------------------------------------------------------------------------------

text = st.text(max_size=20)
int32 = st.integers(-(1 << 31), (1 << 31) - 1)
int16 = st.integers(-(1 << 15), (1 << 15) - 1)


@st.composite
def commands(draw):
    serialize_type = draw(st.sampled_from([codes.SERIALIZE_JSON, codes.SERIALIZE_ROCKETMQ]))
    small = int16 if serialize_type == codes.SERIALIZE_ROCKETMQ else int32
    remark = draw(st.none() | text)
    if serialize_type == codes.SERIALIZE_ROCKETMQ and remark == "":
        remark = None  # the binary header cannot tell an empty remark from none
    return RemotingCommand(code=draw(small), opaque=draw(int32), flag=draw(int32),
                           language=draw(st.sampled_from(sorted(codes.LANGUAGE_CODES))), version=draw(small),
                           remark=remark, ext_fields=draw(st.dictionaries(text, text, max_size=5)),
                           body=draw(st.binary(max_size=64)), serialize_type=serialize_type)


@given(st.lists(commands(), min_size=1, max_size=4), st.data())
def test_round_trip_in_random_pieces(cmds, data):
    stream = b"".join(encode_command(c) for c in cmds)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    decoder, got, start = FrameDecoder(), [], 0
    for cut in cuts + [len(stream)]:
        got += decoder.feed(stream[start:cut])
        start = cut
    assert got == cmds and decoder.pending_bytes == 0


@given(st.binary(max_size=300), st.data())
def test_random_bytes_raise_only_peer_error(blob, data):
    decoder = FrameDecoder(frame_bytes_max=4096)
    cut = data.draw(st.integers(0, len(blob)))
    try:
        decoder.feed(blob[:cut])
        decoder.feed(blob[cut:])
    except PeerError:
        pass


@given(st.sampled_from([0, 1, 2]), st.binary(max_size=200), st.binary(max_size=20))
def test_random_headers_behind_a_valid_prefix_raise_only_peer_error(serialize_type, header, body):
    frame = struct.pack(">ii", 4 + len(header) + len(body), (serialize_type << 24) | len(header)) + header + body
    try:
        FrameDecoder().feed(frame)
    except PeerError:
        pass


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                                                       st.text(max_size=8), st.lists(st.integers(), max_size=2)),
                       max_size=4),
       st.one_of(st.integers(), st.text(max_size=5), st.none(), st.booleans()))
def test_json_headers_with_random_values_raise_only_peer_error(ext, code):
    header = json.dumps({"code": code, "opaque": 1, "extFields": ext}).encode()
    try:
        cmd = decode_frame_content(struct.pack(">i", len(header)) + header)
    except PeerError:
        return
    assert all(isinstance(v, str) for v in cmd.ext_fields.values())


def test_bytes_bytearray_and_memoryview_pieces_decode_alike_with_a_partial_frame_carried_over():
    """A read's bytes are decoded in place (no copy of the frame first); a piece that ends inside a
    frame is kept, and any buffer type gives the same commands with bytes bodies."""
    stream = b"".join(FRAMES) * 2
    expected = FrameDecoder().feed(stream)
    cut = len(FRAMES[0]) + 3                     # inside the second frame
    for kind in (bytes, bytearray, memoryview):
        decoder = FrameDecoder()
        got = decoder.feed(kind(stream[:cut]))
        assert decoder.pending_bytes == 3
        got += decoder.feed(kind(stream[cut:]))
        assert got == expected and decoder.pending_bytes == 0
        assert all(type(c.body) is bytes for c in got)
