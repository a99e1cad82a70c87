"""The producer builds the send header directly (``send_header_v2``); it must be what the typed
header writes, name for name, value for value, in the same order."""
import pytest
from hypothesis import given, strategies as st

from mqbench.broker.formats import headers
from mqbench.client.producer import send_header_v2
from mqbench.errors import UserError

_names = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=20)


@given(group=_names, topic=_names, queue_id=st.integers(0, 2**31 - 1), sys_flag=st.integers(0, 2**31 - 1),
       born_ms=st.integers(0, 2**62), flag=st.integers(-2**31, 2**31 - 1), properties=st.text(max_size=40),
       batch=st.booleans(), broker_name=_names)
def test_send_header_v2_is_the_typed_header(group, topic, queue_id, sys_flag, born_ms, flag, properties, batch,
                                            broker_name):
    typed = headers.SendMessageHeader(
        producer_group=group, topic=topic, queue_id=queue_id, sys_flag=sys_flag, born_timestamp_ms=born_ms,
        flag=flag, properties=properties, reconsume_times=0, unit_mode=False, batch=batch,
        broker_name=broker_name).to_v2()
    direct = send_header_v2(group, topic, queue_id, sys_flag, born_ms, flag, properties, batch, broker_name)
    assert list(direct.items()) == list(typed.items())
    assert headers.SendMessageHeader.from_v2(direct) == headers.SendMessageHeader.from_v2(typed)


@given(group=_names, topic=_names, queue_id=st.integers(0, 2**31 - 1), sys_flag=st.integers(0, 2**31 - 1),
       born_ms=st.integers(0, 2**62), flag=st.integers(-2**31, 2**31 - 1),
       properties=st.text(max_size=40), batch=st.booleans(), broker_name=_names,
       opaque=st.integers(0, 2**31 - 2), body=st.binary(max_size=64))
def test_prebuilt_send_frame_is_the_encoded_request(group, topic, queue_id, sys_flag, born_ms, flag, properties,
                                                    batch, broker_name, opaque, body):
    """The frame spliced from a SendFrameTemplate is byte for byte encode_command of the request."""
    from mqbench.broker.formats import codes
    from mqbench.broker.formats.command import RemotingCommand, encode_command
    from mqbench.client.pipeline import SendFrameTemplate, json_string_content

    code = codes.SEND_BATCH_MESSAGE if batch else codes.SEND_MESSAGE_V2
    template = SendFrameTemplate(code, send_header_v2(group, topic, queue_id, sys_flag, 0, flag, "", batch,
                                                      broker_name))
    expected = encode_command(RemotingCommand(code=code, opaque=opaque, language="PYTHON", body=body,
                                              ext_fields=send_header_v2(group, topic, queue_id, sys_flag, born_ms,
                                                                        flag, properties, batch, broker_name)))
    assert template.frame(opaque, born_ms, json_string_content(properties), body) == expected


@given(st.integers(0, 0xFFFF), st.integers(0, 2**40), st.integers(0, 2**40))
def test_an_id_at_a_clock_reading_is_the_id_next_gives_then(counter, now_ms, month_start_ms):
    """``next_at(now_ms)`` (a sender that reads the clock once for the id and the born timestamp)
    is ``next()`` with the clock at ``now_ms``, counter included."""
    from mqbench.client.messages import UniqueIdGenerator

    one, at = (UniqueIdGenerator("10.1.2.3", 4321, 77, lambda: now_ms, month_start_ms) for _ in range(2))
    one._counter = at._counter = counter
    assert [at.next_at(now_ms) for _ in range(3)] == [one.next() for _ in range(3)]


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=8), st.integers(0, 0xFFFF), st.integers(0, 2**40))
def test_prebuilt_batch_body_is_what_encode_batch_writes(bodies, counter, now_ms):
    """A BatchBodyTemplate's body with ``next_run``'s ids is byte for byte the body the item-by-item
    path builds from ``next`` (same ids: the counter wraps the same way), and each id is distinct."""
    from mqbench.broker.formats.batch import BatchItem, decode_batch, encode_batch
    from mqbench.client.messages import UniqueIdGenerator
    from mqbench.client.pipeline import BatchBodyTemplate

    one, run = (UniqueIdGenerator("10.1.2.3", 4321, 77, lambda: now_ms, 1_000) for _ in range(2))
    one._counter = run._counter = counter
    items = [BatchItem(body, {"UNIQ_KEY": one.next(), "WAIT": "true"}, 0) for body in bodies]
    template = BatchBodyTemplate(bodies)
    body = template.body(run.next_run(len(bodies)))
    assert body == encode_batch(items) and len(body) == template.size
    assert run.next() == one.next()
    keys = [item.properties["UNIQ_KEY"] for item in decode_batch(body)]
    assert len(set(keys)) == len(keys)
    with pytest.raises(UserError):
        template.body(run.next_run(len(bodies) + 1))
    with pytest.raises(UserError):
        template.body([b"0" * 31] * len(bodies))
