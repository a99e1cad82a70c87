"""What a broker stores per message of a workload, predicted by building the records it stores.

``predict_footprint(messages, codec, batch_msgs, ...)`` takes a workload's messages (a profile's
generated ``TraceMessage``s: topic, body, key, tags, properties, delay) and builds, with the
reference broker's own code, the records that a run of that workload stores, then sums their
sizes. Nothing is estimated from compression ratios alone: record headers, topic names, property
strings, batch framing and the DLedger entry header are all in the figure. One copy (one replica).

How each message is stored (what RocketMQ and the reference broker do):

* **Batchable** (not delayed): the messages of one topic, in order, in batches of ``batch_msgs``
  (the last one may be short). Batch 1: one record per message, its body compressed per message
  when at least ``compress_over_bytes`` (the producer's rule, ``compression.compress_body``).
  Batch N > 1: the client batch body (``compression.encode_client_batch``, compressed whole with
  ``batch_compression``), stored as one inner-batch record on a BatchCQ topic (what ``mqbench run``
  creates for a batched topic: ``RecordBuilder.batch(consolidate=True)``).
* **Delayed** (a delay level or a delay in ms): never batched (RocketMQ's ``MessageBatch`` refuses a
  delay level, and the reference broker refuses delay properties in a batch). Each goes alone,
  compressed per message like a batch-1 message, and is **stored twice**: first parked on the delay
  topic (``SCHEDULE_TOPIC_XXXX`` or the timer topic, ``timer.rewrite.rewrite_for_delay``: REAL_TOPIC
  and REAL_QID added), then, when due, re-put on its real topic (``timer.rewrite.delivered_message``;
  RocketMQ's ``ScheduleMessageService.messageTimeup`` re-puts it the same way, keeping REAL_*
  where we drop them and add ``MQBENCH_DELAY_SRC``).

Per-message figures (``Footprint``; bytes per copy):

* ``batchable_bytes_per_msg``: what a batchable message costs (what batching and whole-batch
  compression achieve);
* ``delayed_parked_bytes_per_msg`` / ``delayed_delivered_bytes_per_msg``: a delayed message's two
  copies;
* ``whole_bytes_per_msg``: the whole workload once every delayed message has been delivered (the
  steady state: both copies of each delayed message) -- what a capacity plan needs;
* ``whole_parked_bytes_per_msg``: the whole workload before any delay comes due (a run shorter than
  the delays stores only the parked copy);
* ``expected_bytes(batchable, parked, delivered)``: the bytes a run that stored that many of each
  should hold, so a measurement is compared with the prediction for its own mix.

Not counted, as in ``mqbench.run.stored``: consume queues, indexes and checkpoints (derived from
the log), and mqbench's timing stamps (a run subtracts them; production traffic has none).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.compression import compress_body, decode_client_batch, encode_client_batch
from mqbench.broker.formats.dledger import ENTRY_HEADER_BYTES
from mqbench.broker.formats.properties import PROPERTY_DELAY, PROPERTY_INNER_BASE, PROPERTY_UNIQ_KEY, PROPERTY_WAIT
from mqbench.broker.formats.record import Message, encode_message
from mqbench.broker.store.record_builder import RecordBuilder
from mqbench.broker.timer.rewrite import delivered_message, rewrite_for_delay, source_id
from mqbench.codecs.registry import Codec

_NOW_MS = 1_700_000_000_000          # any wall time: record sizes do not depend on it
_HOST = ("127.0.0.1", 10911)
_ID_MS_PER_MSG = 2                   # client ids as a producer makes them at ~500 msgs/s


def _id_generator():
    """Client message ids (``UNIQ_KEY``) as a producer makes them (``UniqueIdGenerator``), from a
    clock that moves ``_ID_MS_PER_MSG`` per id: whole-batch compression sees their real entropy (a
    constant id compressed away ~2 bytes a message that real ids keep)."""
    from mqbench.client.messages import UniqueIdGenerator

    ticks = iter(range(_NOW_MS, 1 << 62, _ID_MS_PER_MSG))
    return UniqueIdGenerator("127.0.0.1", 4242, 0x5EED, lambda: next(ticks), _NOW_MS - 86_400_000)


@dataclass(frozen=True)
class Footprint:
    """Stored bytes of a workload sample, one copy (module doc)."""

    codec: str
    batch_msgs: int
    compress_over_bytes: int
    batch_compression: bool
    dledger_framing: bool
    messages: int
    batchable_msgs: int
    batchable_records: int
    batchable_bytes: int
    delayed_msgs: int
    delayed_parked_bytes: int
    delayed_delivered_bytes: int

    @staticmethod
    def _per(total: int, count: int) -> float | None:
        return total / count if count else None

    @property
    def batchable_bytes_per_msg(self) -> float | None:
        return self._per(self.batchable_bytes, self.batchable_msgs)

    @property
    def delayed_parked_bytes_per_msg(self) -> float | None:
        return self._per(self.delayed_parked_bytes, self.delayed_msgs)

    @property
    def delayed_delivered_bytes_per_msg(self) -> float | None:
        return self._per(self.delayed_delivered_bytes, self.delayed_msgs)

    @property
    def delayed_share(self) -> float:
        return self.delayed_msgs / self.messages if self.messages else 0.0

    @property
    def whole_bytes_per_msg(self) -> float | None:
        return self._per(self.batchable_bytes + self.delayed_parked_bytes + self.delayed_delivered_bytes,
                         self.messages)

    @property
    def whole_parked_bytes_per_msg(self) -> float | None:
        return self._per(self.batchable_bytes + self.delayed_parked_bytes, self.messages)

    def expected_bytes(self, batchable_msgs: int, parked_msgs: int, delivered_msgs: int) -> float:
        """One copy's bytes for a store holding that many batchable messages, parked delayed
        copies and delivered delayed copies (0 for a class this sample has none of)."""
        return (batchable_msgs * (self.batchable_bytes_per_msg or 0.0)
                + parked_msgs * (self.delayed_parked_bytes_per_msg or 0.0)
                + delivered_msgs * (self.delayed_delivered_bytes_per_msg or 0.0))

    def as_dict(self) -> dict:
        out = asdict(self)
        out.update(batchable_bytes_per_msg=self.batchable_bytes_per_msg,
                   delayed_parked_bytes_per_msg=self.delayed_parked_bytes_per_msg,
                   delayed_delivered_bytes_per_msg=self.delayed_delivered_bytes_per_msg,
                   delayed_share=self.delayed_share, whole_bytes_per_msg=self.whole_bytes_per_msg,
                   whole_parked_bytes_per_msg=self.whole_parked_bytes_per_msg)
        return out


def _wire_properties(message, uniq_key: str) -> dict[str, str]:
    """The properties a producer sends for a workload message (``OutgoingMessage.wire_properties``)."""
    from mqbench.client.messages import OutgoingMessage

    out = OutgoingMessage(message.topic, message.body, tags=message.tags or None,
                          keys=[message.key] if message.key else [], properties=dict(message.properties))
    if message.delay_level:
        out.delay_level = message.delay_level
    elif message.delay_ms:
        out.deliver_at_ms = _NOW_MS + message.delay_ms
    return out.wire_properties(uniq_key)


class _Sizer:
    def __init__(self, codec: Codec, compress_over_bytes: int, batch_compression: bool, dledger_framing: bool):
        self.codec = None if codec.is_none else codec
        self.batch_codec = self.codec if batch_compression else None
        self.compress_over_bytes = compress_over_bytes
        self.framing = ENTRY_HEADER_BYTES if dledger_framing else 0
        self.builder = RecordBuilder("v5-dledger" if dledger_framing else "v5", lambda: _NOW_MS, _HOST,
                                     lambda topic: True)
        self.queue_offsets: dict[str, int] = {}
        self.ids = _id_generator()

    def size(self, msg: Message) -> int:
        self.builder.stamp(msg)
        return len(encode_message(msg)) + self.framing

    def single(self, message) -> tuple[int, int]:
        """(bytes stored when it arrives, bytes of its delivered copy: 0 unless delayed)."""
        body, bits = compress_body(message.body, self.codec, self.compress_over_bytes)
        msg = Message(topic=message.topic, body=body, properties=_wire_properties(message, self.ids.next()), sysflag=bits,
                      born_timestamp_ms=_NOW_MS, born_host=_HOST)
        stored = rewrite_for_delay(msg, now_ms=_NOW_MS)
        first = self.size(stored)
        if stored is msg:
            return first, 0
        stored.store_timestamp_ms = _NOW_MS
        again = delivered_message(stored, source=source_id("L" if stored.properties.get(PROPERTY_DELAY) else "T",
                                                           self.queue_offsets.get(stored.topic, 0)),
                                  now_ms=_NOW_MS)
        self.queue_offsets[stored.topic] = self.queue_offsets.get(stored.topic, 0) + 1
        return first, self.size(again)

    def batch(self, topic: str, messages: list) -> int:
        items = [BatchItem(m.body, _wire_properties(m, self.ids.next())) for m in messages]
        body, bits = encode_client_batch(items, self.batch_codec)
        batch = decode_client_batch(body, bits)
        msgs, _ = self.builder.batch(topic, 0, batch.items, consolidate=True,
                                     properties={PROPERTY_UNIQ_KEY: self.ids.next(), PROPERTY_WAIT: "true"},
                                     flag=0, sysflag=bits, born_timestamp_ms=_NOW_MS, born_host=_HOST,
                                     inner_body=batch.stored_body if bits else None)
        base = self.queue_offsets.get(topic, 0)
        msgs[0].properties[PROPERTY_INNER_BASE] = str(base)   # the store fills in the queue offset
        self.queue_offsets[topic] = base + len(items)
        return self.size(msgs[0])


def predict_footprint(messages: Iterable, codec: Codec, batch_msgs: int | dict[str, int], *,
                      compress_over_bytes: int = 4096, batch_compression: bool = True,
                      dledger_framing: bool = True) -> Footprint:
    """The ``Footprint`` of ``messages`` (module doc). ``batch_msgs`` applies to every topic, or is
    given per topic (a profile's ``batch_msgs``; a topic not named is not batched); the
    ``Footprint`` records the largest."""
    sizes = batch_msgs if isinstance(batch_msgs, dict) else None
    sizer = _Sizer(codec, compress_over_bytes, batch_compression, dledger_framing)
    pending: dict[str, list] = {}
    counts = dict(messages=0, batchable_msgs=0, batchable_records=0, batchable_bytes=0, delayed_msgs=0,
                  delayed_parked_bytes=0, delayed_delivered_bytes=0)

    def flush(topic: str) -> None:
        group = pending.pop(topic, [])
        if group:
            counts["batchable_records"] += 1
            counts["batchable_bytes"] += sizer.batch(topic, group)

    for message in messages:
        counts["messages"] += 1
        if message.delay_level or message.delay_ms:
            first, again = sizer.single(message)
            counts["delayed_msgs"] += 1
            counts["delayed_parked_bytes"] += first
            counts["delayed_delivered_bytes"] += again
        elif (size := batch_msgs if sizes is None else sizes.get(message.topic, 1)) <= 1:
            counts["batchable_msgs"] += 1
            counts["batchable_records"] += 1
            counts["batchable_bytes"] += sizer.single(message)[0]
        else:
            counts["batchable_msgs"] += 1
            group = pending.setdefault(message.topic, [])
            group.append(message)
            if len(group) >= size:
                flush(message.topic)
    for topic in list(pending):
        flush(topic)
    largest = batch_msgs if sizes is None else max(sizes.values(), default=1)
    return Footprint(codec=codec.spec, batch_msgs=largest, compress_over_bytes=compress_over_bytes,
                     batch_compression=batch_compression, dledger_framing=dledger_framing, **counts)
