"""What the send-path tests that compare the one-read path with the single-request path share
(``test_send_many``, ``test_send_batches``): request headers, sending a list of requests in one
write or one connection each, counting the leader's Raft proposals, and reading back a topic."""
from __future__ import annotations

import asyncio
from contextlib import contextmanager
from typing import Iterator

from mqbench.broker.formats import record as rec
from mqbench.broker.formats.command import RemotingCommand, encode_command
from mqbench.broker.formats.frame import FrameDecoder
from mqbench.broker.formats.headers import SendMessageHeader


def v2_header(producer_group: str, topic: str, properties: dict[str, str] | str | None = None, **fields) -> dict:
    """A SEND_MESSAGE_V2 header (one-letter names); ``properties`` as a map or as the wire text."""
    props = properties if isinstance(properties, str) else rec.encode_properties(properties or {}).decode()
    header = SendMessageHeader(producer_group=producer_group, topic=topic, queue_id=fields.pop("queue_id", 0),
                               sys_flag=fields.pop("sys_flag", 0), born_timestamp_ms=1_700_000_000_000,
                               properties=props, **fields)
    return header.to_v2()


async def send_all(addr: str, cases, first_opaque: int, one_read: bool) -> dict[int, RemotingCommand]:
    """Send ``cases`` ((code, ext, body) each) in one write (one read on loopback), or each on its
    own connection; the answers by opaque."""
    frames = [encode_command(RemotingCommand.request(code, ext, body, opaque=first_opaque + i))
              for i, (code, ext, body) in enumerate(cases)]
    host, port = addr.split(":")
    batches = [frames] if one_read else [[f] for f in frames]
    got: dict[int, RemotingCommand] = {}
    for batch in batches:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"".join(batch))
        decoder, answers = FrameDecoder(), []
        while len(answers) < len(batch):
            answers += decoder.feed(await asyncio.wait_for(reader.read(1 << 16), 10))
        got.update((a.opaque, a) for a in answers)
        writer.close()
    return got


@contextmanager
def counted_proposals(driver) -> Iterator[list[int]]:
    """Within the block, the number of entries of each Raft proposal ``driver`` makes, in order."""
    proposed: list[int] = []
    propose = driver.propose

    def counting(datas):
        proposed.append(len(datas))
        return propose(datas)

    driver.propose = counting
    try:
        yield proposed
    finally:
        driver.propose = propose


def read_topic(store, topic: str, queues: int = 4) -> list[rec.Message]:
    """Every message of ``topic``'s first ``queues`` queues, queue by queue."""
    out = []
    for queue_id in range(queues):
        out += store.read_queue(topic, queue_id, 0, 1000).messages
    return out
