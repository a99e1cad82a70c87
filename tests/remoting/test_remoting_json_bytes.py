"""The JSON header goes through orjson: the bytes must be the ones the standard encoder wrote
(compact separators, UTF-8 kept, control characters escaped), so clients see no change."""
import json

from hypothesis import given, strategies as st

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import (
    RemotingCommand,
    decode_frame_content,
    encode_command,
    encode_header,
)


def _standard(cmd: RemotingCommand) -> bytes:
    doc: dict[str, object] = {"code": cmd.code, "language": cmd.language, "version": cmd.version,
                              "opaque": cmd.opaque, "flag": cmd.flag}
    if cmd.remark is not None:
        doc["remark"] = cmd.remark
    doc["extFields"] = cmd.ext_fields
    doc["serializeTypeCurrentRPC"] = "JSON"
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_properties_with_separators_and_non_ascii_match_the_standard_encoder():
    cmd = RemotingCommand.request(codes.SEND_MESSAGE_V2, {"b": "Topic", "i": "UNIQ_KEY\x01AB\x02KEYS\x01é ü\u2028\x7f\x02",
                                                         "g": 1700000000000})
    cmd.remark = 'a "quoted" \\ remark\n'
    assert encode_header(cmd) == _standard(cmd)


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(ext=st.dictionaries(_text, _text, max_size=6), remark=st.none() | _text,
       opaque=st.integers(-(1 << 31), (1 << 31) - 1))
def test_any_header_matches_the_standard_encoder_and_round_trips(ext, remark, opaque):
    cmd = RemotingCommand(code=310, opaque=opaque, remark=remark, ext_fields=ext)
    assert encode_header(cmd) == _standard(cmd)
    back = decode_frame_content(encode_command(cmd)[4:])
    assert (back.ext_fields, back.remark, back.opaque) == (ext, remark, opaque)


def test_a_lone_surrogate_is_refused_as_before():
    cmd = RemotingCommand(code=310, ext_fields={"b": "\ud800"})
    try:
        encode_header(cmd)
    except UnicodeEncodeError:
        return
    raise AssertionError("a lone surrogate was encoded")


_scalar = st.none() | st.booleans() | st.integers(-(1 << 40), 1 << 40) | _text | st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(doc=st.fixed_dictionaries({}, optional={
    "code": _scalar, "opaque": _scalar, "flag": _scalar, "version": _scalar,
    "language": st.sampled_from(["JAVA", "CPP"]) | _scalar, "remark": _scalar,
    "extFields": st.dictionaries(_text, _scalar | st.lists(st.integers(), max_size=1), max_size=4) | _scalar}))
def test_the_usual_header_fast_path_decodes_as_the_field_by_field_checks(doc):
    """``_decode_json_header`` takes the usual header as it is; whatever it is given, it answers
    what the field-by-field checks answer (the same command, or the same PeerError)."""
    from mqbench.broker.formats.command import _checked_header, _decode_json_header
    from mqbench.errors import PeerError

    def outcome(decode):
        try:
            return decode()
        except PeerError as exc:
            return str(exc)

    fast = outcome(lambda: _decode_json_header(json.dumps(doc).encode()))
    checked = outcome(lambda: _checked_header(json.loads(json.dumps(doc))))
    assert fast == checked
