"""Hypothesis strategies for commitlog records, shared by the record codec tests
(``test_formats_record``) and the C run decoder's tests against it (``test_fields_run_native``)."""
from __future__ import annotations

from hypothesis import strategies as st

from mqbench.broker.formats.record import Message

I32 = st.integers(-2**31, 2**31 - 1)
I64 = st.integers(-2**63, 2**63 - 1)
HOSTS = ("127.0.0.1", "10.1.2.3", "::1", "fe80::1", "255.255.255.255")


def messages(*, body_size_max: int = 300, properties_max: int = 5, text_size_max: int = 12,
             hosts: tuple[str, ...] = HOSTS) -> st.SearchStrategy[Message]:
    """Any encodable ``Message``: every numeric field over its whole range, hosts from ``hosts``
    (IPv4 and IPv6) with any port, property names and values without the separators, and sysflag
    without the host-kind bits (the encoder sets those)."""
    text = st.text(st.characters(blacklist_characters="\x01\x02", blacklist_categories=("Cs",)), min_size=1,
                   max_size=text_size_max)
    host = st.tuples(st.sampled_from(hosts), st.integers(0, 65535))

    @st.composite
    def one(draw) -> Message:
        return Message(
            topic=draw(st.text(st.characters(min_codepoint=33, max_codepoint=0x2FF), min_size=1, max_size=140)),
            body=draw(st.binary(max_size=body_size_max)),
            properties=draw(st.dictionaries(text, text, max_size=properties_max)),
            queue_id=draw(I32), flag=draw(I32), queue_offset=draw(I64), physical_offset=draw(I64),
            sysflag=draw(I32) & ~0x30, born_timestamp_ms=draw(I64), born_host=draw(host),
            store_timestamp_ms=draw(I64), store_host=draw(host), reconsume_times=draw(I32),
            prepared_tx_offset=draw(I64),
        )
    return one()
