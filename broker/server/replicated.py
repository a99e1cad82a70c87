"""``ReplicatedGroup``: one replica of one broker group, a Raft node whose log IS the store's commitlog.

The parts, one concern each: ``raft.driver.RaftDriver`` runs the Raft core (ticks, messages, the
Ready protocol); ``store.raft_storage.RaftLogStorage`` is the core's storage, the store's
``ReplicatedCommitLog`` (``store.replicated``); ``applier.Applier`` applies committed entries (the
state machine); ``proposals.Proposals`` holds the pending writes; ``leadership.Leadership`` follows
the role; ``read_gate``/``write_gate`` decide when reads and writes are served. This class opens
and closes them and takes the writes.

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
  PutResult``: the record(s) are built and checked on the leader (``store.replicated.prepare_record``:
  UserError before anything reaches the log; the metadata topic is refused), proposed, and the
  call returns once they are committed (a majority has them: in its page cache with ``memory``,
  fsynced with ``fsync``) and applied here. ``PutResult(msg_id, queue_id, queue_offset,
  physical_offset, count, msg_ids, index)``: offsets of the first record, read back from the stored
  entry (every replica stamped the same); ``msg_id`` joins the records' offsetMsgIds with ",".
* ``prepare_put(msg) -> record`` then ``propose_puts([record, ...]) -> future``: ``put`` for many
  single messages at once (the sends of one read): each record is built and checked alone (its
  errors are its own), and all are proposed as ONE proposal; the future resolves with one
  ``PutResult`` per record once the last is committed and applied, or fails for all of them.
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
from typing import Callable

from mqbench.errors import MqbenchError, UserError
from mqbench.broker.raft.config import Durability, RaftConfig
from mqbench.broker.raft.driver import RaftDriver
from mqbench.broker.raft.node import RaftNode
from mqbench.broker.raft.transport import RaftTransport
from mqbench.broker.raft.types import NONE, Entry, ProposalDropped, Role
from mqbench.broker.raft.types import NotLeader
from mqbench.broker.raft.wire import DEFAULT_MAX_FRAME_BYTES
from mqbench.broker.formats.batch import BatchItem
from mqbench.broker.formats.configs import TopicConfig
from mqbench.broker.formats.record import Message
from mqbench.broker.formats.topics import validate_topic
from mqbench.broker.store.raft_storage import AppliedMark, RaftLogStorage
from mqbench.broker.store.store import Store

from .applier import Applier
from .entries import OffsetUpdate, TopicUpdate, check_offset_update, meta_message, refuse_meta_topic
from .leadership import Leadership
from .offset_snapshots import OffsetSnapshots
from .proposals import LeadershipLost, Proposals, PutResult
from .read_gate import ReadGate
from .write_gate import DISK_CHECK_MS, DISK_FREE_BYTES_MIN_DEFAULT, WriteGate

__all__ = ["LeadershipLost", "NotLeader", "PutResult", "ReplicatedGroup"]

log = logging.getLogger("mqbench.broker.replicated")

APPLIED_SAVE_MS = 5000
# one entry must fit in one transport frame, with room for the frame and entry headers
ENTRY_BYTES_MAX = DEFAULT_MAX_FRAME_BYTES - (1 << 16)


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
        mark = AppliedMark(store)
        self.node = RaftNode(config, self.storage, rng, applied=mark.index)
        self.applier = Applier(store, mark, self.node.log.applied)
        self._reads = ReadGate(self.node.log.last_index())
        self.gate = WriteGate(store.root)
        host, port = peers[self.self_id]
        self.transport = RaftTransport(self.self_id, {p: a for p, a in peers.items() if p != self.self_id},
                                       lambda m: None, host=host, port=port, secret=raft_secret)
        # apply through the instance: a fault injected into ReplicatedGroup._apply later takes effect
        self.driver = RaftDriver(self.node, self.storage, self.transport, apply=lambda entries: self._apply(entries),
                                 on_append=self._reads.truncating_from, on_ready=self._after_ready,
                                 on_tick=self._on_tick, on_failed=self._stop_failed, run_step=self._run_step)
        self.proposals = Proposals(self.self_id, store.store_host, lambda: self.node.lead, self.storage.stored_body,
                                   lambda lo, hi: [entry.data for entry in self.storage.entries(lo, hi)])
        self.leadership = Leadership(self.node, self.proposals)
        self.on_commit: Callable[[], None] | None = None
        self._creating: dict[str, asyncio.Future] = {}
        self._offsets = OffsetSnapshots(store, self._propose, self.proposals.lost)
        self._applied_save_ms = applied_save_ms
        self._since_save_ms = self._since_disk_ms = 0
        self._saving: asyncio.Task | None = None
        self._closed = False

    async def _start(self) -> None:
        try:
            await self.transport.start()
        except OSError as exc:
            raise UserError(f"cannot listen for Raft peers on {self.transport.host}:{self.transport.port}: "
                            f"{exc.strerror or exc}") from None
        self.driver.start()
        if len(self.config.peers) == 1:
            self.driver.campaign()     # a one-member group elects itself without waiting a timeout

    # -- state -------------------------------------------------------------------------------

    @property
    def failed(self) -> BaseException | None:
        """The error that stopped this replica (a broken invariant or a disk error), or None."""
        return self.driver.failed

    @property
    def stopped(self) -> bool:
        """``halt`` or ``close`` was called, or the replica failed."""
        return self.driver.stopped

    @property
    def applied_index(self) -> int:
        return self.applier.applied_index

    @property
    def put_count(self) -> int:
        return self.proposals.put_count

    @property
    def bytes_sent(self) -> int:
        return self.driver.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self.driver.bytes_received

    @property
    def raft_address(self) -> tuple[str, int]:
        return self.transport.host, self.transport.port

    def set_peer_address(self, peer: int, address: tuple[str, int]) -> None:
        self.transport.set_peer_address(peer, address)

    @property
    def role(self) -> str:
        return self.leadership.role

    @property
    def on_role_change(self) -> Callable[[str, int, int | None], None] | None:
        return self.leadership.on_change

    @on_role_change.setter
    def on_role_change(self, callback: Callable[[str, int, int | None], None] | None) -> None:
        self.leadership.on_change = callback

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
        return self.node.role == Role.LEADER and not self.driver.halted

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
        return await self.leadership.wait_leader(timeout_s)

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
        if self.stopped or self._closed:
            failed = self.driver.failed
            raise NotLeader(None, node_id=self.self_id, reason="replica stopped"
                            + (f" ({failed})" if failed is not None else ""))
        if self.node.role != Role.LEADER:
            raise NotLeader(self.node.lead, node_id=self.self_id)
        self.gate.check()

    @staticmethod
    def _check_entry_size(record: bytes) -> None:
        if len(record) > ENTRY_BYTES_MAX:
            raise UserError(f"a record of {len(record)} bytes is larger than a Raft entry may be "
                            f"({ENTRY_BYTES_MAX} bytes)")

    def _propose_entries(self, records: list[bytes]) -> list[int]:
        try:
            indexes = self.driver.propose(records)
        except ProposalDropped:
            raise NotLeader(self.node.transferee, node_id=self.self_id,
                            reason="leadership is being handed over") from None
        except NotLeader as exc:
            raise NotLeader(exc.leader, node_id=self.self_id) from None
        self.leadership.check()      # fails writes of an earlier term before their index is reused
        return indexes

    def _propose(self, records: list[bytes], counts: list[int] | None) -> asyncio.Future:
        self._check_writable()
        for record in records:
            self._check_entry_size(record)
        indexes = self._propose_entries(records)
        return self.proposals.add(self.node.term, indexes, counts)

    def writable(self) -> bool:
        """Whether a write would be taken now (``put`` would not raise NotLeader or WritesUnavailable
        before its own checks); nothing is counted."""
        return (not self.stopped and not self._closed and self.node.role == Role.LEADER
                and self.gate.reason is None)

    def prepare_put(self, msg: Message, *, writable: bool = False) -> bytes:
        """The record ``put(msg)`` would propose, built and checked (NotLeader, WritesUnavailable,
        UserError), not proposed: ``propose_puts`` proposes many of them at once. ``writable``:
        the caller saw ``writable()`` true in this loop turn (the sends of one read check it once)."""
        if not writable:
            self._check_writable()
        refuse_meta_topic(msg.topic)
        record = self.store.replicated.prepare_record(msg)
        self._check_entry_size(record)
        return record

    def prepare_fields_put(self, topic: str, queue_id: int, body: bytes, properties: dict[str, str],
                           wire_properties: bytes, *, flag: int, sysflag: int, born_timestamp_ms: int,
                           born_host: tuple[str, int], reconsume_times: int, writable: bool = False) -> bytes:
        """``prepare_put`` of the message with these fields, without building it
        (``ReplicatedCommitLog.prepare_fields_record``: the same record)."""
        if not writable:
            self._check_writable()
        refuse_meta_topic(topic)
        record = self.store.replicated.prepare_fields_record(
            topic, queue_id, body, properties, wire_properties, flag=flag, sysflag=sysflag,
            born_timestamp_ms=born_timestamp_ms, born_host=born_host, reconsume_times=reconsume_times)
        self._check_entry_size(record)
        return record

    def propose_puts(self, records: list[bytes], counts: list[int] | None = None) -> asyncio.Future:
        """Propose ``records`` (from ``prepare_put``, ``prepare_fields_put`` or
        ``prepare_batch_put``, in order) as as many writes in ONE proposal (one Raft append, one
        Ready, one settle): the future resolves, once the last is committed and applied, with one
        ``PutResult`` per record, or fails for all of them (``Proposals.add_each``); ``counts``:
        the messages each record holds (None: one each). Raises NotLeader / WritesUnavailable at
        once as ``put`` does."""
        self._check_writable()
        indexes = self._propose_entries(records)
        future = self.proposals.add_each(self.node.term, indexes, counts)
        self.driver.ready_now()     # the APPs go out in this read, not the Raft loop's next turn
        return future

    async def put(self, msg: Message) -> PutResult:
        """Store one message through the group (module doc)."""
        record = self.prepare_put(msg)
        indexes = self._propose_entries([record])
        return await self.proposals.add(self.node.term, indexes, [1])

    async def put_batch(self, topic: str, queue_id: int, items: list[BatchItem] | int, *, consolidate: bool,
                        properties: dict[str, str] | None = None, sysflag: int = 0, flag: int = 0,
                        born_timestamp_ms: int = 0, born_host: tuple[str, int] = ("127.0.0.1", 0),
                        inner_body: bytes | None = None) -> PutResult:
        """Store a client batch (``Store.append_batch`` rules, ``inner_body`` included): one record
        when ``consolidate`` (a BatchCQ topic), else one record (one Raft entry) per message,
        proposed together (one Ready: they commit together unless the leader fails meanwhile).
        ``items`` may be the message count of a plain ``inner_body`` (``RecordBuilder.batch``)."""
        prepared = self.prepare_batch_put(topic, queue_id, items, consolidate=consolidate, properties=properties,
                                          sysflag=sysflag, flag=flag, born_timestamp_ms=born_timestamp_ms,
                                          born_host=born_host, inner_body=inner_body)
        indexes = self._propose_entries([r for r, _ in prepared])
        return await self.proposals.add(self.node.term, indexes, [n for _, n in prepared])

    def prepare_batch_put(self, topic: str, queue_id: int, items: list[BatchItem] | int, *, consolidate: bool,
                          properties: dict[str, str] | None = None, sysflag: int = 0, flag: int = 0,
                          born_timestamp_ms: int = 0, born_host: tuple[str, int] = ("127.0.0.1", 0),
                          inner_body: bytes | None = None, writable: bool = False,
                          wire_properties: bytes | None = None) -> list[tuple[bytes, int]]:
        """The records ``put_batch`` would propose, with the messages each holds, built and checked
        (NotLeader, WritesUnavailable, UserError), not proposed (``propose_puts`` proposes them).
        ``writable``: the caller saw ``writable()`` true in this loop turn; ``wire_properties``:
        exactly ``encode_properties(properties)`` when known (``prepare_batch_records``)."""
        if not writable:
            self._check_writable()
        refuse_meta_topic(topic)
        prepared = self.store.replicated.prepare_batch_records(
            topic, queue_id, items, consolidate=consolidate, properties=properties, flag=flag, sysflag=sysflag,
            born_timestamp_ms=born_timestamp_ms, born_host=born_host, inner_body=inner_body,
            wire_properties=wire_properties)
        for record, _ in prepared:
            self._check_entry_size(record)
        return prepared

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

    def note_offset(self, group: str, topic: str, queue_id: int, offset: int) -> None:
        """``commit_offset(..., lazy=True)`` for a caller that does not wait (a pull's commit
        offset): checked the same way (UserError, NotLeader), then it rides on the next offset
        snapshot without a future or Task of its own (``OffsetSnapshots.note``)."""
        check_offset_update(OffsetUpdate(group, topic, queue_id, offset, False))
        self._check_writable()
        self._offsets.note((group, topic, queue_id), offset)

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

    # -- the Raft loop (driven by ``driver``) ------------------------------------------------

    async def _run_step(self, what: str, step: Callable[[], object], in_thread: bool) -> object:
        return await self.gate.run(what, step, in_thread=in_thread, on_retry=self.leadership.check)

    def _on_tick(self) -> None:
        tick_ms = self.config.tick_ms
        self._since_save_ms += tick_ms
        self._since_disk_ms += tick_ms
        if self._since_disk_ms >= DISK_CHECK_MS:
            self._since_disk_ms = 0
            self.gate.look_at_disk()
        if self._since_save_ms >= self._applied_save_ms and (self._saving is None or self._saving.done()):
            self._since_save_ms = 0
            if self.applied_index > self.applier.mark.index:
                self._saving = asyncio.get_running_loop().create_task(self._save_mark(self.applied_index))

    async def _save_mark(self, index: int) -> None:
        try:
            await asyncio.to_thread(self.applier.save_mark, index)
        except (OSError, MqbenchError) as exc:     # the next save (or close) tries again
            log.warning("replica %s could not save %s: %s", self.self_id, self.applier.mark.path, exc)

    def _after_ready(self) -> None:
        self.leadership.check()
        self._reads.changed(self.reads_ready)   # applied, role or a truncation moved it

    def _stop_failed(self, exc: BaseException) -> None:
        log.error("replica %s of %s stopped: %s", self.self_id, self.store.root, exc, exc_info=exc)
        self.proposals.fail(f"replica stopped ({exc})")
        self.leadership.notify()

    def _apply(self, entries: list[Entry]) -> None:
        """Apply committed entries (``Applier``), then settle the writes waiting for them; safe to
        repeat after a resource error (``write_gate``)."""
        self.applier.apply(entries)
        self.proposals.settle(entries, self.applier.take_errors())
        if self.on_commit is not None:
            try:
                self.on_commit()
            except Exception:
                log.exception("on_commit callback failed")

    # -- leadership (``leadership.Leadership``) -----------------------------------------------

    def transfer_leadership(self, target: int) -> None:
        """Leader only: hand leadership to node ``target`` once it is caught up."""
        self._check_writable()
        self.driver.transfer_leadership(target)

    # -- stopping ----------------------------------------------------------------------------

    async def halt(self) -> None:
        """Stop ticking, applying and networking at once (the others see a crashed replica)."""
        if self.driver.halted:
            return
        self._offsets.stop()
        await self.driver.halt(then=lambda: self.proposals.fail("replica stopped"))

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
                await asyncio.to_thread(self.applier.save_mark, self.applied_index)
        finally:
            await asyncio.to_thread(self.store.close)
