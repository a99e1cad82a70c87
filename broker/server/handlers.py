"""What every request handler of the broker shares: ``BrokerContext``, and the handler table.

The handlers (one module per area: ``handlers_send``, ``handlers_pull``, ``handlers_offsets``,
``handlers_clients``, ``handlers_admin``, ``handlers_stats`` for mqadmin's read-only verbs,
``handlers_pop`` for RocketMQ 5's POP codes on ``ctx.pop``) are
``async def handler(ctx, cmd, channel)``; the
table built by ``build_handlers(ctx)`` binds them to ``ctx`` and wraps each one so that:

* ``Refused(code, remark)`` raised anywhere below becomes that response (a handler says "no"
  by raising, so helpers such as ``require_leader`` can refuse for it);
* ``NotLeader`` / ``ProposalDropped`` from the replicated group become the not-leader response
  (SYSTEM_ERROR 1, remark naming the leader, ext fields ``notLeader`` and ``leaderAddr``): the
  client refreshes its route and retries on the new leader;
* with ACL on (``ctx.acl``, an ``acl.AclChecker``), every request is checked first; a refusal is
  answered SYSTEM_ERROR with RocketMQ's ``AclException`` text, as a RocketMQ 4.9 broker does;
* ``WritesUnavailable`` (the store cannot make writes durable now: disk full, descriptors used
  up; ``write_gate``) becomes SERVICE_NOT_AVAILABLE 14 naming the cause, which clients retry;
* a ``UserError`` (a bad topic or group name such as ``../x``, a malformed batch or property
  string) or a ``HeaderError`` (a missing or non-numeric header field) becomes the handler
  area's ``bad_input_code`` with the error text. Nothing a client
  sends stops the broker; a malformed frame is the channel's business (it closes that connection).

Reads (pull, offsets, min/max) are served by any replica from its own store, which holds only
committed entries; writes (send, offset commits, topic configs) go through the replicated group
and are only accepted by the leader. A replica answers reads only once the group says they are
ready (``ReplicatedGroup.reads_ready``: a new leader has applied its term's no-op, a restarted
replica has applied again what it held); until then a read waits up to ``READ_WAIT_MS_MAX`` and is
then refused with SYSTEM_BUSY 2 (``require_readable``), which clients retry, instead of being
answered from an older state (a consumer sent back to offset 0, an offset read lower than before).
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from mqbench.broker.layout import Instance, Layout
from mqbench.broker.raft.types import NotLeader as RaftNotLeader
from mqbench.broker.raft.types import ProposalDropped, Role
from mqbench.broker.formats import codes
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.formats.headers import HeaderError
from mqbench.broker.server.acl import AclDenied
from mqbench.broker.server.clients import ClientRegistry
from mqbench.broker.server.longpoll import PullWaiters
from mqbench.broker.formats.record import Message
from mqbench.broker.store.flush import WritesUnavailable
from mqbench.broker.formats.configs import PERM_INHERIT, PERM_READ, PERM_WRITE, TopicConfig
from mqbench.broker.formats.topics import AUTO_CREATE_TOPIC_KEY_TOPIC, validate_topic
from mqbench.errors import UserError

log = logging.getLogger("mqbench.broker")

ACL_EXCEPTION = "org.apache.rocketmq.acl.common.AclException"   # the remark's prefix, as RocketMQ's
READ_WAIT_MS_MAX = 2000            # a read waits this long for a replica to become readable
AUTO_CREATE_QUEUE_NUMS = 4          # RocketMQ's defaultTopicQueueNums
MESSAGE_BYTES_MAX = 4 * 1024 * 1024  # RocketMQ's maxMessageSize: a body (or a whole batch body)
ROLE_NAMES = {Role.LEADER: "leader", Role.FOLLOWER: "follower", Role.CANDIDATE: "candidate",
              Role.PRE_CANDIDATE: "candidate"}


class Refused(Exception):
    """A handler's refusal: answered as ``code`` with ``remark`` (and ``ext_fields``)."""

    def __init__(self, code: int, remark: str, ext_fields: dict[str, object] | None = None):
        super().__init__(remark)
        self.code = code
        self.remark = remark
        self.ext_fields = ext_fields or {}


#: What the replicated group raises when this replica cannot take a write: the one ``NotLeader``
#: (``LeadershipLost`` is one too); ``ProposalDropped`` during a handover.
NOT_LEADER_ERRORS: tuple[type[BaseException], ...] = (RaftNotLeader, ProposalDropped)


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass
class Counters:
    """What GET_BROKER_RUNTIME_INFO reports besides the Raft state."""

    put_message_count: int = 0       # messages acknowledged by this broker since it started
    put_request_count: int = 0       # send requests acknowledged
    pull_request_count: int = 0
    pull_message_count: int = 0      # messages handed out by pulls
    refused_count: int = 0           # requests answered with an error code


@dataclass
class BrokerContext:
    """One broker instance's state as the handlers see it.

    ``group`` is the instance's ``ReplicatedGroup``: ``group.store`` for reads, ``group.put`` /
    ``put_batch`` / ``commit_offset`` / ``update_topic`` for writes (leader only), ``group.role``,
    ``group.term``, ``group.leader_id`` (a Raft node id, or None). ``on_topics_changed`` is called
    after a topic config was created (the registration is sent again at once, so the name server
    routes the new topic).
    """

    layout: Layout
    instance: Instance
    group: object
    clients: ClientRegistry = field(default_factory=ClientRegistry)
    waiters: PullWaiters = field(default_factory=PullWaiters)
    clock_ms: Callable[[], int] = wall_clock_ms
    monotonic_ms: Callable[[], int] = monotonic_ms
    rng: random.Random = field(default_factory=random.Random)
    counters: Counters = field(default_factory=Counters)
    message_bytes_max: int = MESSAGE_BYTES_MAX
    suspend_ms_max: int = 60_000
    on_topics_changed: Callable[[], Awaitable[bool] | None] | None = None
    #: Applied in order to every single message before it is put (not to batches, which cannot be
    #: delayed): the hook for the delay service's ``rewrite_for_delay`` (DELAY level / TIMER_*
    #: messages moved to the schedule or timer topic). A rewriter raising UserError refuses the send.
    #: A rewriter may carry ``acts_on(topic, properties) -> bool``: False promises it would return
    #: the message unchanged, so a send may skip building the ``Message`` (``may_rewrite``).
    message_rewriters: list[Callable[[Message], Message]] = field(default_factory=list)
    #: Extra GET_BROKER_RUNTIME_INFO fields from extensions (the delay service's counters).
    runtime_extras: list[Callable[[], dict[str, object]]] = field(default_factory=list)
    #: RocketMQ's plain ACL (``acl.AclChecker``), checked on every request; None: off.
    acl: object = None
    started_ms: int = 0
    #: the broker's settings as GET_BROKER_CONFIG reports them (``durability``, ``storeVersion``, ...)
    settings: dict[str, str] = field(default_factory=dict)
    #: (commitlog min offset, store time of the oldest message) cached for runtime info
    earliest_store_time: tuple[int, int] | None = None
    _creating: dict[str, asyncio.Future] = field(default_factory=dict)
    _background: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        from mqbench.broker.server.stats import BrokerStats

        self.not_leader_errors = NOT_LEADER_ERRORS
        self.peers = self.layout.group_instances(self.instance.group)
        self.started_ms = self.clock_ms()
        #: per-topic and per-group message counts over time (VIEW_BROKER_STATS_DATA, putTps, ...)
        self.stats = BrokerStats(self.layout.cluster, self.started_ms)

    # --- identity and roles -----------------------------------------------------------------------

    @property
    def broker_name(self) -> str:
        return self.instance.group

    @property
    def store(self):
        return self.group.store

    @property
    def store_host(self) -> tuple[str, int]:
        return (self.instance.address, self.instance.port)

    @property
    def replica_index(self) -> int:
        return [p.name for p in self.peers].index(self.instance.name)

    def role_name(self) -> str:
        role = self.group.role
        if isinstance(role, str):
            return role.lower()
        return ROLE_NAMES.get(Role(int(role)), "follower")

    def is_leader(self) -> bool:
        return self.role_name() == "leader"

    def broker_id(self) -> int:
        """RocketMQ brokerId: 0 for the leader, else the replica's position + 1 (n0 -> 1, n1 -> 2, ...),
        so a follower never claims id 0, the master's."""
        return 0 if self.is_leader() else self.replica_index + 1

    def leader_instance(self, leader: object = None) -> Instance | None:
        """The layout instance of ``leader`` (default: the group's current leader id). Raft node ids
        are the replica positions + 1; a layout replica id such as ``n1`` or an instance name is
        accepted too. None when no leader is known."""
        if leader is None:
            leader = self.group.leader_id
        if leader is None or leader == 0 or leader == "":
            return None
        for position, peer in enumerate(self.peers):
            if leader in (position + 1, peer.replica_id, peer.name):
                return peer
        return None

    def not_leader(self, what: str, leader_hint: object = None) -> Refused:
        """The not-leader refusal: SYSTEM_ERROR naming the leader, ext fields ``notLeader`` = true and
        ``leaderAddr`` (when one is known). ``leader_hint`` (e.g. from NotLeader: a transfer's
        target) is preferred to the current leader when it is another replica."""
        leader = self.leader_instance(leader_hint)
        if leader is None or leader.name == self.instance.name:
            leader = self.leader_instance()
        if leader is not None and leader.name == self.instance.name:
            leader = None     # this replica is handing leadership over: nobody to point at yet
        if leader is None:
            return Refused(codes.SYSTEM_ERROR, f"{self.instance.name} is not the leader of {self.broker_name} and no "
                                               f"other leader is known yet; {what} refused, retry shortly",
                           {"notLeader": True})
        return Refused(codes.SYSTEM_ERROR, f"{self.instance.name} is not the leader of {self.broker_name}; the leader "
                                           f"is {leader.name} at {leader.addr}; {what} refused",
                       {"notLeader": True, "leaderAddr": leader.addr})

    def require_leader(self, what: str) -> None:
        if not self.is_leader():
            raise self.not_leader(what)

    def reads_ready(self) -> bool:
        """This replica may answer reads (``ReplicatedGroup.reads_ready``)."""
        return self.group.reads_ready

    async def wait_readable(self, wait_ms: int) -> bool:
        """Wait up to ``wait_ms`` for ``reads_ready``; returns it."""
        return await self.group.wait_reads_ready(wait_ms)

    async def require_readable(self, what: str, wait_ms: int = READ_WAIT_MS_MAX) -> None:
        """Return once this replica may answer reads (waiting up to ``wait_ms``); else refuse
        with SYSTEM_BUSY, a code clients retry."""
        if not await self.wait_readable(wait_ms):
            raise Refused(codes.SYSTEM_BUSY, f"{self.instance.name} of {self.broker_name} has not applied its "
                                             f"replicated log yet (new leader or just restarted); {what} "
                                             "refused, retry shortly")

    # --- topics ------------------------------------------------------------------------------------

    def topic_config(self, topic: str) -> TopicConfig | None:
        return self.store.topic_config(topic)

    def topic_configs(self) -> dict[str, TopicConfig]:
        """Every topic config of this replica's store."""
        return dict(self.store.meta.topics.topics)

    async def ensure_topic(self, topic: str, queue_nums: int = AUTO_CREATE_QUEUE_NUMS,
                           perm: int = PERM_READ | PERM_WRITE) -> TopicConfig:
        """The topic's config, created with ``queue_nums`` queues (through the Raft log) when it does
        not exist yet (RocketMQ's autoCreateTopicEnable). Concurrent callers share one creation."""
        validate_topic(topic)
        cfg = self.topic_config(topic)
        if cfg is not None:
            return cfg
        pending = self._creating.get(topic)
        if pending is None:
            self.require_leader(f"creating topic {topic}")
            pending = asyncio.get_running_loop().create_future()
            self._creating[topic] = pending
            try:
                await self.group.ensure_topic(topic, queues=queue_nums, perm=perm)
                log.info("topic %s created with %d queues", topic, queue_nums)
                pending.set_result(None)
            except BaseException as exc:
                pending.set_exception(exc)
                pending.exception()
                raise
            finally:
                del self._creating[topic]
            self.topics_changed()
        else:
            await asyncio.shield(pending)
        cfg = self.topic_config(topic)
        if cfg is None:
            raise Refused(codes.SYSTEM_ERROR, f"topic {topic} was created but is not applied on "
                                              f"{self.instance.name} yet; retry")
        return cfg

    async def ensure_default_topic(self) -> None:
        """TBW102 with the inherit perm: the route clients without a topic route fall back to."""
        if self.topic_config(AUTO_CREATE_TOPIC_KEY_TOPIC) is None and self.is_leader():
            await self.group.ensure_topic(AUTO_CREATE_TOPIC_KEY_TOPIC, queues=AUTO_CREATE_QUEUE_NUMS,
                                         perm=PERM_READ | PERM_WRITE | PERM_INHERIT)
            self.topics_changed()

    def rewrite(self, msg: Message) -> Message:
        """``msg`` after every ``message_rewriters`` entry."""
        for rewriter in self.message_rewriters:
            msg = rewriter(msg)
        return msg

    def may_rewrite(self, topic: str, properties: dict[str, str]) -> bool:
        """False when no ``message_rewriters`` entry would change a single message to ``topic``
        with ``properties`` (each says so with ``acts_on``; one without it may change anything)."""
        for rewriter in self.message_rewriters:
            acts_on = getattr(rewriter, "acts_on", None)
            if acts_on is None or acts_on(topic, properties):
                return True
        return False

    def rewrite_fields(self, topic: str, queue_id: int, sysflag: int, properties: dict[str, str],
                       wire: str) -> tuple[str, int, dict[str, str], str] | None:
        """``rewrite`` of a single message given by its fields (``wire``: exactly
        ``encode_properties(properties)``), for rewriters that can do it on fields (``fields``,
        same arguments, the same result as a tuple or None): the (topic, queue id, properties,
        property string) to store; None when any rewriter that acts on it cannot (then build the
        ``Message`` and call ``rewrite``, which decides)."""
        for rewriter in self.message_rewriters:
            acts_on = getattr(rewriter, "acts_on", None)
            if acts_on is not None and not acts_on(topic, properties):
                continue
            fields = getattr(rewriter, "fields", None)
            moved = fields(topic, queue_id, sysflag, properties, wire) if fields is not None else None
            if moved is None:
                return None
            topic, queue_id, properties, wire = moved
        return topic, queue_id, properties, wire

    def topics_changed(self) -> Awaitable[bool] | None:
        """Tell the name server registration the topics changed. Returns what ``on_topics_changed``
        returns (the registrar: a future done once a registration covering the change ended), or None."""
        if self.on_topics_changed is not None:
            return self.on_topics_changed()
        return None

    # --- background work ---------------------------------------------------------------------------

    def spawn(self, coro: Awaitable, what: str) -> None:
        """Run ``coro`` without waiting for it; a failure is logged, never lost silently."""
        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except self.not_leader_errors as exc:
                log.info("%s: %s", what, exc)
            except Exception as exc:  # noqa: BLE001 - background work must not kill the broker
                log.warning("%s failed: %s", what, exc)

        task = asyncio.get_running_loop().create_task(guarded(), name=what)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        self.waiters.wake_all()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def peer_host(channel: Channel) -> tuple[str, int]:
    """The client's address as a (host, port) born host."""
    host, _, port = channel.peer.rpartition(":")
    try:
        return (host.strip("[]") or "127.0.0.1", int(port))
    except ValueError:
        return ("127.0.0.1", 0)


Handler = Callable[["BrokerContext", RemotingCommand, Channel], Awaitable["RemotingCommand | None"]]


def wrap(ctx: BrokerContext, handler: Handler, bad_input_code: int):
    """Bind ``handler`` to ``ctx`` and turn refusals and bad input into responses (module doc)."""
    async def bound(cmd: RemotingCommand, channel: Channel) -> RemotingCommand | None:
        if ctx.acl is not None:
            try:
                ctx.acl.check(cmd, peer_host(channel)[0])
            except AclDenied as exc:
                ctx.counters.refused_count += 1
                log.info("%s from %s refused by the ACL: %s", codes.request_name(cmd.code), channel.peer, exc)
                return cmd.response_to(codes.SYSTEM_ERROR, f"{ACL_EXCEPTION}: {exc}")
        try:
            return await handler(ctx, cmd, channel)
        except REFUSALS as exc:
            return refusal_response(ctx, cmd, exc, bad_input_code)

    bound.__name__ = getattr(handler, "__name__", "handler")
    return bound


#: What ``wrap`` answers as a refusal (``refusal_response``); anything else is the channel's business.
REFUSALS: tuple[type[BaseException], ...] = (Refused, WritesUnavailable, *NOT_LEADER_ERRORS, UserError, HeaderError)


def refusal_response(ctx: BrokerContext, cmd: RemotingCommand, exc: BaseException,
                     bad_input_code: int) -> RemotingCommand:
    """The response to ``cmd`` whose handling raised ``exc``, one of ``REFUSALS`` (module doc)."""
    ctx.counters.refused_count += 1
    if isinstance(exc, Refused):
        return cmd.response_to(exc.code, exc.remark, exc.ext_fields)
    if isinstance(exc, WritesUnavailable):     # disk full, descriptors used up: retriable, reads go on
        return cmd.response_to(codes.SERVICE_NOT_AVAILABLE, f"{codes.request_name(cmd.code)} refused by "
                                                            f"{ctx.instance.name}: {exc}")
    if isinstance(exc, ctx.not_leader_errors):
        hint = exc.leader_id if isinstance(exc, RaftNotLeader) else None
        refusal = ctx.not_leader(f"{codes.request_name(cmd.code)} ({exc})", hint)
        return cmd.response_to(refusal.code, refusal.remark, refusal.ext_fields)
    return cmd.response_to(bad_input_code, f"{codes.request_name(cmd.code)}: {exc}")


def wrap_batch(ctx: BrokerContext, handler: Callable, one: Callable):
    """Bind a batch handler (``async def handler(ctx, cmds, channel, one)`` -> a response per
    request, ``Channel``'s ``on_batch``) to ``ctx``; ``one`` is the wrapped single-request handler
    of the same code (``wrap``), for the requests the batch handler does not take itself."""
    async def bound_batch(cmds: list[RemotingCommand], channel: Channel) -> list:
        return await handler(ctx, cmds, channel, one)

    bound_batch.__name__ = getattr(handler, "__name__", "batch_handler")
    return bound_batch


def build_handlers(ctx: BrokerContext) -> dict[int, Callable]:
    """The broker's request table: code -> bound handler."""
    from mqbench.broker.server import (handlers_admin, handlers_clients, handlers_offsets, handlers_pop,
                                       handlers_pull, handlers_send, handlers_stats)

    table: dict[int, Callable] = {}
    for module in (handlers_send, handlers_pull, handlers_offsets, handlers_clients, handlers_admin, handlers_stats,
                   handlers_pop):
        for code, (handler, bad_input_code) in module.HANDLERS.items():
            table[code] = wrap(ctx, handler, bad_input_code)
    return table


def build_batch_handlers(ctx: BrokerContext, table: dict[int, Callable]) -> dict[int, Callable]:
    """The codes whose consecutive requests of one read are handled together (``handlers_send``'s
    and ``handlers_send_batch``'s ``BATCH_HANDLERS``: the sends) -> bound batch handler; ``table``
    is ``build_handlers(ctx)``."""
    from mqbench.broker.server import handlers_send, handlers_send_batch

    return {code: wrap_batch(ctx, handler, table[code])
            for module in (handlers_send, handlers_send_batch) for code, handler in module.BATCH_HANDLERS.items()}
