"""The pulled-record decoders: a record's fields without a ``Message`` (spec section 3).

Readers of many records (a pull body, the client's ``decode_pulled``) take each record as a
``RecordFields`` tuple, properties as their text, by ``decode_fields`` (one record) or
``decode_fields_run`` (the usual records from a position on, in one C call where ``_sendpath`` is
built). Both check what ``record.decode_message`` checks and leave anything unusual to it, so a
damaged record is named by the one record parser. Pure code: bytes in, tuples out.
"""
from __future__ import annotations

import zlib
from typing import NamedTuple

from mqbench import native

from .buffers import ByteView
from .record import _address_text, decode_message, encode_properties
from .record_layout import (MAGIC_V1, MAGIC_V2, SYSFLAG_BORNHOST_V6, SYSFLAG_STOREHOST_V6, TOPIC_V1_MAX_BYTES,
                            _FIXED_IPV4, _I16)

_sendpath = native.load("mqbench.broker.formats._sendpath")   # C decode_fields_run (_sendpath_record.c)

_new_tuple = tuple.__new__
_IPV4_HOSTS: dict[int, tuple[str, int]] = {}   # (address << 32 | port) -> the host tuple, shared by records
_IPV4_HOSTS_MAX = 4096


def _ipv4_host(address: int, port: int) -> tuple[str, int]:
    """The (text, port) of an IPv4 host read as ints, one tuple per host (a pull body holds the
    same two hosts in every record; bounded: the table starts again past ``_IPV4_HOSTS_MAX``)."""
    key = (address << 32) | (port & 0xFFFFFFFF)
    host = _IPV4_HOSTS.get(key)
    if host is None:
        if len(_IPV4_HOSTS) >= _IPV4_HOSTS_MAX:
            _IPV4_HOSTS.clear()
        host = _IPV4_HOSTS[key] = (_address_text(address.to_bytes(4, "big")), port)
    return host
_HOSTS_V6 = SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6


class RecordFields(NamedTuple):
    """A record's fields as ``decode_fields`` returns them (properties as their text)."""

    size: int
    topic: str
    body: bytes
    properties_text: str
    queue_id: int
    flag: int
    queue_offset: int
    physical_offset: int
    sysflag: int
    born_timestamp_ms: int
    born_host: tuple[str, int]
    store_timestamp_ms: int
    store_host: tuple[str, int]
    reconsume_times: int


def decode_fields(buf: ByteView, pos: int, end: int, check_crc: bool = True, where: str | None = None
                  ) -> RecordFields:
    """``decode_message`` for readers of many records (a pull body): the same checks, no
    ``Message`` and no property dict (``decode_properties(fields.properties_text)`` when needed).
    Records with two IPv4 hosts are read with one unpack; anything else, and any record that does
    not check out, goes through the one record parser (which names the damage)."""
    if end - pos >= _FIXED_IPV4.size:
        (total, magic, crc, queue_id, flag, queue_offset, physical_offset, sysflag, born_ts, born_ip, born_port,
         store_ts, store_ip, store_port, reconsume, _, body_len) = _FIXED_IPV4.unpack_from(buf, pos)
        rec_end = pos + total
        at = pos + _FIXED_IPV4.size
        body_end = at + body_len
        if (not sysflag & _HOSTS_V6 and magic in (MAGIC_V1, MAGIC_V2) and rec_end <= end and body_len >= 0
                and body_end + 4 <= rec_end):
            if magic == MAGIC_V1:
                topic_len, topic_at = buf[body_end], body_end + 1
                if topic_len > TOPIC_V1_MAX_BYTES:
                    topic_len -= 256        # a signed byte, as the broker reads it: the parser below refuses it
            else:
                topic_len, topic_at = _I16.unpack_from(buf, body_end)[0], body_end + 2
            props_at = topic_at + topic_len + 2
            if topic_len > 0 and props_at <= rec_end and props_at + _I16.unpack_from(buf, props_at - 2)[0] == rec_end:
                body = buf[at:body_end] if type(buf) is bytes else bytes(buf[at:body_end])
                if not check_crc or zlib.crc32(body) & 0x7FFFFFFF == crc:
                    try:
                        topic = str(buf[topic_at:topic_at + topic_len], "utf-8")
                        text = str(buf[props_at:rec_end], "utf-8")
                    except UnicodeDecodeError:
                        pass     # the parser below names it
                    else:
                        # the host tuples looked up here, a call of _ipv4_host only for an address not
                        # seen yet (a pull body holds the same two hosts in every record)
                        hosts = _IPV4_HOSTS
                        born = hosts.get((born_ip << 32) | (born_port & 0xFFFFFFFF)) or _ipv4_host(born_ip, born_port)
                        store = (hosts.get((store_ip << 32) | (store_port & 0xFFFFFFFF))
                                 or _ipv4_host(store_ip, store_port))
                        # a plain tuple made a RecordFields (NamedTuple's own __new__ cost a tenth of this)
                        return _new_tuple(RecordFields, (
                            total, topic, body, text, queue_id, flag, queue_offset, physical_offset, sysflag,
                            born_ts, born, store_ts, store, reconsume))
    msg, size = decode_message(buf, pos, check_crc=check_crc, where=where, end=end)
    text = encode_properties(msg.properties).decode("utf-8")
    return RecordFields(size, msg.topic, msg.body, text, msg.queue_id, msg.flag, msg.queue_offset,
                        msg.physical_offset, msg.sysflag, msg.born_timestamp_ms, msg.born_host,
                        msg.store_timestamp_ms, msg.store_host, msg.reconsume_times)


def decode_fields_run(buf: bytes, pos: int, end: int, check_crc: bool = True) -> tuple[list[RecordFields], int]:
    """The records from ``pos`` on that ``decode_fields`` decodes by its fast path (two IPv4 hosts
    already seen, layout, CRC and UTF-8 checked), each as ``decode_fields`` returns it, and the
    position after them: one C call for a pull body's usual records (``_sendpath``). It stops at
    the first record it does not take (``decode_fields`` decodes it, or names its damage), and
    takes none without the accelerator (``([], pos)``). Never raises for bad data."""
    if _sendpath is None:
        return [], pos
    run: tuple[list[RecordFields], int] = _sendpath.decode_fields_run(buf, pos, end, check_crc, _IPV4_HOSTS,
                                                                       RecordFields)
    return run
