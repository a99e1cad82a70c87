"""``RecordBuilder``: the messages a store is about to write, checked and stamped by the store's
rules (shared by ``Store``'s own appends and the leader's ``ReplicatedCommitLog.prepare_*``).

* ``stamp(msg)``: topic name and queue id checked (UserError), STORETIMESTAMP (and a born time
  left at 0) from the store's clock, STOREHOST the store's host; a v4 store writes MessageVersion
  V1 and refuses inner-batch flags. ``stamp_fields`` gives the same for a record known by its
  fields (no ``Message``).
* ``batch(topic, queue_id, items, *, consolidate, ...) -> (messages, messages per record)``: the
  records of a client batch (the rules in ``store``'s module doc: one consolidated record on a
  BatchCQ topic of a v5 store, else one record per message). Nothing is stamped or written.
* ``batch_records(topic, queue_id, items, ...) -> [(record, tags code)]``: the records of a client
  batch that is not consolidated, stamped as ``stamp`` does and encoded together
  (``record.encode_messages_like``: topic, hosts and times packed once per batch): the same bytes
  as ``batch`` + ``stamp`` + ``encode_message`` per message, QUEUEOFFSET and PHYSICALOFFSET 0.
"""
from __future__ import annotations

from typing import Callable

from mqbench.errors import UserError

from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.broker.formats.properties import PROPERTY_INNER_BASE, PROPERTY_INNER_NUM, PROPERTY_TAGS
from mqbench.broker.formats.record import Message, encode_messages_like
from mqbench.broker.formats.record_layout import SYSFLAG_COMPRESSED, SYSFLAG_INNER_BATCH, SYSFLAG_NEED_UNWRAP, SYSFLAG_TX_MASK
from mqbench.broker.formats.tags import tags_code
from mqbench.broker.formats.topics import validate_topic

from . import versions


class RecordBuilder:
    """See module doc."""

    def __init__(self, version: str, clock_ms: Callable[[], int], store_host: tuple[str, int],
                 is_batch_topic: Callable[[str], bool]):
        self.version = version
        self._major_of: str | None = None
        self._major = 0
        self.clock_ms = clock_ms
        self.store_host = store_host
        self.is_batch_topic = is_batch_topic

    def stamp(self, msg: Message) -> None:
        msg.store_timestamp_ms, msg.born_timestamp_ms, version = self.stamp_fields(
            msg.topic, msg.queue_id, msg.sysflag, msg.born_timestamp_ms)
        msg.store_host = self.store_host
        if version:
            msg.version = version

    def stamp_fields(self, topic: str, queue_id: int, sysflag: int, born_timestamp_ms: int) -> tuple[int, int, int]:
        """``stamp``'s checks and values for a record given by its fields: (store time, born time,
        message version: 1 on a v4 store, 0 = the record's own choice). UserError as ``stamp``."""
        validate_topic(topic)
        if not 0 <= queue_id < 1 << 31:
            raise UserError(f"queue id {queue_id} is out of range")
        now = self.clock_ms()
        version = self.version
        if version is not self._major_of:            # the store's version, checked once (one per send)
            self._major, self._major_of = versions.major(version), version
        if self._major == 4:
            if sysflag & (SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP):
                raise UserError(f"inner-batch records need a v5 store, this one is {self.version}")
            return now, born_timestamp_ms or now, 1
        return now, born_timestamp_ms or now, 0

    def batch(self, topic: str, queue_id: int, items: list[BatchItem] | int, *, consolidate: bool,
              properties: dict[str, str] | None, flag: int, sysflag: int, born_timestamp_ms: int,
              born_host: tuple[str, int], inner_body: bytes | None = None) -> tuple[list[Message], list[int]]:
        """The records of a client batch and the messages each holds (UserError for a bad batch).
        ``items`` may be a message count instead when the batch is consolidated from a plain
        ``inner_body`` that is exactly ``encode_batch`` of its items (the client's body as sent)."""
        validate_topic(topic)
        count = items if isinstance(items, int) else len(items)
        if isinstance(items, int) and (not consolidate or inner_body is None or sysflag & SYSFLAG_COMPRESSED):
            raise UserError("a message count stands for the items of a plain consolidated inner_body only")
        if count < 1:
            raise UserError("an empty batch")
        if sysflag & (SYSFLAG_TX_MASK | SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP):
            raise UserError("a batch cannot be transactional or carry inner-batch flags (spec 4.3)")
        if inner_body is not None and not consolidate:
            raise UserError("inner_body is the body of a consolidated batch; pass consolidate=True")
        if sysflag & SYSFLAG_COMPRESSED and inner_body is None:
            raise UserError("a compressed batch is stored consolidated from its compressed body (inner_body)")
        batch_props = dict(properties or {})
        common = dict(topic=topic, queue_id=queue_id, sysflag=sysflag,
                      born_timestamp_ms=born_timestamp_ms, born_host=born_host)
        if consolidate:
            body, props, inner_sysflag = self._consolidated(topic, items, count, batch_props, sysflag, inner_body)
            msg = Message(body=body, properties=props, flag=flag, **{**common, "sysflag": inner_sysflag})
            return [msg], [count]
        dledger = versions.is_dledger(self.version)
        msgs = [Message(body=item.body, flag=item.flag,
                        properties=dict(item.properties) if dledger else {**item.properties, **batch_props},
                        **common) for item in items]
        return msgs, [1] * len(msgs)

    def _consolidated(self, topic: str, items: list[BatchItem] | int, count: int, batch_props: dict[str, str],
                      sysflag: int, inner_body: bytes | None) -> tuple[bytes, dict[str, str], int]:
        """The consolidated record's body, properties (INNER_BASE empty) and sysflag, after
        ``batch``'s checks of a consolidated batch (UserError)."""
        if not versions.has_batch_cq(self.version):
            raise UserError(f"consolidated batches need a v5 store, this one is {self.version}")
        if not self.is_batch_topic(topic):
            raise UserError(f"topic {topic} is not a BatchCQ topic (attribute queue.type=BatchCQ)")
        if count > 0x7FFF:
            raise UserError(f"a consolidated batch holds at most 32767 messages, got {count}")
        # INNER_BASE is filled in when the queue offset is assigned (Store / restamp_record)
        props = {**batch_props, PROPERTY_INNER_NUM: str(count), PROPERTY_INNER_BASE: ""}
        body = encode_batch(items) if inner_body is None else bytes(inner_body)  # type: ignore[arg-type]
        return body, props, sysflag | SYSFLAG_NEED_UNWRAP | SYSFLAG_INNER_BATCH

    def consolidated_fields(self, topic: str, queue_id: int, items: list[BatchItem] | int, *,
                            properties: dict[str, str] | None, sysflag: int, born_timestamp_ms: int,
                            inner_body: bytes | None = None) -> tuple[bytes, dict[str, str], int, int, int, int, int]:
        """``batch(..., consolidate=True)`` + ``stamp`` of its one record, as fields, without the
        ``Message``: (body, properties with INNER_BASE empty, sysflag, messages it holds, store
        time, born time, message version as ``stamp_fields`` gives it). The same checks and
        UserErrors in the same order."""
        validate_topic(topic)
        count = items if isinstance(items, int) else len(items)
        if isinstance(items, int) and (inner_body is None or sysflag & SYSFLAG_COMPRESSED):
            raise UserError("a message count stands for the items of a plain consolidated inner_body only")
        if count < 1:
            raise UserError("an empty batch")
        if sysflag & (SYSFLAG_TX_MASK | SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP):
            raise UserError("a batch cannot be transactional or carry inner-batch flags (spec 4.3)")
        if sysflag & SYSFLAG_COMPRESSED and inner_body is None:
            raise UserError("a compressed batch is stored consolidated from its compressed body (inner_body)")
        body, props, inner_sysflag = self._consolidated(topic, items, count, dict(properties or {}), sysflag,
                                                        inner_body)
        store_timestamp_ms, born_timestamp_ms, version = self.stamp_fields(topic, queue_id, inner_sysflag,
                                                                           born_timestamp_ms)
        return body, props, inner_sysflag, count, store_timestamp_ms, born_timestamp_ms, version

    def batch_records(self, topic: str, queue_id: int, items: list[BatchItem], *,
                      properties: dict[str, str] | None, sysflag: int, born_timestamp_ms: int,
                      born_host: tuple[str, int]) -> tuple[Message, list[tuple[bytes, int]]]:
        """The stamped records of a batch that is not consolidated (module doc), with the
        template ``Message`` they share (its topic, queue id, sysflag, store time) and each
        record's consume-queue tags code. UserError as ``batch`` and ``stamp``."""
        validate_topic(topic)
        if not items:
            raise UserError("an empty batch")
        if sysflag & (SYSFLAG_TX_MASK | SYSFLAG_INNER_BATCH | SYSFLAG_NEED_UNWRAP):
            raise UserError("a batch cannot be transactional or carry inner-batch flags (spec 4.3)")
        template = Message(topic=topic, body=b"", queue_id=queue_id, sysflag=sysflag,
                           born_timestamp_ms=born_timestamp_ms, born_host=born_host)
        self.stamp(template)
        batch_props = properties or {}
        # DLedger stores each inner message's own properties (spec 4.2); a plain commitlog adds the batch's
        props = ([item.properties for item in items] if versions.is_dledger(self.version) or not batch_props
                 else [{**item.properties, **batch_props} for item in items])
        encoded: list[dict[str, str] | bytes] = list(props)
        if props and props[0] is items[0].properties:       # each item's own properties: as sent when canonical
            encoded = [p if item.wire_properties is None else item.wire_properties for item, p in zip(items, props)]
        records = encode_messages_like(template, [(item.body, p, item.flag) for item, p in zip(items, encoded)])
        store_timestamp_ms = template.store_timestamp_ms
        return template, [(record, tags_code(p.get(PROPERTY_TAGS), topic, properties=p, store_timestamp_ms=store_timestamp_ms))
                          for record, p in zip(records, props)]
