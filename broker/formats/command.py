"""RemotingCommand and its two header encodings (JSON and RocketMQ binary); sans-I/O.

Frame layout (``NettyEncoder``/``NettyDecoder``, ``RemotingCommand.encodeHeader``):

====== ======= ===================================================================
offset size    field
====== ======= ===================================================================
0      4       int32 BE ``length``: bytes after this field = 4 + H + body length
4      4       int32 BE: top byte = serialize type (0 JSON, 1 ROCKETMQ), low 24 bits = H
8      H       header (JSON object text, or the binary layout below)
8+H    rest    body (opaque bytes)
====== ======= ===================================================================

ROCKETMQ binary header (``RocketMQSerializable.rocketMQProtocolEncode``), all big-endian:

====== ======= ==============================================================
offset size    field
====== ======= ==============================================================
0      2       int16 code
2      1       byte language code (``codes.LANGUAGE_CODES``)
3      2       int16 version
5      4       int32 opaque
9      4       int32 flag
13     4       int32 remark length R (0 = no remark)
17     R       remark, UTF-8
17+R   4       int32 ext-fields length X (bytes that follow)
21+R   X       repeated: int16 key length K, key, int32 value length V, value
====== ======= ==============================================================

JSON header: ``{"code", "language" (enum name), "version", "opaque", "flag", "remark"?,
"extFields", "serializeTypeCurrentRPC"}``. Decoding accepts what real clients send: ali-ons puts
numbers and booleans into ``extFields`` (turned into Java's string forms here), some clients send
``language`` as a number. Anything else malformed raises ``PeerError`` naming the problem.
"""
from __future__ import annotations

import json
import re
import struct

from dataclasses import dataclass, field
from types import ModuleType

from mqbench import native
from mqbench.broker.formats import codes
from mqbench.errors import PeerError, UserError

_orjson: ModuleType | None
try:        # a dependency (pyproject); a venv made before it was added still works, only slower
    import orjson as _orjson
except ImportError:     # pragma: no cover - exercised only in such a venv
    _orjson = None
orjson = _orjson

LENGTH = struct.Struct(">i")           # the frame length field, and the header-length word
BINARY_FIXED = struct.Struct(">hbhii")  # code, language, version, opaque, flag: 13 bytes
BINARY_FIXED_BYTES = BINARY_FIXED.size
INT16 = struct.Struct(">h")
INT32 = struct.Struct(">i")
FRAME_PREFIX_BYTES = 8  # length field + header-length word
HEADER_BYTES_MAX = 0xFFFFFF  # 24 bits of the header-length word

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_JSON_INT_KEYS = ("code", "version", "opaque", "flag")
_JAVA_LONG = re.compile(r"-?[0-9]+\Z")


@dataclass
class RemotingCommand:
    """One request or response. ``ext_fields`` is the custom header, every value a string.

    ``serialize_type`` is how the header was (or will be) encoded; a response should use the
    request's (``response_to`` does), because clients such as the C++ one read JSON only.
    """

    code: int
    opaque: int = 0
    flag: int = 0
    language: str = "PYTHON"
    version: int = 0
    remark: str | None = None
    ext_fields: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    serialize_type: int = codes.SERIALIZE_JSON

    @property
    def is_response(self) -> bool:
        return bool(self.flag & codes.FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        return bool(self.flag & codes.FLAG_ONEWAY)

    @classmethod
    def request(cls, code: int, ext_fields: dict[str, object] | None = None, body: bytes = b"", *,
                opaque: int = 0, oneway: bool = False, serialize_type: int = codes.SERIALIZE_JSON,
                language: str = "PYTHON", version: int = 0) -> "RemotingCommand":
        """A request; ``ext_fields`` values are turned into strings (None values are left out)."""
        return cls(code=code, opaque=opaque, flag=codes.FLAG_ONEWAY if oneway else 0, language=language,
                   version=version, ext_fields=stringify_fields(ext_fields or {}), body=bytes(body),
                   serialize_type=serialize_type)

    def response_to(self, code: int = codes.SUCCESS, remark: str | None = None,
                    ext_fields: dict[str, object] | None = None, body: bytes = b"") -> "RemotingCommand":
        """The response to this request: same opaque, same header encoding, response flag set."""
        return RemotingCommand(code=code, opaque=self.opaque, flag=codes.FLAG_RESPONSE, language="JAVA",
                               version=self.version, remark=remark, ext_fields=stringify_fields(ext_fields or {}),
                               body=bytes(body), serialize_type=self.serialize_type)

    def describe(self) -> str:
        kind = "response" if self.is_response else ("one-way request" if self.is_oneway else "request")
        name = codes.response_name(self.code) if self.is_response else codes.request_name(self.code)
        return f"{kind} {name} opaque={self.opaque}"


def java_string(value: object) -> str:
    """The string Java's header codec would produce for ``value`` (booleans lower-case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def stringify_fields(fields: dict[str, object]) -> dict[str, str]:
    return {str(k): java_string(v) for k, v in fields.items() if v is not None}


# --- encoding -----------------------------------------------------------------------------------


def encode_header(cmd: RemotingCommand) -> bytes:
    if cmd.serialize_type == codes.SERIALIZE_JSON:
        return _encode_json_header(cmd)
    if cmd.serialize_type == codes.SERIALIZE_ROCKETMQ:
        return _encode_binary_header(cmd)
    raise UserError(f"unknown serialize type {cmd.serialize_type} (0 = JSON, 1 = ROCKETMQ)")


def encode_command(cmd: RemotingCommand) -> bytes:
    """The whole frame, length field included."""
    header = encode_header(cmd)
    if len(header) > HEADER_BYTES_MAX:
        raise UserError(f"{cmd.describe()}: header of {len(header)} bytes exceeds the 24-bit limit")
    return b"".join((LENGTH.pack(4 + len(header) + len(cmd.body)),
                     LENGTH.pack((cmd.serialize_type << 24) | len(header)), header, cmd.body))


def _encode_json_header(cmd: RemotingCommand) -> bytes:
    doc: dict[str, object] = {"code": cmd.code, "language": cmd.language, "version": cmd.version,
                              "opaque": cmd.opaque, "flag": cmd.flag}
    if cmd.remark is not None:
        doc["remark"] = cmd.remark
    doc["extFields"] = cmd.ext_fields
    doc["serializeTypeCurrentRPC"] = "JSON"
    if orjson is None:
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    try:
        # orjson writes the same bytes as json.dumps(separators=(",", ":"), ensure_ascii=False)
        # (tested), at a fraction of the cost: one header per message each way
        encoded: bytes = orjson.dumps(doc)
        return encoded
    except TypeError:       # what orjson refuses (a lone surrogate...): the standard encoder's answer
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _json_string(value: str) -> bytes:
    """``value`` as ``_encode_json_header`` writes a string (orjson, or the standard encoder)."""
    if orjson is not None:
        try:
            encoded: bytes = orjson.dumps(value)
            return encoded
        except TypeError:
            pass
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


_sendpath = native.load("mqbench.broker.formats._sendpath")
_SEND_OK_HEAD = b'{"code":%d,"language":"JAVA","version":%d,"opaque":%d,"flag":%d,"extFields":{"msgId":'
_SEND_OK_TAIL = b'},"serializeTypeCurrentRPC":"JSON"}'


def send_success_frame(opaque: int, version: int, msg_id: str, queue_id: int, queue_offset: int,
                       transaction_id: str | None) -> bytes:
    """The whole JSON-header frame of a SEND_MESSAGE success, byte for byte what
    ``encode_command`` writes for ``RemotingCommand(code=SUCCESS, opaque, flag=FLAG_RESPONSE,
    language="JAVA", version, ext_fields={"msgId", "queueId", "queueOffset"[, "transactionId"]})``
    (tested), without building the command or its dict: one per message sent. In C
    (``_sendpath``) when the ids need no escaping."""
    if _sendpath is not None:
        frame: bytes | None = _sendpath.send_success_frame(opaque, version, msg_id, queue_id, queue_offset,
                                                           transaction_id)
        if frame is not None:
            return frame
    header = b"".join((
        _SEND_OK_HEAD % (codes.SUCCESS, version, opaque, codes.FLAG_RESPONSE),
        # an offsetMsgId is hex: nothing to escape
        b'"%s"' % msg_id.encode() if msg_id.isalnum() and msg_id.isascii() else _json_string(msg_id),
        b',"queueId":"%d","queueOffset":"%d"' % (queue_id, queue_offset),
        b"" if transaction_id is None else b',"transactionId":' + _json_string(transaction_id),
        _SEND_OK_TAIL))
    return LENGTH.pack(4 + len(header)) + LENGTH.pack(len(header)) + header


def _encode_binary_header(cmd: RemotingCommand) -> bytes:
    if not -32768 <= cmd.code <= 32767:
        raise UserError(f"code {cmd.code} does not fit the binary header's int16; use the JSON header")
    if not -32768 <= cmd.version <= 32767:
        raise UserError(f"version {cmd.version} does not fit the binary header's int16")
    language = codes.LANGUAGE_CODES.get(cmd.language, codes.LANGUAGE_CODES["OTHER"])
    parts = [BINARY_FIXED.pack(cmd.code, language, cmd.version, _int32(cmd.opaque, "opaque"), _int32(cmd.flag, "flag"))]
    remark = cmd.remark.encode("utf-8") if cmd.remark else b""
    parts += [INT32.pack(len(remark)), remark]
    ext = []
    for key, value in cmd.ext_fields.items():
        key_bytes, value_bytes = key.encode("utf-8"), value.encode("utf-8")
        if len(key_bytes) > 32767:
            raise UserError(f"ext field name of {len(key_bytes)} bytes does not fit int16")
        ext += [INT16.pack(len(key_bytes)), key_bytes, INT32.pack(len(value_bytes)), value_bytes]
    ext_bytes = b"".join(ext)
    parts += [INT32.pack(len(ext_bytes)), ext_bytes]
    return b"".join(parts)


def _int32(value: int, name: str) -> int:
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise UserError(f"{name} {value} does not fit int32")
    return value


# --- decoding -----------------------------------------------------------------------------------


def decode_frame_content(content: bytes | bytearray | memoryview) -> RemotingCommand:
    """Decode one frame without its 4-byte length field (the header-length word, header, body)."""
    return decode_frame_at(content, 0, len(content))


def decode_frame_at(buffer: bytes | bytearray | memoryview, start: int, end: int) -> RemotingCommand:
    """``decode_frame_content(buffer[start:end])`` without copying the frame first (from a read's
    bytes, the header and body are the only copies made)."""
    size = end - start
    if size < 4:
        raise PeerError(f"frame of {size} bytes is too short for the header-length word")
    (word,) = LENGTH.unpack_from(buffer, start)
    serialize_type, header_len = (word >> 24) & 0xFF, word & 0xFFFFFF
    if header_len > size - 4:
        raise PeerError(f"header length {header_len} exceeds the frame's {size - 4} bytes")
    body_start = start + 4 + header_len
    header = bytes(buffer[start + 4:body_start])
    if serialize_type == codes.SERIALIZE_JSON:
        cmd = _decode_json_header(header)
    elif serialize_type == codes.SERIALIZE_ROCKETMQ:
        cmd = _decode_binary_header(header)
    else:
        raise PeerError(f"unknown header serialize type {serialize_type} (0 = JSON, 1 = ROCKETMQ)")
    cmd.body = bytes(buffer[body_start:end])
    return cmd


def _decode_json_header(header: bytes) -> RemotingCommand:
    try:
        # UTF-8 checked; a malformed document is a ValueError
        doc = orjson.loads(header) if orjson is not None else json.loads(header.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PeerError(f"JSON header does not parse: {exc}") from None
    if type(doc) is dict:
        # the usual header (what Java clients and ours send), taken as it is: 32-bit integers, a
        # language name, no remark, string ext fields; anything else goes through _checked_header
        get = doc.get
        code, opaque, flag, version = get("code"), get("opaque", 0), get("flag", 0), get("version", 0)
        language, raw_ext = get("language", "OTHER"), get("extFields")
        if (type(code) is int and type(opaque) is int and type(flag) is int and type(version) is int
                and type(language) is str and type(raw_ext) is dict and "remark" not in doc
                and _INT32_MIN <= code <= _INT32_MAX and _INT32_MIN <= opaque <= _INT32_MAX
                and _INT32_MIN <= flag <= _INT32_MAX and _INT32_MIN <= version <= _INT32_MAX):
            for value in raw_ext.values():
                if type(value) is not str:
                    break
            else:
                return RemotingCommand(code, opaque, flag, language, version, None, raw_ext, b"",
                                       codes.SERIALIZE_JSON)
    return _checked_header(doc)


def _checked_header(doc: object) -> RemotingCommand:
    """A parsed JSON header checked field by field (module doc): PeerError naming the problem."""
    if not isinstance(doc, dict):
        raise PeerError(f"JSON header is a {type(doc).__name__}, not an object")
    values: dict[str, int] = {}
    for key in _JSON_INT_KEYS:
        value = doc.get(key, 0)
        if value is None:
            value = 0
        if isinstance(value, bool) or not isinstance(value, int) or not _INT32_MIN <= value <= _INT32_MAX:
            raise PeerError(f"JSON header field {key!r} is {value!r}, not a 32-bit integer")
        values[key] = value
    if "code" not in doc:
        raise PeerError("JSON header has no 'code'")
    language = doc.get("language", "OTHER")
    if isinstance(language, int) and not isinstance(language, bool):
        language = codes.LANGUAGE_NAMES.get(language, "OTHER")
    elif not isinstance(language, str):
        raise PeerError(f"JSON header field 'language' is {language!r}, not a name")
    remark = doc.get("remark")
    if remark is not None and not isinstance(remark, str):
        raise PeerError(f"JSON header field 'remark' is {type(remark).__name__}, not a string")
    raw_ext = doc.get("extFields") or {}
    if not isinstance(raw_ext, dict):
        raise PeerError(f"JSON header field 'extFields' is a {type(raw_ext).__name__}, not an object")
    ext: dict[str, str] = {}
    for key, value in raw_ext.items():
        if value is None:
            continue
        if type(value) is str:
            ext[key] = value
            continue
        if isinstance(value, (dict, list)):
            raise PeerError(f"extFields[{key!r}] is a nested {type(value).__name__}; values must be scalars")
        ext[key] = java_string(value)
    return RemotingCommand(code=values["code"], opaque=values["opaque"], flag=values["flag"], language=language,
                           version=values["version"], remark=remark, ext_fields=ext,
                           serialize_type=codes.SERIALIZE_JSON)


def _decode_binary_header(header: bytes) -> RemotingCommand:
    end = len(header)
    if end < BINARY_FIXED_BYTES + 8:
        raise PeerError(f"binary header of {end} bytes is shorter than the fixed 21")
    code, language, version, opaque, flag = BINARY_FIXED.unpack_from(header, 0)
    remark_bytes, pos = _binary_chunk(header, BINARY_FIXED_BYTES, end, INT32, "remark")
    if pos + 4 > end:
        raise PeerError(f"binary header truncated in the ext-fields length at byte {pos}")
    (ext_len,) = INT32.unpack_from(header, pos)
    if ext_len < 0 or ext_len > end - pos - 4:
        raise PeerError(f"binary header ext-fields length {ext_len} at byte {pos} exceeds the "
                        f"{end - pos - 4} bytes left")
    pos += 4
    ext_end = pos + ext_len
    ext: dict[str, str] = {}
    while pos < ext_end:
        key, pos = _binary_chunk(header, pos, ext_end, INT16, "ext field name")
        value, pos = _binary_chunk(header, pos, ext_end, INT32, "ext field value")
        ext[_utf8(key, "ext field name")] = _utf8(value, "ext field value")
    if ext_end != end:
        raise PeerError(f"binary header has {end - ext_end} bytes after its ext fields")
    return RemotingCommand(code=code, opaque=opaque, flag=flag,
                           language=codes.LANGUAGE_NAMES.get(language & 0xFF, "OTHER"), version=version,
                           remark=_utf8(remark_bytes, "remark") if remark_bytes else None, ext_fields=ext,
                           serialize_type=codes.SERIALIZE_ROCKETMQ)


def _binary_chunk(buf: bytes, pos: int, end: int, length_struct: struct.Struct, what: str) -> tuple[bytes, int]:
    """Read a length-prefixed chunk of ``buf[pos:end]``; PeerError when it runs past ``end``."""
    if pos + length_struct.size > end:
        raise PeerError(f"binary header truncated in the length of the {what} at byte {pos}")
    (length,) = length_struct.unpack_from(buf, pos)
    pos += length_struct.size
    if length < 0 or length > end - pos:
        raise PeerError(f"binary header {what} length {length} at byte {pos - length_struct.size} "
                        f"exceeds the {end - pos} bytes left")
    return buf[pos:pos + length], pos + length


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PeerError(f"binary header {what} is not UTF-8: {exc}") from None


def parse_java_long(text: str, what: str, error: type[PeerError] = PeerError) -> int:
    """A header value Java would parse with Long.parseLong; ``error`` naming ``what`` otherwise."""
    if not _JAVA_LONG.match(text):
        raise error(f"{what} is {text!r}, not an integer")
    value = int(text)
    if not -(1 << 63) <= value < (1 << 63):
        raise error(f"{what} {text} does not fit a 64-bit integer")
    return value
