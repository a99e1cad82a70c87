"""A consumer's prebuilt PULL_MESSAGE frame (``pipeline.FrameTemplate``): byte for byte what
``encode_command`` gives for the request the general (signed) path builds, for every value."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import decode_frame_content, encode_command
from mqbench.client.consumer import Consumer, _QueueState
from mqbench.client.pipeline import FrameTemplate
from mqbench.client.routes import MessageQueue
from mqbench.errors import UserError


def _consumer(subscription: str) -> Consumer:
    consumer = Consumer("127.0.0.1:1", "g-pull", pull_batch_size=64, suspend_timeout_ms=2000)
    consumer.subscribe("order_events", subscription)
    return consumer


@settings(max_examples=40, deadline=None)
@given(next_offset=st.integers(0, 2**62), taken_offset=st.integers(-1, 2**62), committed=st.integers(-1, 2**62),
       opaque=st.integers(0, 2**31 - 1), subscription=st.sampled_from(["*", "PAID || CANCELLED", "a\"b\\\\c || ü"]))
def test_the_spliced_pull_frame_is_the_encoded_request(next_offset, taken_offset, committed, opaque, subscription):
    consumer = _consumer(subscription)
    state = _QueueState(MessageQueue("order_events", "broker-a", 3), next_offset=next_offset, committed=committed)
    request = consumer._pull_request(state)
    request.opaque = opaque
    template, values = consumer._pull_fields(state)
    frame = FrameTemplate(codes.PULL_MESSAGE, template, ("queueOffset", "sysFlag", "commitOffset"))
    assert frame.frame(opaque, tuple(v.encode() for v in values)) == encode_command(request)


def test_a_frame_template_keeps_the_body_and_refuses_missing_slots():
    template = FrameTemplate(codes.PULL_MESSAGE, {"topic": "t", "queueOffset": "0"}, ("queueOffset",))
    decoded = decode_frame_content(template.frame(7, (b"42",), b"xyz")[4:])
    assert decoded.opaque == 7 and decoded.ext_fields["queueOffset"] == "42" and decoded.body == b"xyz"
    with pytest.raises(UserError):
        FrameTemplate(codes.PULL_MESSAGE, {"topic": "t"}, ("queueOffset",))
