"""``SendFrameTemplate.frame_filled`` (a load generator's send: the property template's fill and the
frame in one step) is ``frame(opaque, born_ms, properties.fill_wire(texts), body)``, with the C
``_sendpath.send_frame`` and without it (MQBENCH_NATIVE=0 / a value C leaves to Python), on the same
inputs: usual and unusual values, every type C does not take, and malformed arguments (None, never
an exception)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand, encode_command
from mqbench.client import pipeline
from mqbench.client.pipeline import PropertyTemplate, SendFrameTemplate, json_string_content
from mqbench.client.producer import send_header_v2
from mqbench.errors import UserError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MARKS = ("\x00a\x00", "\x00b\x00", "\x00c\x00")
_names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=12)
_values = st.one_of(st.integers(-2**70, 2**70), st.integers(0, 2**63), st.text(max_size=12),
                    st.text("0123456789ABCDEFabcdef", max_size=40), st.booleans())


def _csend():
    return pytest.importorskip("mqbench.broker.formats._sendpath").send_frame


def _reference(template: SendFrameTemplate, opaque, born_ms, properties: PropertyTemplate, values, body) -> bytes:
    texts = tuple(str(value) for value in values)
    return template.frame(opaque, born_ms, properties.fill_wire(texts), body)


def _outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except (UserError, ValueError, TypeError, OverflowError) as exc:
        return type(exc).__name__, str(exc)


@st.composite
def _case(draw):
    topic, group = draw(_names), draw(_names)
    template = SendFrameTemplate(codes.SEND_MESSAGE_V2, send_header_v2(group, topic, draw(st.integers(0, 64)), 0, 0,
                                                                        0, "", False, "b"))
    slots = draw(st.integers(0, 3))
    pieces = draw(st.lists(st.text(max_size=10).map(lambda t: t.replace("\x00", "")), min_size=slots + 1,
                           max_size=slots + 1))
    text = pieces[0] + "".join(MARKS[i] + pieces[i + 1] for i in range(slots))
    properties = PropertyTemplate(text, MARKS)
    values = tuple(draw(_values) for _ in range(slots))
    opaque = draw(st.one_of(st.integers(0, 2**31 - 2), st.integers(-2**64, 2**64)))
    born_ms = draw(st.one_of(st.integers(0, 2**45), st.integers(-2**64, 2**64)))
    return template, opaque, born_ms, properties, values, draw(st.binary(max_size=40))


@SETTINGS
@given(_case())
def test_frame_filled_is_the_frame_of_the_filled_text_with_and_without_c(case):
    template, opaque, born_ms, properties, values, body = case
    expected = _outcome(_reference, template, opaque, born_ms, properties, values, body)
    assert _outcome(template.frame_filled, opaque, born_ms, properties, values, body) == expected
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "_send_frame", None)       # the Python path (MQBENCH_NATIVE=0)
        assert _outcome(template.frame_filled, opaque, born_ms, properties, values, body) == expected
    fast = _csend()(template._head, properties._wire, values, opaque, born_ms, body)
    if fast is not None:                         # what C takes, it gives as Python does
        assert ("ok", fast) == expected


def test_the_run_messages_filled_frame_is_the_encoded_request():
    """The run's usual send (intended time and a 32-hex-digit id; a delayed one's delivery time too)
    is byte for byte ``encode_command`` of the request with the filled text, and C takes it."""
    template = SendFrameTemplate(codes.SEND_MESSAGE_V2, send_header_v2("PID_g", "order_events", 3, 0, 0, 0, "",
                                                                        False, "broker-a"))
    text = "KEYS\x01o-1\x02mqbIntendedNs\x01\x00a\x00\x02mqbDeliverNs\x01\x00b\x00\x02UNIQ_KEY\x01\x00c\x00\x02WAIT\x01true"
    properties = PropertyTemplate(text, MARKS)
    values = (1_700_000_000_123_456_789, 1_700_000_001_000_000_000, "7F0000010A8C1B2A3C4D000000000001")
    body = b'{"order": 1, "note": "\\u00e9"}'
    filled = text.replace(MARKS[0], str(values[0])).replace(MARKS[1], str(values[1])).replace(MARKS[2], values[2])
    expected = encode_command(RemotingCommand(
        code=codes.SEND_MESSAGE_V2, opaque=41, language="PYTHON", body=body,
        ext_fields=send_header_v2("PID_g", "order_events", 3, 0, 1_700_000_000_123, 0, filled, False, "broker-a")))
    assert template.frame(41, 1_700_000_000_123, json_string_content(filled), body) == expected
    assert template.frame_filled(41, 1_700_000_000_123, properties, values, body) == expected
    assert _csend()(template._head, properties._wire, values, 41, 1_700_000_000_123, body) == expected


@pytest.mark.parametrize("args", [
    (),                                                             # wrong count
    ((b"a", b"b", b"c"), (b"",), (), 1, 2, b""),                    # three head parts
    ((b"a", b"b", b"c", "d"), (b"",), (), 1, 2, b""),               # a str head part
    ((b"a", b"b", b"c", b"d"), [b""], (), 1, 2, b""),               # a list, not a tuple
    ((b"a", b"b", b"c", b"d"), (b"", b""), (), 1, 2, b""),          # one wire part too many
    ((b"a", b"b", b"c", b"d"), (b"", b""), (1.5,), 1, 2, b""),      # a float value
    ((b"a", b"b", b"c", b"d"), (b"", b""), ("a b",), 1, 2, b""),    # a str JSON would escape differently
    ((b"a", b"b", b"c", b"d"), (b"", b""), ("é",), 1, 2, b""),      # not ASCII
    ((b"a", b"b", b"c", b"d"), (b"", b""), (True,), 1, 2, b""),     # a bool (str(True), not 1)
    ((b"a", b"b", b"c", b"d"), (b"", b""), (1,), 2**63, 2, b""),    # an opaque over 64 bits
    ((b"a", b"b", b"c", b"d"), (b"", b""), (1,), 1, "2", b""),      # a str born timestamp
    ((b"a", b"b", b"c", b"d"), (b"", b""), (1,), 1, 2, bytearray()),  # not bytes
    ((b"a", b"b", b"c", b"d"), (b"",) * 10, (1,) * 9, 1, 2, b""),   # more slots than C keeps
])
def test_c_leaves_anything_unusual_to_python(args):
    assert _csend()(*args) is None


def test_c_formats_every_64_bit_boundary_as_python_does():
    send = _csend()
    head, wire = (b"<", b"|", b"|", b">"), (b"[", b"]")
    for n in (0, 1, 9, 10, -1, -10, 2**31 - 1, 2**31, 2**63 - 1, -2**63, -2**63 + 1):
        frame = send(head, wire, (n,), n, n, b"!")
        header = b"<%d|%d|[%d]>" % (n, n, n)
        assert frame == (4 + len(header) + 1).to_bytes(4, "big") + len(header).to_bytes(4, "big") + header + b"!"
