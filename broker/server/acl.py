"""RocketMQ's plain ACL (``plain_acl.yml``), checked on every request the broker serves.

Configuration: RocketMQ's ``plain_acl.yml`` shape, read with PyYAML (``load_acl_file``)::

    globalWhiteRemoteAddresses:        # requests from these addresses skip every check
      - 10.10.103.*
    accounts:
      - accessKey: RocketMQ
        secretKey: "12345678"
        whiteRemoteAddress: 192.168.0.*  # this account's requests from here skip the signature check
        admin: false                     # admin: the admin request codes, and every topic and group
        defaultTopicPerm: DENY           # for topics not listed (default DENY)
        defaultGroupPerm: SUB            # for groups not listed (default DENY)
        topicPerms: [topicA=DENY, topicB=PUB|SUB, topicC=SUB]
        groupPerms: [groupA=DENY, groupB=PUB|SUB]

Permissions: DENY, PUB, SUB, PUB|SUB (and ANY, which a request never needs but an account may
own; an unknown word is DENY, as RocketMQ parses it). Address patterns: ``*``, an exact IPv4 or
IPv6 address, and IPv4 patterns whose segments are ``*``, ``N``, ``N-M`` or ``{N,M,...}``
(``192.168.1.*``, ``192.168.1.1-100``, ``192.168.1.{3,7}``).

The check (``AclChecker.check(cmd, remote_host)``, RocketMQ's ``PlainPermissionManager.validate``):
global white address -> allowed; no ``AccessKey`` -> "No accessKey is configured"; unknown key ->
"No acl config for K"; the account's white address -> allowed; signature (``remoting.signature``)
mismatch -> "Check signature failed for accessKey=K"; an admin code by a non-admin -> "Need admin
permission ..."; then every resource the request needs (``needed_resources``: topics as
themselves, groups as ``%RETRY%group``) against the account's listed permission, or its default.
A refusal is ``AclDenied``; the broker answers it the way a RocketMQ 4.9 broker answers its
``AclException`` (thrown from the RPC hook): SYSTEM_ERROR (1) with the exception's text as remark.
(RocketMQ's NO_PERMISSION 16 is what its broker answers for a topic whose perm forbids the write,
which mqbench answers the same way; it is not what the ACL answers.)

Where mqbench is stricter than RocketMQ 4.9, and why: SEND_BATCH_MESSAGE (320) needs PUB on its
topic as SEND_MESSAGE_V2 does (4.9 checks only the signature for batches); QUERY_CONSUMER_OFFSET
needs SUB on group and topic; resetting offsets and creating topics need admin.

The cluster's own tooling (``mqbench cluster status``, the launcher's probes) signs with the
cluster secret under the access key ``mqbench-cluster``: a broker that has a cluster secret adds
that account as admin (``with_cluster_account``). Pure: no I/O except ``load_acl_file``.
"""
from __future__ import annotations

import functools
import ipaddress
import json
from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

from mqbench.broker.formats import codes, signature
from mqbench.broker.formats.command import RemotingCommand
from mqbench.errors import UserError

DENY, ANY, PUB, SUB = 1, 2, 4, 8
RETRY_PREFIX = "%RETRY%"
_PERM_WORDS = {"DENY": DENY, "ANY": ANY, "PUB": PUB, "SUB": SUB, "PUB|SUB": PUB | SUB, "SUB|PUB": PUB | SUB}

#: Request codes only an admin account may send (RocketMQ's ``Permission.ADMIN_CODE`` and the
#: offset reset mqbench serves).
ADMIN_CODES = frozenset({codes.UPDATE_AND_CREATE_TOPIC, codes.UPDATE_BROKER_CONFIG, 215, 200, 207, 50, 51, 53,
                         codes.RESET_CONSUMER_CLIENT_OFFSET, 222})


class AclDenied(Exception):
    """The request is refused; the text is RocketMQ's AclException message."""


def parse_perm(text: object) -> int:
    """RocketMQ's ``Permission.parsePermFromString``: unknown or missing -> DENY."""
    return _PERM_WORDS.get(str(text).strip().upper(), DENY) if text is not None else DENY


def perm_allows(needed: int, owned: int) -> bool:
    """RocketMQ's ``Permission.checkPermission``."""
    if owned & DENY:
        return False
    if needed & ANY:
        return bool(owned & (PUB | SUB))
    return bool(needed & owned)


@functools.lru_cache(maxsize=4096)
def _parse_host(host: str) -> "ipaddress.IPv4Address | ipaddress.IPv6Address | None":
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class AddressPattern:
    """One white-address pattern (module doc); ``match(host)``. An empty pattern matches nothing."""

    def __init__(self, text: str):
        self.text = text = (text or "").strip()
        self._any = text in ("*", "*.*.*.*")
        self._exact: str | None = None
        self._segments: list[set[int] | None] | None = None
        if not text or self._any:
            return
        try:
            self._exact = str(ipaddress.ip_address(text))
            return
        except ValueError:
            pass
        parts = text.split(".")
        if len(parts) > 4:
            raise UserError(f"ACL address pattern {text!r} is not an address, '*' or an IPv4 pattern")
        segments: list[set[int] | None] = []
        for part in parts + ["*"] * (4 - len(parts)):
            segments.append(self._segment(part, text))
        self._segments = segments

    @staticmethod
    def _segment(part: str, text: str) -> set[int] | None:
        try:
            if part == "*":
                return None
            if part.startswith("{") and part.endswith("}"):
                values = {int(v) for v in part[1:-1].split(",")}
            elif "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                values = set(range(lo, hi + 1))
            else:
                values = {int(part)}
        except ValueError:
            raise UserError(f"ACL address pattern {text!r}: segment {part!r} is not *, N, N-M or {{N,M}}") from None
        if not values or min(values) < 0 or max(values) > 255:
            raise UserError(f"ACL address pattern {text!r}: segment {part!r} is outside 0-255")
        return values

    def match(self, host: str) -> bool:
        if self._any:
            return True
        addr = _parse_host(host)
        if addr is None:
            return False
        if self._exact is not None:
            return str(addr) == self._exact
        if self._segments is None or addr.version != 4:
            return False
        return all(allowed is None or octet in allowed for allowed, octet in zip(self._segments, addr.packed))


@dataclass
class Account:
    access_key: str
    secret_key: str
    white_address: AddressPattern = field(default_factory=lambda: AddressPattern(""))
    admin: bool = False
    default_topic_perm: int = DENY
    default_group_perm: int = DENY
    perms: dict[str, int] = field(default_factory=dict)     # topic, or %RETRY%group -> perm


@dataclass
class AclConfig:
    global_white: list[AddressPattern] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)


def _perm_list(items: object, what: str, key: str, retry: bool) -> dict[str, int]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise UserError(f"ACL account {key!r}: {what} must be a list of NAME=PERM")
    out = {}
    for item in items:
        name, sep, perm = str(item).partition("=")
        if not sep or not name.strip():
            raise UserError(f"ACL account {key!r}: {what} entry {item!r} is not NAME=PERM")
        out[(RETRY_PREFIX if retry else "") + name.strip()] = parse_perm(perm)
    return out


def parse_acl(doc: object, where: str = "ACL config") -> AclConfig:
    """An ``AclConfig`` from a parsed plain_acl document; UserError naming what is wrong."""
    if not isinstance(doc, dict):
        raise UserError(f"{where}: expected a mapping with globalWhiteRemoteAddresses and accounts")
    white = doc.get("globalWhiteRemoteAddresses") or []
    if not isinstance(white, list):
        raise UserError(f"{where}: globalWhiteRemoteAddresses must be a list")
    config = AclConfig([AddressPattern(str(w)) for w in white if w is not None])
    accounts = doc.get("accounts") or []
    if not isinstance(accounts, list):
        raise UserError(f"{where}: accounts must be a list")
    for raw in accounts:
        if not isinstance(raw, dict) or raw.get("accessKey") in (None, "") or raw.get("secretKey") in (None, ""):
            raise UserError(f"{where}: every account needs an accessKey and a secretKey")
        key, secret = str(raw["accessKey"]), str(raw["secretKey"])
        if len(key) < 6 or len(secret) < 6:   # RocketMQ refuses shorter keys too
            raise UserError(f"{where}: account {key!r}: accessKey and secretKey need at least 6 characters")
        if key in config.accounts:
            raise UserError(f"{where}: accessKey {key!r} is configured twice")
        perms = _perm_list(raw.get("topicPerms"), "topicPerms", key, retry=False)
        perms.update(_perm_list(raw.get("groupPerms"), "groupPerms", key, retry=True))
        config.accounts[key] = Account(
            key, secret, AddressPattern(str(raw.get("whiteRemoteAddress") or "")), raw.get("admin") is True,
            parse_perm(raw.get("defaultTopicPerm")), parse_perm(raw.get("defaultGroupPerm")), perms)
    return config


def load_acl_file(path: str | Path) -> AclConfig:
    """Read ``plain_acl.yml`` (YAML; a ``.json`` file is read as JSON); UserError when it is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read ACL file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".json":
            doc = json.loads(text)
        else:
            import yaml  # PyYAML: plain_acl.yml is what RocketMQ users have

            doc = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - yaml.YAMLError or ValueError: one line for the user
        raise UserError(f"ACL file {path} does not parse: {exc}".splitlines()[0]) from None
    return parse_acl(doc, str(path))


def with_cluster_account(config: AclConfig, access_key: str, secret_key: str) -> AclConfig:
    """``config`` plus the cluster's own admin account (module doc)."""
    accounts = dict(config.accounts)
    accounts[access_key] = Account(access_key, secret_key, admin=True)
    return AclConfig(list(config.global_white), accounts)


# --- what a request needs --------------------------------------------------------------------------


def _retry(group: str | None) -> str | None:
    return RETRY_PREFIX + group if group else None


def needed_resources(cmd: RemotingCommand) -> dict[str, int]:
    """Resource -> permission a request needs (RocketMQ's ``PlainAccessResource.parse``, plus the
    codes the module doc names). Groups appear as ``%RETRY%group``."""
    ext = cmd.ext_fields
    need: dict[str, int] = {}

    def add(resource: str | None, perm: int) -> None:
        if resource:
            need[resource] = need.get(resource, 0) | perm

    code = cmd.code
    if code in (codes.SEND_MESSAGE, codes.SEND_MESSAGE_V2, codes.SEND_BATCH_MESSAGE):
        v2 = code != codes.SEND_MESSAGE
        topic, group = ext.get("b" if v2 else "topic"), ext.get("a" if v2 else "producerGroup")
        if topic and topic.startswith(RETRY_PREFIX):
            add(_retry(group) or topic, SUB)     # a consumer sending back: its group's SUB, as RocketMQ
        else:
            add(topic, PUB)
    elif code == codes.CONSUMER_SEND_MSG_BACK:
        add(_retry(ext.get("group")), SUB)
        add(ext.get("originTopic"), PUB)
    elif code == codes.PULL_MESSAGE:
        add(ext.get("topic"), SUB)
        add(_retry(ext.get("consumerGroup")), SUB)
    elif code in (codes.POP_MESSAGE, codes.ACK_MESSAGE, codes.CHANGE_MESSAGE_INVISIBLETIME, codes.PEEK_MESSAGE,
                  codes.NOTIFICATION):
        add(ext.get("topic"), SUB)
        add(_retry(ext.get("consumerGroup")), SUB)
    elif code == codes.QUERY_MESSAGE:
        add(ext.get("topic"), SUB)
    elif code in (codes.UPDATE_CONSUMER_OFFSET, codes.QUERY_CONSUMER_OFFSET):
        add(_retry(ext.get("consumerGroup")), SUB)
        add(ext.get("topic"), SUB)
    elif code in (codes.UNREGISTER_CLIENT, codes.GET_CONSUMER_LIST_BY_GROUP):
        add(_retry(ext.get("consumerGroup")), SUB)
    elif code == codes.HEART_BEAT and cmd.body:
        try:
            doc = json.loads(cmd.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            doc = {}
        for consumer in (doc.get("consumerDataSet") or []) if isinstance(doc, dict) else []:
            if not isinstance(consumer, dict):
                continue
            add(_retry(str(consumer.get("groupName") or "")), SUB)
            for sub in consumer.get("subscriptionDataSet") or []:
                if isinstance(sub, dict) and sub.get("topic"):
                    add(str(sub["topic"]), SUB)
    return need


class AclChecker:
    def __init__(self, config: AclConfig):
        self.config = config

    def check(self, cmd: RemotingCommand, remote_host: str) -> None:
        """Return when ``cmd`` from ``remote_host`` is allowed; AclDenied otherwise (module doc)."""
        self.check_access(cmd.ext_fields.get(signature.ACCESS_KEY), remote_host,
                          lambda secret: signature.verify(cmd.ext_fields, cmd.body, secret),
                          cmd.code, lambda: needed_resources(cmd))

    def check_access(self, key: str | None, remote_host: str, signed: Callable[[str], bool], code: int | None,
                     needed: Callable[[], dict[str, int]]) -> None:
        """The check of the module doc for any protocol: ``key`` is the request's access key (None:
        unsigned), ``signed(secret_key)`` tells whether the request's signature is that secret's,
        ``code`` a remoting request code (for the admin check; None: not an admin request) and
        ``needed()`` the resources it needs. The RocketMQ 5 gRPC endpoint calls it with the
        ``authorization`` metadata's credential and signature (``broker/grpc/auth``)."""
        config = self.config
        if any(p.match(remote_host) for p in config.global_white):
            return
        if key is None:
            raise AclDenied("No accessKey is configured")
        account = config.accounts.get(key)
        if account is None:
            raise AclDenied(f"No acl config for {key}")
        if account.white_address.match(remote_host):
            return
        if not signed(account.secret_key):
            raise AclDenied(f"Check signature failed for accessKey={key}")
        if code is not None and code in ADMIN_CODES and not account.admin:
            raise AclDenied(f"Need admin permission for request code={code}, but accessKey={key} is not")
        if account.admin and not account.perms:
            return                      # as RocketMQ: an admin with no listed perms may do anything
        for resource, perm_needed in needed().items():
            owned = account.perms.get(resource)
            if owned is None:
                owned = account.default_group_perm if resource.startswith(RETRY_PREFIX) else account.default_topic_perm
                if not perm_allows(perm_needed, owned):
                    raise AclDenied(f"No default permission for {resource}")
            elif not perm_allows(perm_needed, owned):
                raise AclDenied(f"No permission for {resource}: accessKey={key} has {_perm_name(owned)}, "
                                f"the request needs {_perm_name(perm_needed)}")


def _perm_name(perm: int) -> str:
    if perm & DENY:
        return "DENY"
    return "|".join(name for name, bit in (("PUB", PUB), ("SUB", SUB), ("ANY", ANY)) if perm & bit) or "DENY"
