"""``Producer.submit_to``: sends filed in the channel's table of pending requests as their own
records (``SendReceiver``), no future per send, judged and retried as ``Producer.send`` does.
Against the real name server and the scripted broker (see conftest)."""
import asyncio

from hypothesis import given
from hypothesis import strategies as st

from mqbench.broker.formats import codes
from mqbench.broker.formats import record as rec
from mqbench.client import ClientError, OutgoingMessage, Producer
from mqbench.client.pipeline import PropertyTemplate, json_string_content
from mqbench.client.send_receiver import SendReceiver

_ID_MARK = "\x00id\x00"


class _Record(SendReceiver):
    __slots__ = ("outcomes", "template", "values")

    def delivered(self):
        self.outcomes.append(("ok", self))

    def given_up(self, exc):
        self.outcomes.append(("failed", exc))

    def text(self):
        return self.template.fill(self.values)


def _template(message: OutgoingMessage) -> PropertyTemplate:
    return PropertyTemplate(rec.encode_properties(message.wire_properties(_ID_MARK)).decode("utf-8"), (_ID_MARK,))


def _submit(producer: Producer, outcomes: list, body: bytes, template: PropertyTemplate) -> bool:
    record = _Record()
    uniq_key = producer.ids.next()
    record.outcomes, record.template, record.values = outcomes, template, (uniq_key,)
    return producer.submit_to(record, "Orders", body, template.fill_wire((uniq_key,)), uniq_key)


async def _settle(outcomes: list, count: int) -> None:
    for _ in range(300):
        if len(outcomes) >= count:
            return
        await asyncio.sleep(0.01)


def test_submit_to_sends_without_a_future_and_every_message_is_stored_as_submit_stores_it(cluster, run):
    async def main():
        async with cluster:
            broker = await cluster.add_broker()
            async with Producer(cluster.namesrv_addr, "PID_t") as producer:
                template = _template(OutgoingMessage("Orders", b"x", tags="t", keys=["k1"], properties={"a": "b"}))
                assert not _submit(producer, [], b"early", template)     # no route yet: the caller uses submit
                await producer.send(OutgoingMessage("Orders", b"first"))   # route and connection
                loop = asyncio.get_running_loop()
                made = []
                original = loop.create_future
                loop.create_future = lambda: made.append(1) or original()
                outcomes: list = []
                try:
                    assert all(_submit(producer, outcomes, f"m{i}".encode(), template) for i in range(40))
                finally:
                    loop.create_future = original
                assert made == []           # no future per send
                await _settle(outcomes, 40)
            assert [kind for kind, _ in outcomes] == ["ok"] * 40
            stored = [m for m in broker.stored("Orders") if m.body.startswith(b"m")]
            assert sorted(m.body for m in stored) == sorted(f"m{i}".encode() for i in range(40))
            assert {m.properties["TAGS"] for m in stored} == {"t"} and {m.properties["KEYS"] for m in stored} == {"k1"}
            assert {m.properties["a"] for m in stored} == {"b"}
            assert len({m.properties["UNIQ_KEY"] for m in stored}) == 40
            assert {m.queue_id for m in stored} == {0, 1, 2, 3}     # round robin, as submit
    run(main())


def test_submit_to_retries_refuses_and_gives_up_as_send_does(cluster, run):
    async def main():
        async with cluster:
            g0 = await cluster.add_broker("g0")
            g1 = await cluster.add_broker("g1")
            async with Producer(cluster.namesrv_addr, retries=2) as producer:
                template = _template(OutgoingMessage("Orders", b"x"))
                for _ in range(8):      # a round over both brokers' 4 queues each: both connected
                    await producer.send(OutgoingMessage("Orders", b"warm"))
                outcomes: list = []
                g0.fail_sends = [codes.SYSTEM_BUSY, codes.NO_PERMISSION]
                assert all(_submit(producer, outcomes, b"r", template) for _ in range(8))
                await _settle(outcomes, 8)
                assert [kind for kind, _ in outcomes] == ["ok"] * 8 and not g0.fail_sends
                assert sum(1 for m in g1.stored("Orders") if m.body == b"r") >= 2    # the retries went to g1
                outcomes.clear()
                g0.fail_sends = [codes.MESSAGE_ILLEGAL] * 2
                g1.fail_sends = [codes.MESSAGE_ILLEGAL] * 2
                assert _submit(producer, outcomes, b"bad", template)
                await _settle(outcomes, 1)
                assert outcomes[0][0] == "failed" and isinstance(outcomes[0][1], ClientError)
                assert "MESSAGE_ILLEGAL" in str(outcomes[0][1])
                outcomes.clear()
                g0.fail_sends = [codes.SERVICE_NOT_AVAILABLE] * 3
                g1.fail_sends = [codes.SERVICE_NOT_AVAILABLE] * 3
                assert _submit(producer, outcomes, b"busy", template)
                await _settle(outcomes, 1)
                assert outcomes[0][0] == "failed" and "after 3 attempts" in str(outcomes[0][1])
    run(main())


def test_a_closed_connection_hands_its_sends_to_the_retry(cluster, run):
    async def main():
        async with cluster:
            await cluster.add_broker("g0")
            async with Producer(cluster.namesrv_addr, retries=2) as producer:
                template = _template(OutgoingMessage("Orders", b"x"))
                await producer.send(OutgoingMessage("Orders", b"warm"))
                outcomes: list = []
                assert all(_submit(producer, outcomes, b"c", template) for _ in range(5))
                for channel in list(producer.pool._channels.values()):
                    channel.close("test: connection lost")   # before the frames went out
                await _settle(outcomes, 5)
                assert [kind for kind, _ in outcomes] == ["ok"] * 5    # reconnected, sent again
    run(main())


_TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=30)


@given(st.lists(_TEXT, min_size=3, max_size=3), st.lists(st.text(max_size=12).filter(lambda v: "\x00" not in v),
                                                         min_size=2, max_size=2))
def test_fill_wire_is_the_json_content_of_fill(parts, values):
    marks = ("\x00a\x00", "\x00b\x00")
    template = PropertyTemplate(parts[0] + marks[0] + parts[1] + marks[1] + parts[2], marks)
    assert template.fill_wire(values) == json_string_content(template.fill(values))
    digits = ("1700000000123", "0A1B2C3D4E5F60718293A4B5C6D7E8F9")      # the run's intended time and id
    assert template.fill_wire(digits) == json_string_content(template.fill(digits))


@given(st.lists(_TEXT, min_size=3, max_size=3), st.integers(0, 2**63),
       st.one_of(st.text(max_size=40).filter(lambda v: "\x00" not in v), st.text("0123456789ABCDEF", max_size=32)))
def test_fill_wire_run_is_fill_wire_of_the_time_and_id(parts, intended_ns, uniq_key):
    """The run's two-slot fill in one step is ``fill_wire`` of (str(intended), id), any id."""
    marks = ("\x00a\x00", "\x00b\x00")
    template = PropertyTemplate(parts[0] + marks[0] + parts[1] + marks[1] + parts[2], marks)
    values = (str(intended_ns), uniq_key)
    assert template.fill_wire_run(intended_ns, uniq_key) == template.fill_wire(values) \
        == json_string_content(template.fill(values))
