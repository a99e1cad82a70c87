"""RocketMQ's request signature (ACL 1.0): what its clients send and its brokers check. Pure.

A signed request carries three (or four) more ext fields: ``AccessKey``, ``Signature``, and
``SecurityToken`` (STS credentials) or ``OnsChannel`` (the C++ client and ali-ons add it, "ALIYUN"
by default) when the client has one. The signature is::

    content   = the values (not the keys) of every ext field except ``Signature`` and
                ``_UNIQUE_KEY_QUERY``, in ascending key order, concatenated, UTF-8 encoded,
                followed by the body bytes
    Signature = base64(HmacSHA1(key = secretKey as UTF-8, content))

The broker side (RocketMQ's ``PlainAccessResource.parse``) takes every ext field of the request as
received, so whatever header fields a client sends are covered, including ``AccessKey`` and
``OnsChannel`` themselves. Keys sort as Java's ``TreeMap<String, ...>`` does (UTF-16 code units;
the same as Python's order for every key a client sends).

mqbench uses the same signature for its own broker registrations (``cluster_signing``), so one
mechanism signs both.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from .command import RemotingCommand

ACCESS_KEY = "AccessKey"
SIGNATURE = "Signature"
SECURITY_TOKEN = "SecurityToken"
ONS_CHANNEL = "OnsChannel"
UNIQUE_MSG_QUERY_FLAG = "_UNIQUE_KEY_QUERY"
_UNSIGNED = (SIGNATURE, UNIQUE_MSG_QUERY_FLAG)


def _sort_key(key: str) -> list[int]:
    # Java compares strings by UTF-16 code unit; only keys outside the BMP would sort differently
    encoded = key.encode("utf-16-be")
    return [int.from_bytes(encoded[i:i + 2], "big") for i in range(0, len(encoded), 2)]


def content(ext_fields: dict[str, str], body: bytes = b"") -> bytes:
    """The bytes RocketMQ signs for a request with these ext fields and body (module doc)."""
    keys = sorted(ext_fields) if all(k.isascii() for k in ext_fields) else sorted(ext_fields, key=_sort_key)
    values = "".join(ext_fields[k] for k in keys if k not in _UNSIGNED)
    return values.encode("utf-8") + bytes(body or b"")


def signature(data: bytes, secret_key: str) -> str:
    """base64(HmacSHA1(secret_key, data)), as RocketMQ's ``AclSigner.calSignature``."""
    return base64.b64encode(hmac.new(secret_key.encode("utf-8"), data, hashlib.sha1).digest()).decode("ascii")


def sign(ext_fields: dict[str, str], body: bytes, access_key: str, secret_key: str, *,
         security_token: str | None = None) -> dict[str, str]:
    """``ext_fields`` plus ``AccessKey`` (and ``SecurityToken``) and the ``Signature`` over all of them."""
    out = dict(ext_fields)
    out[ACCESS_KEY] = access_key
    if security_token is not None:
        out[SECURITY_TOKEN] = security_token
    out[SIGNATURE] = signature(content(out, body), secret_key)
    return out


def verify(ext_fields: dict[str, str], body: bytes, secret_key: str) -> bool:
    """Does the request's ``Signature`` match ``secret_key``? (constant-time comparison)"""
    sent = ext_fields.get(SIGNATURE)
    if not sent:
        return False
    return hmac.compare_digest(signature(content(ext_fields, body), secret_key).encode("ascii"),
                               sent.encode("utf-8", "replace"))


@dataclass(frozen=True)
class Credentials:
    """An ACL account as a client holds it; ``apply(cmd)`` signs a request in place (what
    RocketMQ's ``AclClientRPCHook`` does before every request)."""

    access_key: str
    secret_key: str
    security_token: str | None = None

    def apply(self, cmd: RemotingCommand) -> None:
        fields = {k: v for k, v in cmd.ext_fields.items() if k not in (ACCESS_KEY, SIGNATURE, SECURITY_TOKEN)}
        cmd.ext_fields = sign(fields, cmd.body, self.access_key, self.secret_key, security_token=self.security_token)
