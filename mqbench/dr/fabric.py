"""The inter-room network of a layout on one machine: per-room views of the layout and the delay
proxies between rooms.

Every broker process reads a layout to learn where its Raft peers and the name server are. A room
gets its own *view* of the layout (``view_layout``): hosts in the same room keep their addresses,
hosts in every other room are replaced by an alias loopback address (``alias_address``) where a
``DelayProxy`` listens on each port the real host serves to peers (Raft ports, the name server
port) and forwards to the real host through the link between the two rooms. So every TCP
connection that crosses a room boundary goes through exactly one proxy, in the room pair's link
model, and cutting a room's proxies is a partition. Clients of the workload connect to brokers
directly: they stand in no room. Processes of a room listen on their real addresses, so kills and
restarts need nothing from the fabric.

Alias addresses: view of the room with index ``i`` (rooms in layout order) sees a host whose real
address is ``127.a.b.c`` at ``127.(200+i).b.c``; the whole 127/8 is loopback on Linux, so nothing
needs configuring. Layouts with IPv6 hosts cannot be viewed (UserError). ``by_index=True`` (hosts on
Ray nodes, whose real addresses are other machines' IPs that may share their last two octets): the
host with index ``n`` (sorted host names, from 1) is seen at ``127.(200+i).(n // 256).(n % 256)``.

The same views and proxies serve a layout on Ray nodes (``mqbench.ray.links``): there each node runs
the proxies of its own room's view (``ProxyFabric(..., specs=..., share_busy=True)`` inside the host
actor), so the cut happens on the machines the traffic leaves from.

``ProxyFabric`` runs the proxies on an event loop of its own thread, so the synchronous launcher
(``mqbench.cluster.launcher``) can block while the proxies keep forwarding; its control methods are
thread-safe and wait for the change to be applied.
"""
from __future__ import annotations

import asyncio
import ipaddress
import threading
from dataclasses import dataclass
from pathlib import Path

from mqbench.broker.layout import Layout
from mqbench.dr.netem import NO_DELAY, DelayProxy, LinkSettings
from mqbench.errors import UserError

ALIAS_FIRST_OCTET = 200
CONTROL_TIMEOUT_S = 10.0


def alias_address(layout: Layout, view_room: str, host: str, by_index: bool = False) -> str:
    """The address at which hosts of ``view_room`` reach ``host`` (its own address if same room)."""
    if layout.room_of(host) == view_room:
        return layout.hosts[host]
    if by_index:
        index, number = list(layout.rooms).index(view_room), sorted(layout.hosts).index(host) + 1
        if index > 255 - ALIAS_FIRST_OCTET or number > 65535:
            raise UserError(f"layout {layout.name!r} has too many rooms or hosts for room views")
        return f"127.{ALIAS_FIRST_OCTET + index}.{number // 256}.{number % 256}"
    address = ipaddress.ip_address(layout.hosts[host])
    if address.version != 4:
        raise UserError(f"layout {layout.name!r}: host {host} has IPv6 address {address}; DR drills need "
                        "127.x.y.z addresses for room views")
    index = list(layout.rooms).index(view_room)
    octets = str(address).split(".")
    if index > 255 - ALIAS_FIRST_OCTET:
        raise UserError(f"layout {layout.name!r} has too many rooms for room views (at most {256 - ALIAS_FIRST_OCTET})")
    return f"127.{ALIAS_FIRST_OCTET + index}.{octets[2]}.{octets[3]}"


def view_layout(layout: Layout, view_room: str, by_index: bool = False) -> dict:
    """The layout document (as TOML tables) that processes in ``view_room`` read; ports final."""
    hosts = {h: {"address": alias_address(layout, view_room, h, by_index)} for h in layout.hosts}
    groups = {}
    for group, replicas in layout.groups.items():
        groups[group] = {"replicas": list(replicas)}
        if group in layout.preferred_leaders:
            groups[group]["preferred_leader"] = layout.preferred_leaders[group]
    return {"name": layout.name, "description": f"{layout.description} (as seen from {view_room})",
            "cluster": layout.cluster, "namesrv_host": layout.namesrv_host, "namesrv_port": layout.namesrv_port,
            "broker_port": layout.broker_port, "instance_port_step": layout.instance_port_step,
            "rooms": {room: {"hosts": list(hs)} for room, hs in layout.rooms.items()},
            "hosts": hosts, "groups": groups}


def to_toml(doc: dict) -> str:
    """TOML text of a layout document: scalars, lists of strings and one level of sub-tables."""
    lines, tables = [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for key, table in tables:
        for name, body in table.items():
            lines.append(f"\n[{key}.{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_views(layout: Layout, directory: Path, by_index: bool = False) -> dict[str, Path]:
    """Write one view per room that runs broker instances; room -> file path."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for room in sorted({i.room for i in layout.instances}):
        path = directory / f"layout-{room}.toml"
        path.write_text(to_toml(view_layout(layout, room, by_index)), encoding="utf-8")
        paths[room] = path
    return paths


@dataclass(frozen=True)
class ProxySpec:
    view_room: str  # where the connecting process is
    host: str  # the host it reaches
    host_room: str
    port: int
    listen: tuple[str, int]
    target: tuple[str, int]
    link: LinkSettings


def proxy_plan(layout: Layout, by_index: bool = False, link: LinkSettings | None = None) -> list[ProxySpec]:
    """Every proxy the views need: each room with instances x each host of another room x each port
    that host serves to peers (its instances' Raft ports, the name server port). ``link`` replaces
    every room pair's link settings (Ray nodes: ``NO_DELAY``, the real network is the link)."""
    served: dict[str, list[int]] = {h: [] for h in layout.hosts}
    served[layout.namesrv_host].append(layout.namesrv_port)
    for instance in layout.instances:
        served[instance.host].append(instance.raft_port)
    specs = []
    for view_room in sorted({i.room for i in layout.instances}):
        for host, ports in served.items():
            host_room = layout.room_of(host)
            if host_room == view_room:
                continue
            for port in ports:
                specs.append(ProxySpec(view_room, host, host_room, port,
                                       (alias_address(layout, view_room, host, by_index), port),
                                       (layout.hosts[host], port),
                                       link if link is not None else layout.link_between(view_room, host_room)))
    return specs


class ProxyFabric:
    """The proxies of ``proxy_plan(layout)`` (or of ``specs``), on their own thread's event loop
    (module docstring). ``share_busy``: a proxy whose alias address is taken already is left to
    whoever listens there (another Ray node of the same room on the same machine, whose proxy
    forwards to the same target); ``shared`` counts them."""

    def __init__(self, layout: Layout, *, seed: int | str = 0, specs: list[ProxySpec] | None = None,
                 share_busy: bool = False):
        self.layout = layout
        self.specs = proxy_plan(layout) if specs is None else list(specs)
        self.seed = seed
        self.share_busy = share_busy
        self.shared = 0
        self._proxies: list[tuple[ProxySpec, DelayProxy]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.cut_rooms: set[str] = set()

    def start(self) -> "ProxyFabric":
        """Start the thread and every proxy; UserError if an alias address:port is taken."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"dr-fabric-{self.layout.name}", daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self._call(self._start_all())
        except BaseException:
            self.close()
            raise
        return self

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    async def _start_all(self) -> None:
        for spec in self.specs:
            proxy = DelayProxy(spec.listen, spec.target, forward=spec.link, backward=spec.link,
                               seed=f"{self.seed}/{spec.view_room}/{spec.host}/{spec.port}",
                               name=f"{spec.view_room}->{spec.host}:{spec.port}")
            try:
                await proxy.start()
            except UserError:
                if not self.share_busy:
                    raise
                self.shared += 1
                continue
            self._proxies.append((spec, proxy))

    def _touching(self, room: str) -> list[DelayProxy]:
        return [p for s, p in self._proxies if room in (s.view_room, s.host_room)]

    def cut_room(self, room: str, reset: bool = False) -> None:
        """Partition ``room`` from every other room (stall, or reset connections)."""
        if room not in self.layout.rooms:
            raise UserError(f"layout {self.layout.name!r} has no room {room!r}; rooms: {', '.join(self.layout.rooms)}")

        async def cut() -> None:
            for proxy in self._touching(room):
                proxy.cut(reset=reset)
        self._call(cut())
        self.cut_rooms.add(room)

    def heal(self) -> None:
        """End every partition."""
        async def heal() -> None:
            for _spec, proxy in self._proxies:
                proxy.heal()
        self._call(heal())
        self.cut_rooms.clear()

    def set_transparent(self, transparent: bool) -> None:
        """Links add nothing (``True``: the baseline for the latency that rooms add) or their layout
        settings again (``False``)."""
        async def apply() -> None:
            for spec, proxy in self._proxies:
                link = NO_DELAY if transparent else spec.link
                proxy.set_links(forward=link, backward=link)
        self._call(apply())

    def cross_room_bytes(self) -> int:
        """Bytes delivered across room boundaries so far, both directions, every proxy."""
        async def total() -> int:
            return sum(p.stats().bytes_forward + p.stats().bytes_backward for _s, p in self._proxies)
        return self._call(total())

    def close(self) -> None:
        if self._loop is None:
            return

        async def close_all() -> None:
            await asyncio.gather(*(p.close() for _s, p in self._proxies), return_exceptions=True)
        try:
            if self._loop.is_running():
                self._call(close_all())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(CONTROL_TIMEOUT_S)
            self._loop = None
