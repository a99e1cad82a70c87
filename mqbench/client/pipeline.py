"""Prebuilt request frames and a pipelined sender: the load generator's lean producer (and pull) path.

``SendFrameTemplate`` is the SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE request of one (group, topic,
queue, broker name, sysflag, flag) with the JSON header encoded once: per message only the
opaque, the born timestamp and the property string are spliced in. ``frame(...)`` returns the
same bytes as ``encode_command`` of the request ``Producer`` builds (tested), at a fraction of
the cost (no dict, no header object, no JSON encoder run over 14 fields).

``FrameTemplate(code, ext_fields, slots)`` is the same for any request with slots for some header
fields (a consumer's PULL_MESSAGE: queue offset, sysflag, commit offset).

``PropertyTemplate(text, marks)`` is one message's property text with slots for what changes per
send (its id, time stamps): built once per message a load generator sends again and again.

``BatchBodyTemplate(bodies)`` is the plain SEND_BATCH_MESSAGE body of those bodies, each with the
properties ``Producer`` gives a batch item (``UNIQ_KEY``, then ``WAIT=true``), built once: per batch
only the fresh ids are spliced in (the same bytes as ``encode_batch``, tested), so every message
of every batch is still distinct.

``PipelinedSender(producer, topic)`` sends through the producer's route and connections, keeping
as many requests in flight as its caller submits: ``send(body)`` / ``send_batch(bodies)`` queue
the frame on the channel (one write per loop turn for all of them) and return a future of the
response; ``delivered(response)`` says whether it was a delivery. It does not retry (a benchmark
counts failures; ``Producer.send`` retries) and needs no credentials (an ACL cluster: use
``Producer``).
"""
from __future__ import annotations

import asyncio
import struct

from mqbench.broker.formats import codes
from mqbench.broker.formats.batch import BatchItem, encode_batch
from mqbench.broker.formats.command import LENGTH, RemotingCommand, encode_header, orjson
from mqbench.broker.formats.compression import encode_client_batch
from mqbench.broker.formats.properties import PROPERTY_UNIQ_KEY, PROPERTY_WAIT
from mqbench.errors import UserError
from mqbench import native

# C send_frame (``SendFrameTemplate.frame_filled``; broker/formats/_sendpath_send.c), or None
_sendpath = native.load("mqbench.broker.formats._sendpath")
_send_frame = getattr(_sendpath, "send_frame", None)

_OPAQUE_MARK = 2147483646
_BORN_MARK = "\x00born\x00"
_PROPS_MARK = "\x00props\x00"


def json_string_content(text: str) -> bytes:
    """``text`` as it appears between the quotes of a JSON string (the header's encoding)."""
    if orjson is not None:
        return orjson.dumps(text)[1:-1]
    import json
    return json.dumps(text, ensure_ascii=False).encode("utf-8")[1:-1]


def _split_header(header: bytes, markers: list[tuple[bytes, bytes]]) -> tuple[list[bytes], list[int]]:
    """``header`` cut where each ``(key, mark)`` is: (the parts around the marks, and for each mark in
    the order they appear, its index in ``markers``). Each ``key + mark`` must be there once (a
    quote inside a JSON string is escaped, so ``"key":`` with its mark is found once)."""
    found = []
    for index, (key, mark) in enumerate(markers):
        if header.count(key + mark) != 1:
            raise UserError(f"frame template: {key + mark!r} is not once in the header")
        found.append((header.index(key + mark) + len(key), len(mark), index))
    found.sort()
    parts, order, at = [], [], 0
    for position, size, index in found:
        parts.append(header[at:position])
        order.append(index)
        at = position + size
    parts.append(header[at:])
    return parts, order


class FrameTemplate:
    """A request whose JSON header is encoded once, with slots for the opaque and the values of some
    header fields (``slots``, names in ``ext_fields``): ``frame(opaque, values, body)`` splices them
    in (``values`` in the order of ``slots``, each already JSON-string content, e.g. digits) and
    gives the bytes ``encode_command`` gives for the request with those values (tested). A
    consumer's PULL_MESSAGE: only the queue offset, sysflag and commit offset change per pull."""

    def __init__(self, code: int, ext_fields: dict[str, str], slots: tuple[str, ...]) -> None:
        marks = {name: f"\x00slot{index}\x00" for index, name in enumerate(slots)}
        missing = [name for name in slots if ext_fields.get(name) is None]
        if missing:
            raise UserError(f"a frame template needs the fields it has slots for: {', '.join(missing)}")
        header = encode_header(RemotingCommand(code=code, opaque=_OPAQUE_MARK, ext_fields=dict(ext_fields, **marks),
                                               language="PYTHON"))
        markers = [(b'"opaque":', str(_OPAQUE_MARK).encode())]
        markers += [(b'"%s":"' % name.encode(), json_string_content(marks[name])) for name in slots]
        self._parts, order = _split_header(header, markers)
        self._order = [index - 1 for index in order]     # -1: the opaque
        self._fixed = sum(len(p) for p in self._parts)

    def frame(self, opaque: int, values: tuple[bytes, ...], body: bytes = b"") -> bytes:
        parts = self._parts
        pieces = [b"", b"", parts[0]]
        size = self._fixed
        for index, part in zip(self._order, parts[1:]):
            value = b"%d" % opaque if index < 0 else values[index]
            size += len(value)
            pieces.append(value)
            pieces.append(part)
        pieces[0], pieces[1] = LENGTH.pack(4 + size + len(body)), LENGTH.pack(size)
        pieces.append(body)
        return b"".join(pieces)


_LENGTHS = struct.Struct(">ii")     # a frame's total length and header length (``LENGTH`` twice)


class SendFrameTemplate:
    """The header of one send request, encoded once (module doc): ``FrameTemplate``'s cut, with the
    three slots of a send (opaque, born timestamp, properties) spliced by hand (the hot path)."""

    def __init__(self, code: int, ext_fields: dict[str, str]) -> None:
        if ext_fields.get("g") is None or ext_fields.get("i") is None:
            raise UserError("a send template needs the born timestamp (g) and properties (i) fields")
        ext = dict(ext_fields, g=_BORN_MARK, i=_PROPS_MARK)
        header = encode_header(RemotingCommand(code=code, opaque=_OPAQUE_MARK, ext_fields=ext, language="PYTHON"))
        parts, order = _split_header(header, [(b'"opaque":', str(_OPAQUE_MARK).encode()),
                                              (b'"g":"', json_string_content(_BORN_MARK)),
                                              (b'"i":"', json_string_content(_PROPS_MARK))])
        if order != [0, 1, 2]:
            raise UserError("send template: the header does not hold opaque, g and i in that order")
        self._p0, self._p1, self._p2, self._p3 = parts
        self._head = tuple(parts)

    def frame(self, opaque: int, born_ms: int, properties: bytes, body: bytes) -> bytes:
        """The whole frame; ``properties`` is already JSON-string content (``json_string_content``)."""
        header = b"%b%d%b%d%b%b%b" % (self._p0, opaque, self._p1, born_ms, self._p2, properties, self._p3)
        header_len = len(header)      # one formatting and one pack: half the steps of piece by piece
        return b"".join((_LENGTHS.pack(4 + header_len + len(body), header_len), header, body))

    def frame_filled(self, opaque: int, born_ms: int, properties: PropertyTemplate, values: tuple,
                     body: bytes) -> bytes:
        """``frame(opaque, born_ms, properties.fill_wire(texts), body)``, ``texts`` being the
        ``str`` of each of ``values`` (one per slot: ints, or ids of ASCII letters and digits):
        the property template's fill and the frame in one step, one C call where the accelerator
        is loaded (``_sendpath.send_frame``; it leaves anything unusual to this code)."""
        if _send_frame is not None:
            frame: bytes | None = _send_frame(self._head, properties._wire, values, opaque, born_ms, body)
            if frame is not None:
                return frame
        return self.frame(opaque, born_ms, properties.fill_values_wire(values), body)


class PropertyTemplate:
    """A message's property text (``encode_properties`` of ``wire_properties``) with slots for the
    values that change per send, built once from the text with marks where those values go.

    ``PropertyTemplate(text, marks)``: ``marks`` are strings that each occur at most once in
    ``text``; ``slots`` lists the marks found, in the order they appear. ``fill(values)`` (one
    value per slot, in that order) returns the text with each mark replaced by its value: the text
    the general path builds with those values (a load generator sends the same message with a
    fresh id and time stamps; tested against it). Marks must not occur in the rest of the text
    (use control characters the encoder never writes, e.g. NUL)."""

    def __init__(self, text: str, marks: tuple[str, ...]) -> None:
        found = sorted((text.index(mark), mark) for mark in marks if mark in text)
        parts, slots, at = [], [], 0
        for position, mark in found:
            if text.count(mark) != 1:
                raise UserError(f"property template: mark {mark!r} is not once in the text")
            parts.append(text[at:position])
            slots.append(mark)
            at = position + len(mark)
        parts.append(text[at:])
        self.slots: tuple[str, ...] = tuple(slots)
        self._parts = parts
        self._wire = tuple(json_string_content(part) for part in parts)   # each part as JSON-string content

    def fill(self, values) -> str:
        parts = self._parts
        if len(values) != len(self.slots):
            raise UserError(f"property template of {len(self.slots)} slots got {len(values)} values")
        if len(values) == 2:       # the run's undelayed message: its intended time and its id
            return f"{parts[0]}{values[0]}{parts[1]}{values[1]}{parts[2]}"
        out = [parts[0]]
        for value, part in zip(values, parts[1:]):
            out.append(value)
            out.append(part)
        return "".join(out)


    def fill_wire_run(self, intended_ns: int, uniq_key: str) -> bytes:
        """``fill_wire((str(intended_ns), uniq_key))`` of a two-slot template (the run's undelayed
        message: its intended time and its id) in one formatting step."""
        wire = self._wire
        if len(wire) == 3 and uniq_key.isascii() and uniq_key.isalnum() and intended_ns >= 0:
            return b"%b%d%b%b%b" % (wire[0], intended_ns, wire[1], uniq_key.encode(), wire[2])
        return self.fill_wire((str(intended_ns), uniq_key))

    def fill_values_wire(self, values: tuple) -> bytes:
        """``fill_wire`` of ``values`` given as ints or strs (each one's ``str``)."""
        if len(values) == 2 and type(values[0]) is int and type(values[1]) is str:
            return self.fill_wire_run(values[0], values[1])
        return self.fill_wire(tuple(value if type(value) is str else str(value) for value in values))

    def fill_wire(self, values) -> bytes:
        """``json_string_content(fill(values))``, from the parts escaped once: JSON escapes
        character by character, so the escaped text is the escaped parts and values joined (a
        value that is not plain letters and digits is escaped on its own)."""
        wire = self._wire
        if len(wire) == 3 and len(values) == 2 and values[0].isalnum() and values[1].isalnum():
            return b"%s%s%s%s%s" % (wire[0], values[0].encode(), wire[1], values[1].encode(), wire[2])
        if len(values) != len(self.slots):
            raise UserError(f"property template of {len(self.slots)} slots got {len(values)} values")
        out = [wire[0]]
        for value, part in zip(values, wire[1:]):
            out.append(value.encode() if value.isascii() and value.isalnum() else json_string_content(value))
            out.append(part)
        return b"".join(out)


class BatchBodyTemplate:
    """A batch body with a slot for each item's UNIQ_KEY (module doc)."""

    _ID_BYTES = 32      # UniqueIdGenerator's ids: 32 hex digits
    _AFTER_ID = b"\x02" + PROPERTY_WAIT.encode() + b"\x01true\x02"

    def __init__(self, bodies: list[bytes]) -> None:
        if not bodies:
            raise UserError("an empty batch")
        fixed, after = [], b""
        for body in bodies:
            # the item as encode_batch writes it; its id is the 32 bytes before the WAIT property
            item = encode_batch([BatchItem(bytes(body), {PROPERTY_UNIQ_KEY: "0" * self._ID_BYTES,
                                                         PROPERTY_WAIT: "true"}, 0)])
            fixed.append(after + item[:len(item) - len(self._AFTER_ID) - self._ID_BYTES])
            after = self._AFTER_ID
        self._parts: list[bytes] = [b""] * (2 * len(fixed) + 1)
        self._parts[0::2] = [*fixed, after]
        self.count = len(fixed)
        self.size = sum(map(len, fixed)) + len(after) + self.count * self._ID_BYTES

    def body(self, ids: list[bytes]) -> bytes:
        """The body with ``ids`` (``count`` of them, 32 ASCII bytes each: ``UniqueIdGenerator.next_run``)."""
        parts = self._parts
        if len(ids) != self.count:
            raise UserError(f"a batch template of {self.count} items needs as many ids, got {len(ids)}")
        parts[1::2] = ids
        body = b"".join(parts)
        if len(body) != self.size:      # an id of another length would break the items' framing
            raise UserError(f"a batch template needs ids of {self._ID_BYTES} bytes")
        return body


def delivered(response: RemotingCommand) -> bool:
    """Whether a send's response is one of RocketMQ's deliveries (SEND_OK and the flush/slave ones)."""
    return response.code in (codes.SUCCESS, codes.FLUSH_DISK_TIMEOUT, codes.FLUSH_SLAVE_TIMEOUT,
                             codes.SLAVE_NOT_AVAILABLE)


class PipelinedSender:
    """Sends one topic's messages round-robin over its writable queues, pipelined (module doc)."""

    def __init__(self, producer, topic: str) -> None:
        if producer.pool.credentials is not None:
            raise UserError("the pipelined sender does not sign requests; use Producer with ACL credentials")
        self.producer = producer
        self.topic = topic
        self._targets: list[tuple[object, SendFrameTemplate, SendFrameTemplate]] = []
        self._next = 0

    async def open(self) -> "PipelinedSender":
        """Look the route up and connect to every broker that has a writable queue of the topic."""
        from mqbench.client.producer import send_header_v2

        route = await self.producer.routes.get(self.topic)
        queues = route.write_queues()
        if not queues:
            raise UserError(f"topic {self.topic!r} has no writable queue with a master")
        group = self.producer.group
        for queue in queues:
            channel = await self.producer.pool.channel(route.brokers[queue.broker_name].master_addr)
            single = SendFrameTemplate(codes.SEND_MESSAGE_V2, send_header_v2(
                group, self.topic, queue.queue_id, 0, 0, 0, "", False, queue.broker_name))
            batch = SendFrameTemplate(codes.SEND_BATCH_MESSAGE, send_header_v2(
                group, self.topic, queue.queue_id, 0, 0, 0, "", True, queue.broker_name))
            self._targets.append((channel, single, batch))
        return self

    def _target(self):
        self._next = (self._next + 1) % len(self._targets)
        return self._targets[self._next]

    def send(self, body: bytes) -> asyncio.Future:
        """One message (SEND_MESSAGE_V2) with a fresh UNIQ_KEY; the future gets the response."""
        producer = self.producer
        channel, single, _ = self._target()
        properties = _ID_PROPERTIES % producer.ids.next().encode()
        opaque = channel.next_opaque()
        return channel.submit(opaque, single.frame(opaque, producer.clock_ms(), properties, body),
                              producer.send_timeout_ms)

    def send_batch(self, bodies: list[bytes] | BatchBodyTemplate) -> asyncio.Future:
        """``bodies`` as one SEND_BATCH_MESSAGE (each with its UNIQ_KEY); the future gets the
        response. A ``BatchBodyTemplate`` sends its bodies with fresh ids spliced in."""
        producer = self.producer
        channel, _, batch = self._target()
        ids = producer.ids
        if isinstance(bodies, BatchBodyTemplate):
            if bodies.size > producer.body_bytes_max:
                raise UserError(f"batch body of {bodies.size} bytes exceeds {producer.body_bytes_max}")
            body = bodies.body(ids.next_run(bodies.count))
        else:
            items = [BatchItem(body, {PROPERTY_UNIQ_KEY: ids.next(), PROPERTY_WAIT: "true"}, 0) for body in bodies]
            body, _sysflag = encode_client_batch(items, None, size_max=producer.body_bytes_max)
        properties = _ID_PROPERTIES % ids.next().encode()
        opaque = channel.next_opaque()
        return channel.submit(opaque, batch.frame(opaque, producer.clock_ms(), properties, body),
                              producer.send_timeout_ms)


def properties_content(properties: dict[str, str]) -> bytes:
    """A property map as the JSON-string content of header field ``i`` (RocketMQ's wire form)."""
    from mqbench.broker.formats.record import encode_properties

    return json_string_content(encode_properties(properties).decode("utf-8"))


#: What Producer sends as a plain message's properties (UNIQ_KEY, then WAIT=true) as header
#: content, with ``%s`` for the id: ``properties_content({UNIQ_KEY: id, WAIT: "true"})``.
_ID_PROPERTIES = properties_content({PROPERTY_UNIQ_KEY: "\0", PROPERTY_WAIT: "true"}).replace(b"\\u0000", b"%s")
