"""Deployment layouts: rooms, hosts, broker groups and where each replica runs.

A layout is a TOML file (built-ins live in ``broker/layouts/``)::

    name = "3x3"
    description = "..."
    cluster = "mqbench"            # RocketMQ cluster name the brokers register under
    namesrv_host = "h1"            # the host that runs the name server
    namesrv_port = 9876            # optional
    broker_port = 10911            # optional: first remoting port on every host
    instance_port_step = 10        # optional: port distance between instances on one host

    [rooms.room1]
    hosts = ["h1", "h2", "h3"]

    [hosts.h1]
    address = "127.0.2.1"          # a host is its own loopback address (the whole 127/8 is local),
                                   # or a Ray node's IP address (placed on that node: mqbench.ray.hosts)
    ray_node = "label:zone=room1"  # optional, Ray only: the node by label(s) ("label:k=v,k2=v2") or by
                                   # id ("id:<node id hex>"); it then listens on that node's address

    [groups.broker-a]              # one broker group = one Raft group
    replicas = ["h1", "h2", "h3"]  # one replica on each listed host, ids n0, n1, n2 in this order
    preferred_leader = "h1"        # optional: the leader moves here once it is caught up

    [[links]]                      # optional: how the network between two rooms behaves
    rooms = ["room1", "room2"]     # both directions; one room may belong to another layout (DR scheme C)
    latency_ms = 2                 # one-way; jitter_ms, loss, cut, retransmit_ms: see mqbench/dr/netem/link.py
    jitter_ms = 1

    [dr]                           # optional: the machine-room DR scheme this layout is (mqbench dr)
    scheme = "A"                   # "A" stretched cluster, "B" two rooms, "C" one cluster per room
    survives = ["instance", "host", "room:room2"]   # faults it promises to ride out with RPO 0
    standby = "dr-c-standby"       # scheme C only: the layout of the other room's cluster

Rooms not joined by a ``[[links]]`` entry (and hosts in one room) talk with no added delay.

Ports: the instances on one host are numbered in group order (as the groups appear in the file);
instance k on a host listens for clients on ``broker_port + k * instance_port_step``, for Raft
peers on that port + 1 and for RocketMQ 5 gRPC clients on that port + 2 (when the ``grpc`` extra
is installed). Several instances per host is the multi-instance, cost-saving scheme.

A layout whose hosts name node addresses (not loopback) only runs on a Ray cluster
(``--cluster ray://...``): the launcher refuses it locally. A layout placed on Ray nodes is written
as the same document in JSON (``DIR/layout.json``, its hosts' addresses those of their nodes), so
``.json`` files load too.

``load_layout(name_or_path)`` returns a validated ``Layout`` or raises ``UserError`` naming the file
and the key at fault. Everything here is pure: no sockets, no processes.
"""
from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from mqbench.broker.layout_links import NO_DELAY, LinkSettings
from mqbench.errors import UserError

BUILTIN_DIR = Path(__file__).parent / "layouts"
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TOP_KEYS = {"name", "description", "cluster", "namesrv_host", "namesrv_port", "broker_port", "instance_port_step",
             "rooms", "hosts", "groups", "links", "dr"}
DR_SCHEMES = ("A", "B", "C")
DR_FAULTS = ("instance", "host", "room", "partition")


@dataclass(frozen=True)
class Instance:
    """One broker process: a replica of one group on one host."""

    group: str
    replica_id: str  # "n0", "n1", ... in the order of the group's replicas
    host: str
    room: str
    address: str
    port: int
    raft_port: int
    preferred_leader: bool

    @property
    def name(self) -> str:
        """``group/replica``, how drills and tables name an instance."""
        return f"{self.group}/{self.replica_id}"

    @property
    def addr(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def raft_addr(self) -> str:
        return f"{self.address}:{self.raft_port}"

    @property
    def grpc_port(self) -> int:
        """The RocketMQ 5 gRPC endpoint's port (``broker/grpc``): the client port + 2."""
        return self.port + 2

    @property
    def grpc_addr(self) -> str:
        return f"{self.address}:{self.grpc_port}"


@dataclass(frozen=True)
class DrScheme:
    """The ``[dr]`` table: which DR scheme a layout is and what it promises."""

    scheme: str  # "A" | "B" | "C"
    survives: tuple[str, ...] = ()  # "fault" or "fault:room-or-host" ridden out with RPO 0
    standby: str = ""  # scheme C: the other room's cluster layout

    def promises_rpo_zero(self, fault: str, target: str) -> bool:
        """True when the layout promises that ``fault`` on ``target`` loses no acknowledged message."""
        return fault in self.survives or f"{fault}:{target}" in self.survives


@dataclass(frozen=True)
class RayNode:
    """A host's ``ray_node``: a Ray node by id, or any node carrying every one of ``labels``."""
    node_id: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


_RAY_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,252}[A-Za-z0-9])?$")


def parse_ray_node(text: object) -> RayNode:
    """``"id:<hex>"`` or ``"label:k=v[,k=v]"`` -> ``RayNode``; ValueError naming what is wrong."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError("must be \"id:<node id>\" or \"label:key=value[,key=value]\"")
    kind, _, rest = text.partition(":")
    if kind == "id":
        if not re.fullmatch(r"[0-9a-fA-F]{8,64}", rest):
            raise ValueError(f"node id {rest!r} is not a hex Ray node id")
        return RayNode(node_id=rest.lower())
    if kind == "label":
        labels = []
        for pair in rest.split(","):
            key, eq, value = pair.partition("=")
            if not eq or not _RAY_LABEL.match(key) or not _RAY_LABEL.match(value):
                raise ValueError(f"label {pair!r} is not key=value")
            labels.append((key, value))
        return RayNode(labels=tuple(labels))
    raise ValueError(f"{kind!r} is neither id nor label")


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    cluster: str
    rooms: dict[str, tuple[str, ...]]  # room -> hosts
    hosts: dict[str, str]  # host -> address
    groups: dict[str, tuple[str, ...]]  # group -> replica hosts
    preferred_leaders: dict[str, str]  # group -> host
    namesrv_host: str
    namesrv_port: int = 9876
    broker_port: int = 10911
    instance_port_step: int = 10
    source: str = ""
    instances: tuple[Instance, ...] = field(default=(), compare=False)
    links: dict[frozenset, LinkSettings] = field(default_factory=dict)  # {room_a, room_b} -> settings
    dr: DrScheme | None = None
    ray_nodes: dict[str, RayNode] = field(default_factory=dict)  # host -> the Ray node it names (``ray_node``)

    def link_between(self, room_a: str, room_b: str) -> LinkSettings:
        """The link settings between two rooms (no delay inside a room or for an unlisted pair)."""
        if room_a == room_b:
            return NO_DELAY
        return self.links.get(frozenset((room_a, room_b)), NO_DELAY)

    @property
    def namesrv_addr(self) -> str:
        return f"{self.hosts[self.namesrv_host]}:{self.namesrv_port}"

    def room_of(self, host: str) -> str:
        for room, hosts in self.rooms.items():
            if host in hosts:
                return room
        raise KeyError(host)

    def group_instances(self, group: str) -> list[Instance]:
        return [i for i in self.instances if i.group == group]

    def instance(self, name: str) -> Instance:
        for candidate in self.instances:
            if candidate.name == name:
                return candidate
        raise UserError(f"layout {self.name!r} has no instance {name!r}; instances: "
                        + ", ".join(i.name for i in self.instances))

    def with_port_offset(self, offset: int) -> "Layout":
        """The same layout with every port moved by ``offset`` (to run beside another cluster)."""
        if offset == 0:
            return self
        return _with_instances(replace(self, namesrv_port=self.namesrv_port + offset,
                                       broker_port=self.broker_port + offset))


def builtin_layouts() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def load_layout(name_or_path: str | Path) -> Layout:
    """A built-in layout by name, or a layout file by path; validated."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = BUILTIN_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise UserError(f"no layout {str(name_or_path)!r}: built-in layouts are {', '.join(builtin_layouts())}, "
                            "or give a path to a .toml file")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except FileNotFoundError:
        raise UserError(f"layout file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"layout file {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: "
                        f"{exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"layout file {path} must hold a table")
    return parse_layout(data, source=str(path))


def parse_layout(data: dict, source: str = "<layout>") -> Layout:
    """Validate a layout document (already parsed TOML) into a ``Layout``."""

    def fail(message: str):
        raise UserError(f"layout {source}: {message}")

    unknown = set(data) - _TOP_KEYS
    if unknown:
        fail(f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("name", "rooms", "hosts", "groups"):
        if key not in data:
            fail(f"missing key {key!r}")
    rooms: dict[str, tuple[str, ...]] = {}
    for room, spec in _table(data, "rooms", fail).items():
        _check_name(room, "room", fail)
        if not isinstance(spec, dict) or set(spec) - {"hosts"} or not isinstance(spec.get("hosts"), list):
            fail(f"rooms.{room} must be a table with a 'hosts' list")
        rooms[room] = tuple(spec["hosts"])
    hosts: dict[str, str] = {}
    ray_nodes: dict[str, RayNode] = {}
    for host, spec in _table(data, "hosts", fail).items():
        _check_name(host, "host", fail)
        if not isinstance(spec, dict) or set(spec) - {"address", "ray_node"} or "address" not in spec:
            fail(f"hosts.{host} must be a table with an 'address' (and optionally 'ray_node')")
        if "ray_node" in spec:
            try:
                ray_nodes[host] = parse_ray_node(spec["ray_node"])
            except ValueError as exc:
                fail(f"hosts.{host}.ray_node {exc}")
        try:
            address = ipaddress.ip_address(spec["address"])
        except (ValueError, TypeError):
            fail(f"hosts.{host}.address {spec['address']!r} is not an IP address")
        if address.is_unspecified or address.is_multicast:
            fail(f"hosts.{host}.address {address} is not a host's address")
        hosts[host] = str(address)
    if len(set(hosts.values())) != len(hosts):
        fail("two hosts share an address")
    placed = [h for hs in rooms.values() for h in hs]
    for host in placed:
        if host not in hosts:
            fail(f"room lists unknown host {host!r}")
    if len(placed) != len(set(placed)):
        fail("a host is listed in more than one room")
    missing = set(hosts) - set(placed)
    if missing:
        fail(f"host(s) {', '.join(sorted(missing))} are in no room")
    groups: dict[str, tuple[str, ...]] = {}
    preferred: dict[str, str] = {}
    for group, spec in _table(data, "groups", fail).items():
        _check_name(group, "group", fail)
        if not isinstance(spec, dict) or set(spec) - {"replicas", "preferred_leader"}:
            fail(f"groups.{group} may only hold 'replicas' and 'preferred_leader'")
        replicas = spec.get("replicas")
        if not isinstance(replicas, list) or not replicas:
            fail(f"groups.{group}.replicas must be a non-empty list of hosts")
        for host in replicas:
            if host not in hosts:
                fail(f"groups.{group}.replicas names unknown host {host!r}")
        if len(set(replicas)) != len(replicas):
            fail(f"groups.{group} places two replicas on one host; a host loss would take both")
        groups[group] = tuple(replicas)
        if "preferred_leader" in spec:
            if spec["preferred_leader"] not in replicas:
                fail(f"groups.{group}.preferred_leader must be one of its replicas")
            preferred[group] = spec["preferred_leader"]
    if not groups:
        fail("no broker groups")
    namesrv_host = data.get("namesrv_host", next(iter(hosts)))
    if namesrv_host not in hosts:
        fail(f"namesrv_host {namesrv_host!r} is not a host")
    ports = {}
    for key, default in (("namesrv_port", 9876), ("broker_port", 10911), ("instance_port_step", 10)):
        value = data.get(key, default)
        if not isinstance(value, int) or not 1 <= value <= 65000:
            fail(f"{key} must be an integer port number")
        ports[key] = value
    if ports["instance_port_step"] < 3:
        fail("instance_port_step must be at least 3 (each instance uses three ports: clients, Raft peers, gRPC)")
    links = _parse_links(data.get("links", []), rooms, fail)
    dr = _parse_dr(data["dr"], rooms, hosts, fail) if "dr" in data else None
    layout = Layout(name=str(data["name"]), description=str(data.get("description", "")),
                    cluster=str(data.get("cluster", "mqbench")), rooms=rooms, hosts=hosts, groups=groups,
                    preferred_leaders=preferred, namesrv_host=namesrv_host, source=source, links=links, dr=dr,
                    ray_nodes=ray_nodes, **ports)
    return _with_instances(layout)


def _with_instances(layout: Layout) -> Layout:
    instances = []
    per_host: dict[str, int] = {}
    for group, replica_hosts in layout.groups.items():
        for index, host in enumerate(replica_hosts):
            k = per_host.get(host, 0)
            per_host[host] = k + 1
            port = layout.broker_port + k * layout.instance_port_step
            instances.append(Instance(group=group, replica_id=f"n{index}", host=host, room=layout.room_of(host),
                                      address=layout.hosts[host], port=port, raft_port=port + 1,
                                      preferred_leader=layout.preferred_leaders.get(group) == host))
    for instance in instances:
        if instance.address == layout.hosts[layout.namesrv_host] and layout.namesrv_port in (instance.port,
                                                                                            instance.raft_port):
            raise UserError(f"layout {layout.source}: name server port {layout.namesrv_port} collides with "
                            f"instance {instance.name}")
    return replace(layout, instances=tuple(instances))


def _parse_links(entries, rooms: dict, fail) -> dict[frozenset, LinkSettings]:
    if not isinstance(entries, list):
        fail("'links' must be an array of tables ([[links]])")
    links: dict[frozenset, LinkSettings] = {}
    for index, entry in enumerate(entries):
        where = f"links[{index}]"
        if not isinstance(entry, dict):
            fail(f"{where} must be a table")
        pair = entry.get("rooms")
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(r, str) for r in pair) \
                or pair[0] == pair[1]:
            fail(f"{where}.rooms must name two different rooms")
        for room in pair:
            _check_name(room, "room", fail)
        if not set(pair) & set(rooms):
            fail(f"{where}.rooms {pair} names no room of this layout")
        key = frozenset(pair)
        if key in links:
            fail(f"{where}: rooms {pair[0]} and {pair[1]} are linked twice")
        try:
            links[key] = LinkSettings.from_dict({k: v for k, v in entry.items() if k != "rooms"}, where=where)
        except UserError as exc:
            fail(str(exc))
    return links


def _parse_dr(spec, rooms: dict, hosts: dict, fail) -> DrScheme:
    if not isinstance(spec, dict) or set(spec) - {"scheme", "survives", "standby"}:
        fail("dr must be a table with 'scheme' and optionally 'survives' and 'standby'")
    scheme = spec.get("scheme")
    if scheme not in DR_SCHEMES:
        fail(f"dr.scheme must be one of {', '.join(DR_SCHEMES)}, not {scheme!r}")
    survives = spec.get("survives", [])
    if not isinstance(survives, list) or not all(isinstance(s, str) for s in survives):
        fail("dr.survives must be a list of strings")
    for item in survives:
        fault, _, target = item.partition(":")
        if fault not in DR_FAULTS:
            fail(f"dr.survives entry {item!r}: fault must be one of {', '.join(DR_FAULTS)}")
        if target and target not in rooms and target not in hosts:
            fail(f"dr.survives entry {item!r}: {target!r} is not a room or host of this layout")
    standby = spec.get("standby", "")
    if scheme == "C":
        if not isinstance(standby, str) or not _NAME_RE.match(standby):
            fail("dr.standby must name the standby cluster's layout (scheme C)")
    elif standby:
        fail("dr.standby is only for scheme C (one cluster per room)")
    return DrScheme(scheme=scheme, survives=tuple(survives), standby=standby)


def _table(data: dict, key: str, fail) -> dict:
    value = data[key]
    if not isinstance(value, dict) or not value:
        fail(f"{key!r} must be a non-empty table")
    return value


def _check_name(name: str, kind: str, fail) -> None:
    if not _NAME_RE.match(name):
        fail(f"{kind} name {name!r} must be 1-64 letters, digits, '_' or '-'")
