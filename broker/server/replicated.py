"""``ReplicatedGroup``: one replica of one broker group, a Raft node whose log IS the store's commitlog.

Opening (every group is a Raft group; a single replica is a one-member group, same code path)::

    group = await ReplicatedGroup.open(store_root, version="v5-dledger", self_id=1,
                                       peers={1: ("127.0.0.1", 10912), 2: (...), 3: (...)},
                                       durability="memory" | "fsync")

* ``self_id``: this replica's Raft node id (>= 1; layout replica ``nk`` is node ``k + 1``, see
  ``store.raft_storage.replica_node_id``); ``peers``: every member's Raft address, this one's included (it
  is bound; port 0 picks a free port, then ``raft_address`` tells which and ``set_peer_address``
  tells the others).
* ``store_host``: the broker's client address, written as STOREHOST into the records this
  replica builds as leader (and into their offsetMsgIds). ``clock_ms`` stamps records; ``rng``
  (a ``random.Random``) draws election timeouts; ``tick_ms``/``heartbeat_ms``/``election_ms``
  the Raft timing; ``preferred_leader``: node id the leadership moves to once it is caught up;
  ``raft_secret``: the cluster secret that authenticates every Raft frame (``raft.auth``; None:
  plain frames, for in-process tests only).

State: ``store`` (the ``Store``: read side for everybody), ``role`` ("leader", "follower" or
"candidate"), ``term``, ``leader_id`` (node id or None), ``commit_index``, ``applied_index``,
``leader_ready`` (leader and its own term's no-op applied: reads of offsets/configs are current),
``reads_ready`` (this replica may answer reads: see "Reads" below).
Callbacks (plain callables, run on the event loop, exceptions logged): ``on_role_change(role,
term, leader_id)`` on every change, ``on_commit()`` after committed entries were applied.

Writes (leader only; a follower or candidate raises ``NotLeader(leader_id)`` at once):

* ``await put(msg) -> PutResult`` and ``await put_batch(topic, queue_id, items, *, consolidate,
  properties=None, sysflag=0, flag=0, born_timestamp_ms=0, born_host=..., inner_body=None) ->
  PutResult``: the record(s) are built and checked on the leader (``ReplicatedCommitLog.prepare_record``:
  UserError before anything reaches the log; the metadata topic is refused), proposed, and the
  call returns once they are committed (a majority has them: in its page cache with ``memory``,
  fsynced with ``fsync``) and applied here. ``PutResult(msg_id, queue_id, queue_offset,
  physical_offset, count, msg_ids, index)``: offsets of the first record, read back from the stored
  entry (every replica stamped the same); ``msg_id`` joins the records' offsetMsgIds with ",".
* ``await commit_offset(group, topic, queue_id, offset, *, reset=False, lazy=False)``, ``await
  update_topic(cfg)`` (create or replace), ``await ensure_topic(name, queues=4, attributes=None,
  perm=6)`` (create unless it exists; concurrent calls share one entry): metadata entries (``entries`` module doc), applied in log order on
  every replica. An offset never moves back unless ``reset``. Commits are replicated as offset
  snapshots (``offset_snapshots``): one record per snapshot, carrying every offset committed since
  the previous one; ``lazy`` commits (piggybacked on pulls) wait up to ``offset_snapshot_ms``.
* A put that is pending when this replica stops being leader (or closes) fails with
  ``LeadershipLost`` (a ``NotLeader``): its outcome is unknown (the new leader may have it), the
  client retries. Proposals are batched: everything proposed while a Ready is being persisted goes
  into the next Ready (with ``fsync`` one fdatasync covers it, run in a worker thread so the event
  loop keeps serving the network).

Reads (pulls, offsets) wait for ``reads_ready`` (``await wait_reads_ready(timeout_ms) -> bool``):
a new leader has applied its term's no-op, a restarted replica what it held (``read_gate``).

Also: ``await wait_leader(timeout_s) -> node id``, ``transfer_leadership(node_id)``, ``stats()``
(``raftRole``, ``raftTerm``, ``raftLeaderId``, ``raftCommitIndex``, ``raftAppliedIndex``,
``putMessageCount``, ``raftBytesSent``/``raftBytesReceived`` as framed on the wire, ``storeBytes``),
``stopped``, ``failed`` (the exception that stopped this replica: a broken invariant or a disk
error; its writes then raise ``NotLeader``). Running short of disk space or descriptors is not a
failure: ``gate`` (``write_gate.WriteGate``) then refuses writes with ``WritesUnavailable`` while
the Raft loop retries the step that failed and reads go on; ``disk_free_bytes_min`` (64 MiB) is
the free space below which writes are refused before anything fails.

``await close()`` stops Raft, fails pending writes, saves the applied mark and closes the store.
``await halt()`` only stops Raft and the network (a crash as the other replicas see it); ``close``
still has to release the store.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
from dataclasses import dataclass
from typing import Callable

from mqbench.errors import InvariantViolation, MqbenchError, UserError
from mqbench.broker.raft.config import Durability, RaftConfig
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.transport import RaftTransport
from mqbench.broker.raft.types import NONE, Entry, EntryKind, Message as RaftMessage, ProposalDropped, Ready, Role
from mqbench.broker.raft.types import NotLeader as RaftNotLeader
from mqbench.broker.raft.wire import DEFAULT_MAX_FRAME_BYTES
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.configs import TopicConfig
from mqbench.broker.formats.record import Message, message_id, peek_fields
from mqbench.broker.store.store import Store
from mqbench.broker.formats.topics import validate_topic

from .entries import OffsetUpdate, TopicUpdate, apply_meta, check_offset_update, meta_message
from .group_types import LeadershipLost, NotLeader, PutResult, frame_bytes, is_meta_record, refuse_meta_topic
from .offset_snapshots import OffsetSnapshots
from mqbench.broker.store.raft_storage import AppliedMark, RaftLogStorage
from .read_gate import ReadGate
from .write_gate import DISK_CHECK_MS, DISK_FREE_BYTES_MIN_DEFAULT, WriteGate

__all__ = ["LeadershipLost", "NotLeader", "PutResult", "ReplicatedGroup"]

log = logging.getLogger("mqbench.broker.replicated")

ROLE_NAMES = {Role.LEADER: "leader", Role.FOLLOWER: "follower", Role.CANDIDATE: "candidate",
              Role.PRE_CANDIDATE: "candidate"}
APPLIED_SAVE_MS = 5000
TRANSPORT_CLOSE_S = 2.0
# one entry must fit in one transport frame, with room for the frame and entry headers
ENTRY_BYTES_MAX = DEFAULT_MAX_FRAME_BYTES - (1 << 16)


@dataclass
class _Waiter:
    term: int
    first: int
    counts: list[int] | None     # messages per record for puts; None for metadata
    future: asyncio.Future




class ReplicatedGroup:
    """See module doc. Build it with ``await ReplicatedGroup.open(...)``."""

    @classmethod
    async def open(cls, store_root: str | os.PathLike, *, version: str = "v5-dledger", self_id: int,
                   peers: dict[int, tuple[str, int]], durability: str | Durability = "memory",
                   clock_ms: Callable[[], int] | None = None, rng: random.Random | None = None,
                   store_host: tuple[str, int] = ("127.0.0.1", 10911), preferred_leader: int | None = None,
                   tick_ms: int = 50, heartbeat_ms: int = 100, election_ms: int = 1000,
                   commitlog_segment_bytes: int | None = None, applied_save_ms: int = APPLIED_SAVE_MS,
                   raft_secret: bytes | None = None,
                   disk_free_bytes_min: int = DISK_FREE_BYTES_MIN_DEFAULT) -> "ReplicatedGroup":
        try:
            durability = Durability(durability)
        except ValueError:
            raise UserError(f"durability {durability!r} is not memory or fsync") from None
        if self_id not in peers:
            raise UserError(f"node {self_id} is not among the peers {sorted(peers)}")
        config = RaftConfig.from_ms(self_id, sorted(peers), tick_ms=tick_ms, heartbeat_ms=heartbeat_ms,
                                    election_ms=election_ms, durability=durability,
                                    preferred_leader=preferred_leader or NONE)
        kwargs = {} if commitlog_segment_bytes is None else {"commitlog_segment_bytes": commitlog_segment_bytes}
        store = await asyncio.to_thread(Store.open, store_root, version, create=True, raft_mode=True,
                                        flush_policy="none", clock_ms=clock_ms, store_host=store_host, **kwargs)
        try:
            group = cls(store, config, peers, rng or random.Random(), applied_save_ms, raft_secret)
            group.gate.disk_free_bytes_min = disk_free_bytes_min
            group.gate.look_at_disk()
            await group._start()
        except BaseException:
            store.close()
            raise
        return group

    def __init__(self, store: Store, config: RaftConfig, peers: dict[int, tuple[str, int]],
                 rng: random.Random, applied_save_ms: int, raft_secret: bytes | None = None):
        self.store = store
        self.config = config
        self.self_id = config.node_id
        self.durability = config.durability
        self.storage = RaftLogStorage(store)
        self._mark = AppliedMark(store)
        self.node = RaftNode(config, self.storage, rng, applied=self._mark.index)
        self.applied_index = self.node.log.applied
        self._reads = ReadGate(self.node.log.last_index())
        self._meta_applied = self.applied_index      # metadata entries applied (a retried apply skips them)
        self.gate = WriteGate(store.root)
        host, port = peers[self.self_id]
        self.transport = RaftTransport(self.self_id, {p: a for p, a in peers.items() if p != self.self_id},
                                       self._on_message, host=host, port=port, secret=raft_secret)
        self.on_role_change: Callable[[str, int, int | None], None] | None = None
        self.on_commit: Callable[[], None] | None = None
        self.failed: BaseException | None = None
        self.put_count = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self._waiters: dict[int, _Waiter] = {}
        self._creating: dict[str, asyncio.Future] = {}
        self._offsets = OffsetSnapshots(store, self._propose, self._lost)
        self._apply_errors: dict[int, Exception] = {}
        self._wake = asyncio.Event()
        self._leader_known = asyncio.Event()
        self._seen = (self.node.role, self.node.term, self.node.lead)
        self._applied_save_ms = applied_save_ms
        self._saving: asyncio.Task | None = None
        self._tasks: list[asyncio.Task] = []
        self._halted = False
        self._closed = False

    async def _start(self) -> None:
        try:
            await self.transport.start()
        except OSError as exc:
            raise UserError(f"cannot listen for Raft peers on {self.transport.host}:{self.transport.port}: "
                            f"{exc.strerror or exc}") from None
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._tick_loop()), loop.create_task(self._run())]
        if len(self.config.peers) == 1:
            self.node.campaign()     # a one-member group elects itself without waiting a timeout
        self._wake.set()

    # -- state -------------------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        """``halt`` or ``close`` was called, or the replica failed."""
        return self._halted or self.failed is not None

    @property
    def raft_address(self) -> tuple[str, int]:
        return self.transport.host, self.transport.port

    def set_peer_address(self, peer: int, address: tuple[str, int]) -> None:
        self.transport.set_peer_address(peer, address)

    @property
    def role(self) -> str:
        return ROLE_NAMES[self.node.role]

    @property
    def term(self) -> int:
        return self.node.term

    @property
    def leader_id(self) -> int | None:
        return self.node.lead or None

    @property
    def commit_index(self) -> int:
        return self.node.commit_index

    @property
    def is_leader(self) -> bool:
        return self.node.role == Role.LEADER and not self._halted

    @property
    def leader_ready(self) -> bool:
        """Leader, and an entry of its own term is applied: metadata read here is current."""
        return self.is_leader and self.node.log.term(self.applied_index) == self.node.term

    @property
    def reads_ready(self) -> bool:
        """This replica may answer reads: nothing it answers is older than what it showed (``read_gate``)."""
        return (not self.stopped and not self._closed
                and self._reads.readable(self.applied_index, self.node.role != Role.LEADER or self.leader_ready))

    async def wait_reads_ready(self, timeout_ms: int) -> bool:
        """Wait up to ``timeout_ms`` for ``reads_ready``; returns it."""
        return await self._reads.wait(lambda: self.reads_ready, lambda: self.stopped, timeout_ms)

    async def wait_leader(self, timeout_s: float) -> int:
        """The leader's node id once one is known (asyncio.TimeoutError after ``timeout_s``)."""
        async def known() -> int:
            while not self.node.lead:
                self._leader_known.clear()
                await self._leader_known.wait()
            return self.node.lead
        return await asyncio.wait_for(known(), timeout_s)

    def stats(self) -> dict[str, int | str]:
        """Counters for runtime info (raftRole, raftTerm, raftLeaderId as a node id or "")."""
        return {"raftRole": self.role, "raftTerm": self.term, "raftLeaderId": self.leader_id or "",
                "raftCommitIndex": self.commit_index, "raftAppliedIndex": self.applied_index,
                "putMessageCount": self.put_count, "raftBytesSent": self.bytes_sent,
                "raftBytesReceived": self.bytes_received,
                "storeBytes": self.store.log.end_offset - self.store.log.min_offset,
                "writesRefusedReason": self.gate.reason or ""}

    # -- writes ------------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.failed is not None or self._closed or self._halted:
            raise NotLeader(None, node_id=self.self_id, reason="replica stopped"
                            + (f" ({self.failed})" if self.failed is not None else ""))
        if self.node.role != Role.LEADER:
            raise NotLeader(self.node.lead, node_id=self.self_id)
        self.gate.check()

    def _propose(self, records: list[bytes], counts: list[int] | None) -> asyncio.Future:
        self._check_writable()
        for record in records:
            if len(record) > ENTRY_BYTES_MAX:
                raise UserError(f"a record of {len(record)} bytes is larger than a Raft entry may be "
                                f"({ENTRY_BYTES_MAX} bytes)")
        try:
            indexes = self.node.propose_batch(records)
        except RaftNotLeader as exc:
            raise NotLeader(exc.leader, node_id=self.self_id) from None
        except ProposalDropped:
            raise NotLeader(self.node.transferee, node_id=self.self_id,
                            reason="leadership is being handed over") from None
        future = asyncio.get_running_loop().create_future()
        self._check_role()      # fails writes of an earlier term before their index is reused
        self._waiters[indexes[-1]] = _Waiter(self.node.term, indexes[0], counts, future)
        self._wake.set()
        return future

    async def put(self, msg: Message) -> PutResult:
        """Store one message through the group (module doc)."""
        self._check_writable()
        refuse_meta_topic(msg.topic)
        record = self.store.replicated.prepare_record(msg)
        return await self._propose([record], [1])

    async def put_batch(self, topic: str, queue_id: int, items: list[BatchItem], *, consolidate: bool,
                        properties: dict[str, str] | None = None, sysflag: int = 0, flag: int = 0,
                        born_timestamp_ms: int = 0, born_host: tuple[str, int] = ("127.0.0.1", 0),
                        inner_body: bytes | None = None) -> PutResult:
        """Store a client batch (``Store.append_batch`` rules, ``inner_body`` included): one record
        when ``consolidate`` (a BatchCQ topic), else one record (one Raft entry) per message,
        proposed together (one Ready: they commit together unless the leader fails meanwhile)."""
        self._check_writable()
        refuse_meta_topic(topic)
        prepared = self.store.replicated.prepare_batch_records(
            topic, queue_id, items, consolidate=consolidate, properties=properties, flag=flag, sysflag=sysflag,
            born_timestamp_ms=born_timestamp_ms, born_host=born_host, inner_body=inner_body)
        return await self._propose([r for r, _ in prepared], [n for _, n in prepared])

    async def commit_offset(self, group: str, topic: str, queue_id: int, offset: int, *, reset: bool = False,
                            lazy: bool = False) -> None:
        """Replicate a consumer offset; an offset not above the applied one is a no-op unless
        ``reset``. It rides on the next offset snapshot (``offset_snapshots``); ``lazy`` lets that
        snapshot wait up to ``offset_snapshot_ms`` after the previous one."""
        update = check_offset_update(OffsetUpdate(group, topic, queue_id, offset, reset))
        self._check_writable()
        if reset:
            await self._propose([self.store.replicated.prepare_record(meta_message(update))], None)
            return
        await self._offsets.commit((group, topic, queue_id), offset, lazy)

    @property
    def offset_snapshot_ms(self) -> int:
        return self._offsets.interval_ms

    @offset_snapshot_ms.setter
    def offset_snapshot_ms(self, value: int) -> None:
        self._offsets.interval_ms = value

    async def update_topic(self, cfg: TopicConfig) -> TopicConfig:
        """Create the topic or replace its config on every replica; returns the applied config."""
        return await self._topic(TopicUpdate(cfg, "upsert"))

    async def ensure_topic(self, name: str, *, queues: int = 4, attributes: dict[str, str] | None = None,
                           perm: int = 6) -> TopicConfig:
        """The topic's config, creating it (``queues`` read and write queues) when it does not exist."""
        existing = self.store.topic_config(validate_topic(name))
        if existing is not None:
            return existing
        creating = self._creating.get(name)
        if creating is None:
            # concurrent first sends to a new topic share one creation entry
            cfg = TopicConfig(topic_name=name, read_queue_nums=queues, write_queue_nums=queues, perm=perm,
                              attributes=dict(attributes or {}))
            creating = self._creating[name] = asyncio.ensure_future(self._topic(TopicUpdate(cfg, "create")))
            creating.add_done_callback(lambda task: (self._creating.pop(name, None),
                                                     task.cancelled() or task.exception()))
        return await asyncio.shield(creating)

    async def _topic(self, update: TopicUpdate) -> TopicConfig:
        cfg = update.config
        self._check_writable()
        self.store.meta._check_config(cfg)        # the store's own rules, before anything is proposed
        old = self.store.topic_config(cfg.topic_name)
        if update.mode == "upsert" and old is not None and old.is_batch_cq != cfg.is_batch_cq:
            raise UserError(f"topic {cfg.topic_name}: queue.type cannot change once the topic exists")
        await self._propose([self.store.replicated.prepare_record(meta_message(update))], None)
        return self.store.topic_config(cfg.topic_name)

    # -- the Raft loop -----------------------------------------------------------------------

    def _on_message(self, m: RaftMessage) -> None:
        if self._closed or self._halted or self.failed is not None:
            return
        self.bytes_received += frame_bytes(m)
        try:
            self.node.step(m)
        except InvariantViolation as exc:   # e.g. an entry that differs from the one held: stop
            self._stop_failed(exc)
            return
        self._wake.set()

    async def _tick_loop(self) -> None:
        period_s = self.config.tick_ms / 1000
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        since_save_ms = since_disk_ms = 0
        while True:
            next_tick += period_s
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            if loop.time() - next_tick > period_s:
                # the loop was stalled: drop the missed ticks (as Go's time.Ticker does) rather than
                # firing them in a burst that could start elections before queued heartbeats are read
                next_tick = loop.time()
            if self.failed is not None:
                return
            self.node.tick()
            self._wake.set()
            since_save_ms += self.config.tick_ms
            since_disk_ms += self.config.tick_ms
            if since_disk_ms >= DISK_CHECK_MS:
                since_disk_ms = 0
                self.gate.look_at_disk()
            if since_save_ms >= self._applied_save_ms and (self._saving is None or self._saving.done()):
                since_save_ms = 0
                if self.applied_index > self._mark.index:
                    self._saving = loop.create_task(self._save_mark(self.applied_index))

    async def _save_mark(self, index: int) -> None:
        try:
            await asyncio.to_thread(self._mark.save, self.store, index)
        except (OSError, MqbenchError) as exc:     # the next save (or close) tries again
            log.warning("replica %s could not save %s: %s", self.self_id, self._mark.path, exc)

    async def _run(self) -> None:
        node = self.node
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while node.has_ready():
                    rd = node.ready()
                    await self._handle(rd)
                    node.advance(rd)
                    self._check_role()
                    self._reads.changed(self.reads_ready)   # applied, role or a truncation moved it
                self._check_role()
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # an invariant broke or the disk failed: stop this replica
            self._stop_failed(exc)

    def _stop_failed(self, exc: Exception) -> None:
        if self.failed is not None:
            return
        log.error("replica %s of %s stopped: %s", self.self_id, self.store.root, exc, exc_info=True)
        self.failed = exc
        self._fail_waiters(f"replica stopped ({exc})")
        self._notify_role()

    async def _handle(self, rd: Ready) -> None:
        """The Ready protocol (``raft.types.Ready``): persist, sync, send, apply.

        One exception to "send after sync", as in Raft's thesis (10.2.1): a leader whose term and
        vote are already on disk sends its appends before its own fsync finishes, so the leader's
        and the followers' fsyncs overlap. Nothing it sends then depends on its own entries being
        durable; its own copy still counts towards the quorum only after the fsync (``advance``)."""
        persisted = self.storage.initial_state()
        gate = self.gate
        await gate.run("appending to the log", lambda: self._persist(rd), on_retry=self._check_role)
        early = rd.role == Role.LEADER and (rd.hard_state is None or (rd.hard_state.term, rd.hard_state.vote)
                                            == (persisted.term, persisted.vote))
        if early:
            self._send(rd.messages)
        if rd.must_sync and rd.entries:
            await gate.run("syncing the log", self.storage.sync, in_thread=True, on_retry=self._check_role)
        if not early:
            self._send(rd.messages)
        if rd.committed_entries:
            await gate.run("applying committed entries", lambda: self._apply(rd.committed_entries),
                           on_retry=self._check_role)

    def _persist(self, rd: Ready) -> None:
        """Entries and hard state of a Ready (safe to repeat: ``storage.append`` replaces a suffix)."""
        if rd.entries:
            self._reads.truncating_from(rd.entries[0].index)
            self.storage.append(rd.entries)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)

    def _send(self, messages: list[RaftMessage]) -> None:
        for m in messages:
            self.bytes_sent += frame_bytes(m)
            self.transport.send(m)

    # -- applying ----------------------------------------------------------------------------

    def _apply(self, entries: list[Entry]) -> None:
        """Apply committed entries; safe to repeat after a resource error (``write_gate``)."""
        store = self.store
        for entry in entries:
            if entry.index > self._meta_applied and entry.kind == EntryKind.NORMAL and is_meta_record(entry.data):
                store.replicated.commit(entry.index - 2)          # dispatch what precedes it first: log order
                error = apply_meta(store, entry.data, entry.index)
                if error is not None:
                    self._apply_errors[entry.index] = error
                self._meta_applied = entry.index
        store.replicated.commit(entries[-1].index - 1)
        self._meta_applied = max(self._meta_applied, entries[-1].index)
        self.applied_index = entries[-1].index
        done = [(e.index, e, self._waiters.pop(e.index)) for e in entries if e.index in self._waiters]
        for index, entry, waiter in done:
            error = self._apply_errors.pop(index, None)
            if waiter.future.done():
                continue
            if entry.term != waiter.term:
                waiter.future.set_exception(LeadershipLost(self.node.lead, node_id=self.self_id,
                                                           reason=f"entry {index} was replaced by a new leader"))
            elif error is not None:
                waiter.future.set_exception(error)
            elif waiter.counts is None:
                waiter.future.set_result(None)
            else:
                waiter.future.set_result(self._result(waiter.first, index, waiter.counts))
        self._apply_errors.clear()
        if self.on_commit is not None:
            try:
                self.on_commit()
            except Exception:
                log.exception("on_commit callback failed")

    def _result(self, first: int, last: int, counts: list[int]) -> PutResult:
        ids, head = [], None
        for index in range(first, last + 1):
            body = self.storage.stored_body(index)
            _, queue_id, queue_offset, physical_offset, _ = peek_fields(body, 0)
            if head is None:
                head = (queue_id, queue_offset, physical_offset)
            ids.append(message_id(self.store.store_host, physical_offset))
        count = sum(counts)
        self.put_count += count
        return PutResult(",".join(ids), head[0], head[1], head[2], count, ids, last)

    # -- leadership --------------------------------------------------------------------------

    def _check_role(self) -> None:
        node = self.node
        now = (node.role, node.term, node.lead)
        if now == self._seen:
            return
        self._seen = now
        if self._waiters:
            # a write of an earlier term can no longer be acknowledged here, even if this replica
            # is leader again: its entry may be overwritten by the new term's entries
            self._fail_waiters("leadership lost before the entry was committed",
                               keep_term=node.term if node.role == Role.LEADER else None)
        if node.lead:
            self._leader_known.set()
        self._notify_role()

    def _notify_role(self) -> None:
        if self.on_role_change is not None:
            try:
                self.on_role_change(self.role, self.term, self.leader_id)
            except Exception:
                log.exception("on_role_change callback failed")

    def _lost(self, reason: str) -> LeadershipLost:
        return LeadershipLost(self.node.lead, node_id=self.self_id, reason=reason)

    def _fail_waiters(self, reason: str, *, keep_term: int | None = None) -> None:
        """Fail the pending writes (those of ``keep_term`` stay)."""
        waiters = self._waiters
        self._waiters = {i: w for i, w in waiters.items() if w.term == keep_term}
        for waiter in waiters.values():
            if waiter.term != keep_term and not waiter.future.done():
                waiter.future.set_exception(LeadershipLost(self.node.lead, node_id=self.self_id, reason=reason))

    def transfer_leadership(self, target: int) -> None:
        """Leader only: hand leadership to node ``target`` once it is caught up."""
        self._check_writable()
        self.node.transfer_leadership(target)
        self._wake.set()

    # -- stopping ----------------------------------------------------------------------------

    async def halt(self) -> None:
        """Stop ticking, applying and networking at once (the others see a crashed replica)."""
        if self._halted:
            return
        self._halted = True
        self._offsets.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_waiters("replica stopped")
        try:
            await asyncio.wait_for(self.transport.close(), TRANSPORT_CLOSE_S)
        except asyncio.TimeoutError:
            # a writer task lost its cancellation (asyncio.wait_for in Python 3.11 can swallow one
            # that races with a connect); the timeout cancelled the stragglers again
            log.warning("replica %s: Raft transport took over %ss to close", self.self_id, TRANSPORT_CLOSE_S)

    async def close(self) -> None:
        """Stop (``halt``), save the applied mark and close the store (flushing it)."""
        if self._closed:
            return
        await self.halt()
        self._closed = True
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
        try:
            if self.failed is None:
                await asyncio.to_thread(self._mark.save, self.store, self.applied_index)
        finally:
            await asyncio.to_thread(self.store.close)
