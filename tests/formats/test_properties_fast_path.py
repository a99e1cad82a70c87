"""``decode_properties`` reads a string as ``encode_properties`` writes it with one split (the fast
path); for every string it must give what RocketMQ's rules (spec 3.5) give, order included."""
from hypothesis import given, settings, strategies as st

from mqbench.broker.formats.record import decode_properties, encode_properties


def _rules(text):
    result = {}
    for segment in text.split("\x02"):
        if len(segment) < 3:
            continue
        sep = segment.find("\x01")
        if 0 < sep < len(segment) - 1:
            result[segment[:sep]] = segment[sep + 1:]
    return result


@settings(max_examples=3000)
@given(st.text(alphabet=st.sampled_from("ab\x01\x02é"), max_size=30))
def test_any_string_decodes_as_the_rules_say(text):
    assert list(decode_properties(text).items()) == list(_rules(text).items())
    assert decode_properties(text.encode()) == _rules(text)


@given(st.dictionaries(st.text(alphabet="abcKEYS_é", min_size=1, max_size=5),
                       st.text(alphabet="xyz \x01é", min_size=1, max_size=8), max_size=6))
def test_encoded_properties_round_trip(props):
    assert decode_properties(encode_properties(props)) == props
