"""``messages.keep_pulled`` (a pull's messages filtered in one call) keeps exactly what the
per-message filter kept: ``queue_offset >= offset and matches_tags(m, tags)``, with properties as
dicts or as the record's lazy text, and leaves each message's properties readable as before."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mqbench.broker.formats.properties import PROPERTY_TAGS
from mqbench.broker.formats.record import encode_properties
from mqbench.client.messages import ReceivedMessage, keep_pulled, matches_tags

_message = st.tuples(st.integers(0, 9), st.sampled_from([None, "a", "b", "a||b", ""]), st.booleans())


def _received(offset, tag, as_text):
    properties = {"k": "v"} if tag is None else {PROPERTY_TAGS: tag, "k": "v"}
    return ReceivedMessage("t", "b0", 0, offset, b"x", encode_properties(properties).decode() if as_text else properties,
                           0, 0, ("127.0.0.1", 1), ("127.0.0.1", 2), offset, 0, 0)


@settings(max_examples=30, deadline=None)
@given(st.lists(_message, max_size=12), st.integers(0, 10), st.one_of(st.none(), st.sets(st.sampled_from(["a", "b", ""]))))
def test_keep_pulled_is_the_per_message_filter(messages, offset, tags):
    one = [_received(*m) for m in messages]
    bulk = [_received(*m) for m in messages]
    expected = [i for i, m in enumerate(one) if m.queue_offset >= offset and matches_tags(m, tags)]
    kept = keep_pulled(bulk, offset, tags)
    position = {id(m): i for i, m in enumerate(bulk)}
    assert [position[id(m)] for m in kept] == expected
    assert [m.properties for m in bulk] == [m.properties for m in one]
