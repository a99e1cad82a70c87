"""The reference broker process: one replica of one broker group of a layout.

    python -m mqbench.broker.server.main --layout SRC --port-offset N --instance GROUP/nK \\
        --store DIR --durability memory|fsync [--store-version v5-dledger] [--delay on|off] [--log-level info] \
        [--cluster-secret-file DIR/cluster.secret] [--acl plain_acl.yml] [--connections-max N] [--disk-free-min-mb N]

What it does, in order (``Broker.start``): finds its instance in the layout (``--layout`` is a
built-in name or a path, moved by ``--port-offset``), opens its replica of the group's Raft group
(``ReplicatedGroup``: the store in ``--store``, Raft peers on every replica's ``raft_port``, the
layout's preferred leader), serves the remoting protocol on the instance's ``address:port``
(handlers in ``handlers_*``), and registers with the layout's name server (``registration``:
every 10 s, at once on every role change and topic change). It serves until SIGTERM or SIGINT,
then stops cleanly (``Broker.close``: unregister, close client connections, close the group and
its store) and exits 0. Bad flags, an unknown layout or instance, a store that is locked or of
another version, a port in use: one ``error: ...`` line on stderr and exit 2. Every event
(start, role changes, registrations, topic creation, consumers joining, stop) is one log line on
stderr.

The RocketMQ 5 gRPC endpoint (``--grpc on``, the default; ``broker/grpc``) is started last, on
the instance's client port + 2, when the optional ``grpc`` extra is installed.

Delayed messages (``--delay on``, the default) are wired in after start: ``broker.timer.attach_to_broker``
rewrites delay-level and timer sends and runs the delay service while this replica leads.

Extensions (the delay service, say) plug in without editing this module:
``broker.ctx.message_rewriters`` (applied to every single message before it is put),
``broker.role_listeners``, ``broker.commit_listeners`` and ``broker.stop_hooks`` (see ``Broker``).

A handler that finds a broken invariant, or a replica whose Raft loop failed (disk error), stops
the process with exit code 1: it must not keep serving from a state it cannot trust. Running short
of disk space or descriptors is not such a failure: writes are refused with SERVICE_NOT_AVAILABLE
(retriable) while reads go on, until the cause goes (``write_gate``). What one client may cost is
bounded by the remoting server's limits (``remoting.limits``: ``--connections-max``, timeouts,
buffers).
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys
from pathlib import Path
from typing import Awaitable, Callable

from mqbench.broker.cluster_secret import CLUSTER_ACCESS_KEY, read_secret_file
from mqbench.broker.layout import Instance, Layout, load_layout
from mqbench.broker.namesrv.routes import TopicEntry
from mqbench.broker.remoting.limits import ServerLimits
from mqbench.broker.remoting.server import RemotingServer
from mqbench.broker.server.acl import AclChecker, AclConfig, load_acl_file, with_cluster_account
from mqbench.broker.server.handlers import BrokerContext, build_batch_handlers, build_handlers, log
from mqbench.broker.server.handlers_clients import connection_closed
from mqbench.broker.server.registration import INTERVAL_MS_DEFAULT, Registrar, Registration
from mqbench.broker.store import versions
from mqbench.broker.lifeline import watch_parent
from mqbench.event_loop import use_event_loop
from mqbench.gc_pauses import settle_after_startup
from mqbench import hop_trace
from mqbench.loop_stalls import watch
from mqbench.profiling import start as start_profile
from mqbench.errors import UserError

DURABILITIES = ("memory", "fsync")
LOG_LEVELS = ("debug", "info", "warning", "error")


def raft_node_id(instance: Instance) -> int:
    """Raft node id of a layout replica: ``n0`` -> 1, ``n1`` -> 2, ... (ids start at 1)."""
    return int(instance.replica_id[1:]) + 1


class Broker:
    """One broker instance (module doc); ``await start()``, then ``await close()``."""

    def __init__(self, layout: Layout, instance_name: str, store_dir: str | Path, *, durability: str = "memory",
                 version: str = "v5-dledger", register_interval_ms: int = INTERVAL_MS_DEFAULT,
                 rng: random.Random | None = None, clock_ms: Callable[[], int] | None = None,
                 group_options: dict | None = None, cluster_secret: bytes | None = None,
                 acl: "AclConfig | None" = None, server_limits: ServerLimits | None = None) -> None:
        if durability not in DURABILITIES:
            raise UserError(f"durability {durability!r} is not one of {', '.join(DURABILITIES)}")
        if version not in versions.STORE_VERSIONS or not versions.is_dledger(version):
            raise UserError(f"store version {version!r} cannot be replicated: use v4-dledger or v5-dledger")
        self.layout = layout
        self.instance = layout.instance(instance_name)
        self.store_dir = Path(store_dir)
        self.durability = durability
        self.version = version
        self.register_interval_ms = register_interval_ms
        self.rng = rng or random.Random()
        self.clock_ms = clock_ms
        self.group_options = dict(group_options or {})
        self.cluster_secret = cluster_secret
        self.acl = acl
        #: consumer-group glob patterns that consume in order (``--fifo-groups``; the gRPC endpoint)
        self.fifo_groups: tuple[str, ...] = ()
        self.server_limits = server_limits
        self.group = None
        self.ctx: BrokerContext | None = None
        self.server: RemotingServer | None = None
        self.registrar: Registrar | None = None
        self.fatal = asyncio.Event()
        self.fatal_reason: str | None = None
        #: Extension points (e.g. the delay service): called after the broker's own handling of a
        #: role change ``(role, term, leader_id)`` / of applied commits; ``stop_hooks`` are awaited
        #: in ``close`` before the group closes. Exceptions are logged, never raised into the group.
        self.role_listeners: list[Callable[[str, int, int | None], None]] = []
        self.commit_listeners: list[Callable[[], None]] = []
        self.stop_hooks: list[Callable[[], Awaitable[None]]] = []

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> "Broker":
        from mqbench.broker.server.replicated import ReplicatedGroup

        instance = self.instance
        members = self.layout.group_instances(instance.group)
        peers = {raft_node_id(m): (m.address, m.raft_port) for m in members}
        preferred = next((raft_node_id(m) for m in members if m.preferred_leader), None)
        options = {"clock_ms": self.clock_ms} if self.clock_ms is not None else {}
        options.update(self.group_options)
        if self.cluster_secret is not None:
            options.setdefault("raft_secret", self.cluster_secret)
        elif len(members) > 1:
            log.warning("broker %s runs without a cluster secret: its Raft port and registrations are "
                        "not authenticated (pass --cluster-secret-file)", instance.name)
        self.group = await ReplicatedGroup.open(
            self.store_dir, version=self.version, self_id=raft_node_id(instance), peers=peers,
            durability=self.durability, rng=self.rng, store_host=(instance.address, instance.port),
            preferred_leader=preferred, **options)
        # memory durability promises the page cache of a majority: nothing to fsync on a timer
        self.group.store.sync_on_timer = self.durability != "memory"
        try:
            ctx = self.ctx = BrokerContext(self.layout, instance, self.group, rng=self.rng,
                                           settings={"durability": self.durability, "storeVersion": self.version,
                                                     "storePathRootDir": str(self.store_dir)})
            if self.acl is not None:
                acl = self.acl
                if self.cluster_secret is not None:   # the cluster's own tooling signs with the secret
                    acl = with_cluster_account(acl, CLUSTER_ACCESS_KEY, self.cluster_secret.hex())
                ctx.acl = AclChecker(acl)
            handlers = build_handlers(ctx)
            self.server = RemotingServer(handlers, on_disconnect=lambda ch: connection_closed(ctx, ch),
                                         limits=self.server_limits, batch_handlers=build_batch_handlers(ctx, handlers))
            await self.server.start(instance.address, instance.port)
            self.registrar = Registrar(self.layout.namesrv_addr, self.describe, interval_ms=self.register_interval_ms,
                                       secret=self.cluster_secret)
            ctx.on_topics_changed = self.registrar.trigger
            self.group.on_role_change = self._on_role_change
            self.group.on_commit = self._on_commit
            if self.group.failed is not None:   # it failed before the callback was wired (during the awaits above)
                self.fatal_reason = f"replica failed: {self.group.failed}"
                self.fatal.set()
            self.registrar.start()
            if ctx.is_leader():
                ctx.spawn(ctx.ensure_default_topic(), "creating the default topic")
        except BaseException:
            await self._stop_parts()
            raise
        log.info("broker %s (%s) serving on %s, Raft on %s, store %s (%s, durability %s), %d replica(s)",
                 instance.name, self.layout.name, instance.addr, instance.raft_addr, self.store_dir, self.version,
                 self.durability, len(members))
        return self

    async def close(self) -> None:
        """Unregister, stop serving, close the group and its store."""
        log.info("broker %s stopping", self.instance.name)
        await self._stop_parts()
        log.info("broker %s stopped", self.instance.name)

    async def _stop_parts(self) -> None:
        for hook in self.stop_hooks:
            try:
                await hook()
            except Exception:  # noqa: BLE001 - the broker still has to close its group
                log.exception("stop hook %r failed", hook)
        if self.registrar is not None:
            await self.registrar.close(unregister=True)
        if self.ctx is not None:
            await self.ctx.close()
        if self.server is not None:
            await self.server.close()
        if self.group is not None:
            self.group.on_role_change = None
            self.group.on_commit = None
            await self.group.close()

    async def serve(self, stop: asyncio.Event) -> int:
        """Serve until ``stop`` is set (0) or a fatal error (1); then close."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.fatal.wait()),
                 asyncio.ensure_future(self.server.fatal.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        code = 0
        if self.server.fatal.is_set() or self.fatal.is_set():
            reason = self.fatal_reason or f"invariant violated: {self.server.fatal_error}"
            log.critical("broker %s stops: %s", self.instance.name, reason)
            code = 1
        await self.close()
        return code

    # --- callbacks from the group --------------------------------------------------------------------

    def _on_role_change(self, role: str, term: int, leader_id: int | None) -> None:
        ctx = self.ctx
        leader = ctx.leader_instance()
        log.info("%s is %s in term %d (leader: %s)", self.instance.name, ctx.role_name(), term,
                 leader.name if leader else "none")
        failed = getattr(self.group, "failed", None)
        if failed is not None and not self.fatal.is_set():
            self.fatal_reason = f"replica failed: {failed}"
            self.fatal.set()
        self.registrar.trigger()
        ctx.waiters.wake_all()  # suspended pulls re-check: a follower answers differently from a leader
        if ctx.is_leader():
            ctx.spawn(ctx.ensure_default_topic(), "creating the default topic")
        self._call_listeners(self.role_listeners, role, term, leader_id)

    def _on_commit(self) -> None:
        store = self.group.store
        self.ctx.waiters.notify_from(store.max_offset, store.queues.take_grown())
        self._call_listeners(self.commit_listeners)

    @staticmethod
    def _call_listeners(listeners: list[Callable], *args) -> None:
        for listener in listeners:
            try:
                listener(*args)
            except Exception:  # noqa: BLE001 - an extension must not break the Raft loop's callback
                log.exception("listener %r failed", listener)

    def describe(self) -> Registration:
        """This instance's registration as of now (role, term and topics read afresh)."""
        ctx = self.ctx
        topics = {name: TopicEntry(cfg.read_queue_nums, cfg.write_queue_nums, cfg.perm, cfg.topic_sys_flag)
                  for name, cfg in ctx.topic_configs().items()}
        return Registration(cluster_name=self.layout.cluster, broker_name=ctx.broker_name,
                            broker_addr=self.instance.addr, broker_id=ctx.broker_id(),
                            ha_server_addr=self.instance.raft_addr, raft_term=self.group.term, topics=topics)


# --- the command line ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse would print the usage too)
        raise UserError(f"{message} (see --help)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="python -m mqbench.broker.server.main",
                     description="Run one replica of one broker group of a layout until SIGTERM/SIGINT.")
    parser.add_argument("--layout", required=True, help="built-in layout name or path to a layout .toml")
    parser.add_argument("--port-offset", type=int, default=0, help="move every port of the layout by N")
    parser.add_argument("--instance", required=True, help="GROUP/nK: which replica of which group this is")
    parser.add_argument("--store", required=True, help="the store folder (created if missing)")
    parser.add_argument("--durability", choices=DURABILITIES, default="memory",
                        help="memory: a majority holds an entry in the page cache (survives kill -9, not a power "
                             "loss; nothing is fsynced on a timer, a clean stop fsyncs everything); "
                             "fsync: a majority fsynced it")
    parser.add_argument("--store-version", default="v5-dledger", choices=[v for v in versions.STORE_VERSIONS
                                                                           if versions.is_dledger(v)])
    parser.add_argument("--log-level", default="info", type=str.lower, choices=LOG_LEVELS)
    parser.add_argument("--delay", choices=("on", "off"), default="on",
                        help="on: deliver delay-level and timer messages (the delay service runs on the leader); "
                             "off: store them as sent, like a broker without the feature")
    parser.add_argument("--cluster-secret-file", default=None,
                        help="the cluster secret (mqbench cluster up writes DIR/cluster.secret, mode 0600): "
                             "authenticates every Raft frame and signs the name server registrations")
    parser.add_argument("--acl", default=None, metavar="FILE",
                        help="RocketMQ's plain_acl.yml: check every client request against its accounts "
                             "(accessKey/secretKey signatures, topic and group permissions); default: off")
    parser.add_argument("--grpc", choices=("on", "off"), default="on",
                        help="on: serve RocketMQ 5 gRPC clients (apache.rocketmq.v2.MessagingService) on the "
                             "instance's client port + 2, when the grpc extra is installed (pip install "
                             "'mqbench[grpc]'; without it the broker says so once and serves remoting only)")
    parser.add_argument("--fifo-groups", default="", metavar="PATTERNS",
                        help="comma-separated glob patterns of consumer groups that consume in order "
                             "(RocketMQ's consumeMessageOrderly): gRPC clients of such a group get "
                             "subscription.fifo and orderly POP")
    parser.add_argument("--register-interval-ms", type=int, default=INTERVAL_MS_DEFAULT,
                        help="how often to register with the name server")
    parser.add_argument("--connections-max", type=int, default=0,
                        help="client connections served at once; more are closed at once (0: the open-file "
                             "limit minus a reserve for the store, see the README)")
    parser.add_argument("--disk-free-min-mb", type=int, default=64,
                        help="refuse writes (SERVICE_NOT_AVAILABLE, retriable; reads go on) while the store's disk "
                             "has less free space than this (0: only when a write fails)")
    args = parser.parse_args(argv)
    if not -60000 <= args.port_offset <= 60000:
        raise UserError(f"--port-offset {args.port_offset} is out of range")
    if args.register_interval_ms <= 0:
        raise UserError("--register-interval-ms must be positive")
    if args.connections_max < 0 or args.disk_free_min_mb < 0:
        raise UserError("--connections-max and --disk-free-min-mb must be 0 or more")
    return args


async def _run(args: argparse.Namespace) -> int:
    layout = load_layout(args.layout).with_port_offset(args.port_offset)
    for port in (layout.namesrv_port, *(p for i in layout.instances for p in (i.port, i.raft_port))):
        if not 0 < port < 65536:
            raise UserError(f"--port-offset {args.port_offset} moves port {port} out of range")
    secret = read_secret_file(args.cluster_secret_file) if args.cluster_secret_file else None
    broker = Broker(layout, args.instance, args.store, durability=args.durability, version=args.store_version,
                    register_interval_ms=args.register_interval_ms, cluster_secret=secret,
                    acl=load_acl_file(args.acl) if args.acl else None,
                    group_options={"disk_free_bytes_min": args.disk_free_min_mb * 1024 * 1024},
                    server_limits=ServerLimits(connections_max=args.connections_max or None))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):   # before starting: a signal during start-up stops it cleanly
        loop.add_signal_handler(sig, stop.set)
    watch_parent(loop, stop.set)    # an embedded cluster's broker ends with the command that owns it
    await broker.start()
    if args.delay == "on":
        from mqbench.broker.timer import attach_to_broker

        attach_to_broker(broker)
    from mqbench.broker.pop.service import attach_to_broker as attach_pop

    attach_pop(broker)      # after the delay service: a checkpoint waits in the timer store
    if args.grpc == "on":
        from mqbench.broker.grpc import attach_to_broker as attach_grpc

        broker.fifo_groups = tuple(p for p in args.fifo_groups.split(",") if p.strip())
        try:
            await attach_grpc(broker)   # after POP: ReceiveMessage/Ack/ChangeInvisibleDuration use ctx.pop
        except BaseException:
            await broker.close()
            raise
    settle_after_startup()   # start-up is over: short, rare collector pauses (mqbench.gc_pauses)
    watch("broker")          # MQBENCH_LOOP_STALLS=DIR: count and explain loop stalls (mqbench.loop_stalls)
    hop_trace.start("broker")   # MQBENCH_HOP_TRACE=DIR: per-hop timings of sends (mqbench.hop_trace)
    profile = start_profile(args.instance, loop)   # MQBENCH_PROFILE=DIR (mqbench.profiling)
    try:
        return await broker.serve(stop)
    finally:
        if profile is not None:
            profile.stop()


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    use_event_loop()
    try:
        return asyncio.run(_run(args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.strerror or exc}"
              + (f" ({exc.filename})" if getattr(exc, "filename", None) else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
