"""A DR drill's room links on Ray nodes: the inter-room proxies run on the nodes, next to the brokers.

Locally ``dr.fabric.ProxyFabric`` runs every inter-room proxy on the drill's machine. Across real
machines that cannot cut anything: the brokers talk node to node. So on Ray the same views and
proxies are split by where the traffic leaves from:

* ``room_views(layout, directory, hosts)`` (``launcher.up``'s ``room_views`` hook, called after the
  hosts are placed and before any process starts) writes one view per room with index aliases
  (``fabric.write_views(..., by_index=True)``: ``127.(200+room).(n // 256).(n % 256)``, loopback on
  every Linux machine), and starts, on one host actor per (room, node), the proxies of that room's
  view (``fabric.proxy_plan``): the node's brokers dial their alias, the proxy on the same node
  forwards to the peer's node address. Links are ``NO_DELAY``: the real network between the nodes
  is the link. Several nodes of one machine (a local test cluster) in one room share a proxy (the
  one that bound the alias first; every proxy of one alias forwards to the same target).
* ``NodeLinks``, the drill's handle, has ``ProxyFabric``'s control methods: ``cut_room(room)`` asks
  every node with proxies to cut the ones touching ``room`` (both the room's own outgoing proxies
  and the other rooms' proxies to it), ``heal()``, ``cross_room_bytes()`` (summed over the nodes),
  ``set_transparent`` (nothing to switch: the links add no delay), ``close()``. No root, no
  iptables: the proxies are userspace TCP relays in the host actors, and they end with them.
* ``RemoteReplicator``: scheme C's replicator and its link to room1 (``dr.room_link``) run in a
  host actor of the standby cluster (room2), so the replicator's pulls leave from a standby node
  and a cut stops them there. Async methods of ``LinkedReplicator``'s names, each an actor call.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

from mqbench.dr.fabric import proxy_plan, write_views
from mqbench.dr.netem import NO_DELAY
from mqbench.errors import UserError

CALL_TIMEOUT_S = 60.0


class NodeLinks:
    """The room links of a layout on Ray nodes (module doc)."""

    def __init__(self, layout, hosts, seed: int | str = 0):
        self.layout, self.hosts, self.seed = layout, hosts, seed
        self.owners: list[tuple[str, object]] = []     # (host whose actor runs proxies, actor)
        self.cut_rooms: set[str] = set()

    def start(self, directory: Path) -> dict[str, Path]:
        """Write the views, start each room's proxies on its nodes; room -> view path (module doc)."""
        ray, layout = self.hosts.ray, self.layout
        views = write_views(layout, Path(directory) / "views", by_index=True)
        specs = proxy_plan(layout, by_index=True, link=NO_DELAY)
        where = self.hosts.settings["hosts"]
        runners: dict[tuple[str, str], str] = {}       # (room, node id) -> the host whose actor runs them
        for instance in layout.instances:
            runners.setdefault((instance.room, where[instance.host]["node_id"]), instance.host)
        refs = []
        for (room, _node), host in sorted(runners.items()):
            room_specs = [s for s in specs if s.view_room == room]
            if room_specs:
                actor = self.hosts.actors[host]
                refs.append((host, room_specs, actor.start_links.remote(layout, room_specs, f"{self.seed}/{host}")))
                self.owners.append((host, actor))
        listening: set[tuple] = set()
        for host, _specs, ref in refs:
            try:
                answer = ray.get(ref, timeout=CALL_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - a bind that failed on the node: one line
                raise UserError(f"host {host}'s node could not start its room links: {exc}") from None
            listening |= {tuple(a) for a in answer["listening"]}
        missing = [s for s in specs if tuple(s.listen) not in listening]
        if missing:
            raise UserError(f"layout {layout.name}: no node listens on the room alias {missing[0].listen[0]}:"
                            f"{missing[0].listen[1]} ({missing[0].view_room} -> {missing[0].host})")
        return views

    def _each(self, method: str, *args, strict: bool = True) -> list:
        """Every owner's answer to ``method``; None for an actor that is gone (its node died: its
        proxies with it). ``strict``: another failure (a timeout) is a UserError, else None too."""
        refs = [(host, getattr(actor, method).remote(*args)) for host, actor in self.owners]
        out = []
        for host, ref in refs:
            try:
                out.append(self.hosts.ray.get(ref, timeout=CALL_TIMEOUT_S))
            except self.hosts.ray.exceptions.RayActorError:
                out.append(None)
            except Exception as exc:  # noqa: BLE001 - a timeout, a lost connection: one line
                if strict:
                    raise UserError(f"host {host}'s room links did not answer {method}: {exc}") from None
                out.append(None)
        return out

    def cut_room(self, room: str, reset: bool = False) -> None:
        if room not in self.layout.rooms:
            raise UserError(f"layout {self.layout.name!r} has no room {room!r}; rooms: {', '.join(self.layout.rooms)}")
        self._each("cut_links", room)
        self.cut_rooms.add(room)

    def heal(self) -> None:
        self._each("heal_links", strict=False)
        self.cut_rooms.clear()

    def set_transparent(self, transparent: bool) -> None:
        """Nothing to switch: the links add no delay on Ray nodes."""

    def cross_room_bytes(self) -> int:
        return sum(b or 0 for b in self._each("link_bytes"))

    def close(self) -> None:
        self._each("close_links", strict=False)     # the actors end anyway (launcher.down), their proxies too
        self.owners = []


def room_views_hook(seed: int | str, out: dict):
    """``launcher.up``'s ``room_views`` for a DR cluster on Ray nodes; the ``NodeLinks`` goes to ``out["links"]``."""
    def room_views(layout, directory: Path, hosts) -> dict[str, Path]:
        links = out["links"] = NodeLinks(layout, hosts, seed)
        return links.start(directory)
    return room_views


class RemoteReplicator:
    """Scheme C's replicator and room link in a standby host's actor (module doc)."""

    def __init__(self, hosts, host: str):
        self.hosts, self.host = hosts, host
        self.actor = hosts.actors[host]

    async def _call(self, method: str, *args):
        ref = getattr(self.actor, method).remote(*args)
        return await asyncio.to_thread(self.hosts.ray.get, ref, timeout=CALL_TIMEOUT_S)

    async def start(self, **kwargs) -> "RemoteReplicator":
        try:
            await self._call("start_replicator", kwargs)
        except Exception as exc:  # noqa: BLE001 - the replicator could not start on the node: one line
            raise UserError(f"scheme C's replicator did not start on standby host {self.host}'s node: {exc}") from None
        return self

    async def cut(self) -> None:
        await self._call("replicator", "cut")

    async def heal(self) -> None:
        await self._call("replicator", "heal")

    async def bytes(self) -> int:
        return await self._call("replicator", "bytes") or 0

    async def copied(self) -> int:
        return await self._call("replicator", "copied") or 0

    async def lag_total(self) -> int:
        return await self._call("replicator", "lag_total") or 0

    async def close(self) -> None:
        try:
            await self._call("replicator", "close")
        except Exception:  # noqa: BLE001 - the actor is gone: the replicator ended with it
            pass
