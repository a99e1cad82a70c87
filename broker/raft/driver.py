"""``RaftDriver``: the one asyncio driver of the Raft core (``RaftNode``) in a process.

It runs the node on the event loop: a tick every ``config.tick_ms`` (missed ticks after a stalled
loop are dropped, as Go's ``time.Ticker`` does, rather than fired in a burst that could start
elections before queued heartbeats are read), every message the ``RaftTransport`` receives, and
every ``Ready`` handled in the documented order (``types.Ready``):

1. persist: ``storage.append(rd.entries)`` (replacing a divergent suffix; ``on_append(first
   index)`` is called first) and ``storage.set_hard_state(rd.hard_state)``. A new term or vote is
   written in a worker thread (``set_hard_state`` with the commit point unchanged: the file and
   its fsync), the loop serving meanwhile; the Ready's messages wait for it (a vote is durable
   before it is answered), then the commit point moves on the loop;
2. sync: ``storage.sync()`` in a worker thread when ``rd.must_sync`` and there are entries, so the
   loop keeps serving while the fdatasync runs;
3. send: every message to the transport, once per Ready (the transport coalesces what is queued
   for a peer into one write). An append carries the entries as the storage now holds them
   (``storage.entries``), not as they were proposed: a storage that stamps entries on append (the
   broker's commitlog fills in queue and physical offsets) sends the bytes it wrote, so a follower
   writes the leader's bytes unchanged. One exception to "send after sync", as in Raft's thesis (10.2.1):
   a leader whose term and vote are already on disk sends its appends before its own fsync
   finishes, so the leader's and the followers' fsyncs overlap; its own copy still counts
   towards the quorum only after the fsync (``advance``);
4. apply: ``apply(rd.committed_entries)``; then ``node.advance(rd)`` and ``on_ready()``.

Proposals made while a Ready is handled go into the next one: everything proposed in one
event-loop turn becomes one append, one write per follower, one commit and one ``apply`` call.
``ready_now()`` handles the Readys at once instead, inside the caller, when the loop is idle and
they need no fsync: the transport calls it at the end of each read (an APP_RESP that commits,
an APP a follower appends) and the broker after proposing a read's sends, so neither waits for
the loop's next turn behind every other callback of the event loop's poll (see its doc).

Hooks (all optional, plain callables on the loop): ``apply(entries)``, ``on_append(first_index)``,
``on_ready()`` after each Ready, ``on_tick()`` after each tick, ``on_failed(exc)`` once when the
driver stops on an error (an ``InvariantViolation`` from ``node.step``, or a step that raised);
``run_step(what, fn, in_thread) -> awaitable`` runs steps 1, 2 and 4 (the default calls ``fn``,
in a worker thread when asked): the broker passes its write gate's retry there.

``propose(datas) -> [index]`` (``NotLeader``/``ProposalDropped`` from the node at once),
``transfer_leadership(node_id)``, ``campaign()``; ``bytes_sent``/``bytes_received`` count frames as
on the wire. ``start()`` begins ticking and handling; ``halt()`` stops both and closes the
transport (the storage belongs to the caller). ``failed`` is the error that stopped it.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

from mqbench import hop_trace
from mqbench.errors import InvariantViolation

from .node import RaftNode
from .transport import RaftTransport
from .types import Entry, Message, MsgType, Ready, Role
from .wire import frame_bytes

log = logging.getLogger("mqbench.broker.raft")

TRANSPORT_CLOSE_S = 2.0


def _trace_message(kind: str, peer: int, m: Message) -> None:
    """``hop_trace`` marks of an APP (its last entry) or APP_RESP (its index); others unmarked."""
    if m.type == MsgType.APP and m.entries:
        hop_trace.mark(kind, peer, m.entries[-1].index)
    elif m.type == MsgType.APP_RESP and not m.reject:
        hop_trace.mark(kind, peer, m.index)


async def _run_direct(what: str, fn: Callable[[], object], in_thread: bool) -> object:
    return await asyncio.to_thread(fn) if in_thread else fn()


class RaftDriver:
    """See module doc."""

    def __init__(self, node: RaftNode, storage, transport: RaftTransport, *,
                 apply: Callable[[list[Entry]], None] | None = None,
                 on_append: Callable[[int], None] | None = None,
                 on_ready: Callable[[], None] | None = None,
                 on_tick: Callable[[], None] | None = None,
                 on_failed: Callable[[BaseException], None] | None = None,
                 run_step: Callable[[str, Callable[[], object], bool], Awaitable[object]] | None = None):
        self.node = node
        self.storage = storage
        self.transport = transport
        self._apply = apply
        self._on_append = on_append
        self._on_ready = on_ready
        self._on_tick = on_tick
        self._on_failed = on_failed
        self._run_step = run_step or _run_direct
        self.failed: BaseException | None = None
        self.halted = False
        self.bytes_sent = 0
        self.bytes_received = 0
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._idle = False          # the Ready loop waits for a wake-up (``ready_now`` may run)
        self._handoff: list[Ready] = []     # Readys ``ready_now`` took and left to the loop
        transport.on_message = self._on_message
        transport.on_read = self.ready_now

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._tick_loop()), loop.create_task(self._run())]
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self.halted or self.failed is not None

    def propose(self, datas: list[bytes]) -> list[int]:
        """Append ``datas`` to the leader's log (one Ready carries them); their indexes."""
        indexes = self.node.propose_batch(datas)
        if hop_trace.ON and indexes:
            hop_trace.mark("P", indexes[0], indexes[-1])
        self._wake.set()
        return indexes

    def transfer_leadership(self, target: int) -> None:
        self.node.transfer_leadership(target)
        self._wake.set()

    def campaign(self) -> None:
        self.node.campaign()
        self._wake.set()

    async def halt(self, *, then: Callable[[], None] | None = None) -> None:
        """Stop ticking and handling at once, call ``then()``, and close the transport (a crash as
        peers see it)."""
        if self.halted:
            return
        self.halted = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if then is not None:
            then()
        try:
            await asyncio.wait_for(self.transport.close(), TRANSPORT_CLOSE_S)
        except asyncio.TimeoutError:
            # a writer task lost its cancellation (asyncio.wait_for in Python 3.11 can swallow one
            # that races with a connect); the timeout cancelled the stragglers again
            log.warning("node %s: Raft transport took over %ss to close", self.node.id, TRANSPORT_CLOSE_S)

    # -- input ---------------------------------------------------------------------------------

    def _on_message(self, m: Message) -> None:
        if self.stopped:
            return
        self.bytes_received += frame_bytes(m)
        if hop_trace.ON:
            _trace_message("R" if m.type == MsgType.APP else "K", m.src, m)
        try:
            self.node.step(m)
        except InvariantViolation as exc:   # e.g. an entry that differs from the one held: stop
            self._stop(exc)
            return
        if not self._idle and self.node.has_ready():
            # the loop is busy (it takes this Ready after its current one), or not started; an
            # idle loop is not woken: the transport calls ``ready_now`` at the end of this read
            self._wake.set()

    async def _tick_loop(self) -> None:
        tick_ms = self.node.config.tick_ms
        period_s = tick_ms / 1000
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while self.failed is None:
            next_tick += period_s
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
            if loop.time() - next_tick > period_s:
                next_tick = loop.time()     # stalled: drop the missed ticks (module doc)
            if self.failed is not None:
                return
            self.node.tick()
            self._kick()
            if self._on_tick is not None:
                self._on_tick()

    # -- the Ready loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        node = self.node
        try:
            while True:
                self._idle = not self._handoff
                await self._wake.wait()
                self._idle = False
                self._wake.clear()
                while self._handoff:
                    rd = self._handoff.pop(0)
                    await self._handle(rd)
                    node.advance(rd)
                    if self._on_ready is not None:
                        self._on_ready()
                while node.has_ready():
                    rd = node.ready()
                    await self._handle(rd)
                    node.advance(rd)
                    if self._on_ready is not None:
                        self._on_ready()
                if self._on_ready is not None:
                    self._on_ready()
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # an invariant broke or the disk failed: stop
            self._stop(exc)

    def ready_now(self) -> None:
        """Handle the node's Readys now, inside the caller, instead of in the Ready loop's next
        turn, when the loop is idle and they need no fsync (no new term or vote to persist, no
        entries to sync in fsync durability); called at the end of each transport read
        (``on_read``) and by a caller that proposed a read's worth of entries. Why: the loop's turn
        comes after every other callback the same poll of the event loop woke (pull answers,
        other connections' requests); on a leader under load that was 5-25 ms between a
        quorum's APP_RESP and the commit, apply and answer of every send, and again between a
        proposal and its APPs (``mqbench.hop_trace``). Whatever the caller registered to wait
        for the entries it proposed must be registered before (a one-replica group commits here).

        The same steps in the same order as ``_handle`` (persist, send, apply, then advance and
        ``on_ready``), without ``run_step``'s retry: a Ready that cannot be handled here, or whose
        step raises, is handed to the loop, which handles it whole through ``run_step`` (each step
        is safe to repeat; a message sent twice is one Raft ignores or answers again). An error
        outside the steps (the core's ``ready``/``advance``, ``on_ready``) stops the driver, as in
        the loop. A call from inside another (an apply that proposes and calls it again) returns at
        once: the outer call takes the new Ready after advancing its own."""
        if not self._idle or self.stopped:
            return
        node = self.node
        self._idle = False          # one Ready between ``ready`` and ``advance`` at a time
        try:
            while node.has_ready():
                rd = node.ready()
                persisted = self.storage.initial_state()
                if (rd.must_sync and rd.entries) or (rd.hard_state is not None and (
                        rd.hard_state.term, rd.hard_state.vote) != (persisted.term, persisted.vote)):
                    self._hand_to_loop(rd)
                    return
                try:
                    self._persist(rd)
                    self._send(self._as_stored(rd.messages, rd.entries) if rd.entries and rd.role == Role.LEADER
                               else rd.messages)
                    if rd.committed_entries and self._apply is not None:
                        if hop_trace.ON:
                            hop_trace.mark("C", rd.committed_entries[0].index, rd.committed_entries[-1].index)
                        self._apply(rd.committed_entries)
                        if hop_trace.ON:
                            hop_trace.mark("D", rd.committed_entries[0].index, rd.committed_entries[-1].index)
                except Exception:   # noqa: BLE001 - the loop retries it through run_step or stops on it
                    self._hand_to_loop(rd)
                    return
                node.advance(rd)
                if self._on_ready is not None:
                    self._on_ready()
        except Exception as exc:   # an invariant broke: stop, as the loop does
            self._stop(exc)
        finally:
            self._idle = not self._handoff

    def _kick(self) -> None:
        """After a tick: its Ready (heartbeats, a campaign) handled here when the loop is idle
        (``ready_now``), else the loop woken; a tick that changes nothing (most of a follower's)
        costs no Ready loop turn."""
        if self._idle:
            self.ready_now()
        elif self.node.has_ready():
            self._wake.set()

    def _hand_to_loop(self, rd: Ready) -> None:
        self._idle = False
        self._handoff.append(rd)
        self._wake.set()

    def _stop(self, exc: BaseException) -> None:
        if self.failed is not None:
            return
        self.failed = exc
        if self._on_failed is not None:
            self._on_failed(exc)

    async def _handle(self, rd: Ready) -> None:
        persisted = self.storage.initial_state()
        voted = rd.hard_state is not None and (rd.hard_state.term, rd.hard_state.vote) != (persisted.term, persisted.vote)
        await self._run_step("appending to the log", lambda: self._persist(rd, hard_state=not voted), False)
        if voted:
            # A new term or vote: its file is written and fsynced in a worker thread (tens of ms
            # under load, on the loop before), and this Ready's messages (a vote's answer) wait for
            # it, the loop does not; then the commit point moves here, on the loop (step 1).
            hard_state = rd.hard_state
            term_vote = hard_state._replace(commit=persisted.commit)
            await self._run_step("writing term and vote", lambda: self.storage.set_hard_state(term_vote), True)
            await self._run_step("appending to the log", lambda: self.storage.set_hard_state(hard_state), False)
        messages = self._as_stored(rd.messages, rd.entries) if rd.entries and rd.role == Role.LEADER else rd.messages
        early = rd.role == Role.LEADER and (rd.hard_state is None or (rd.hard_state.term, rd.hard_state.vote)
                                            == (persisted.term, persisted.vote))
        if early:
            self._send(messages)
        if rd.must_sync and rd.entries:
            await self._run_step("syncing the log", self.storage.sync, True)
        if not early:
            self._send(messages)
        if rd.committed_entries and self._apply is not None:
            entries = rd.committed_entries
            if hop_trace.ON:
                hop_trace.mark("C", entries[0].index, entries[-1].index)
            await self._run_step("applying committed entries", lambda: self._apply(entries), False)
            if hop_trace.ON:
                hop_trace.mark("D", entries[0].index, entries[-1].index)

    def _persist(self, rd: Ready, *, hard_state: bool = True) -> None:
        """Entries and (``hard_state``) hard state of a Ready (safe to repeat: ``storage.append``
        replaces a suffix)."""
        if rd.entries:
            if self._on_append is not None:
                self._on_append(rd.entries[0].index)
            self.storage.append(rd.entries)
            if hop_trace.ON:
                hop_trace.mark("F", rd.entries[0].index, rd.entries[-1].index)
        if hard_state and rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)

    def _as_stored(self, messages: list[Message], persisted: list[Entry]) -> list[Message]:
        """``messages`` with the entries of ``persisted`` that appends carry as the storage holds
        them (same index, term and kind; module doc). Appends of the same index range share one
        entries tuple, so the transport encodes it once for every follower."""
        lo, hi = persisted[0].index, persisted[-1].index
        stored: list[Entry] | None = None
        shared: dict[tuple[int, int], tuple[Entry, ...]] = {}
        out = []
        for m in messages:
            ents = m.entries
            if m.type == MsgType.APP and ents and ents[0].index <= hi and ents[-1].index >= lo:
                key = (ents[0].index, ents[-1].index)
                entries = shared.get(key)
                if entries is None:
                    if stored is None:
                        stored = self.storage.entries(lo, hi + 1)
                    end = lo + len(stored)
                    entries = shared[key] = tuple(
                        held if lo <= e.index < end and (held := stored[e.index - lo]).term == e.term
                        and held.kind == e.kind else e for e in ents)
                m = Message(m.type, m.src, m.dst, m.term, m.log_term, m.index, entries, m.commit, m.reject,
                            m.reject_hint, m.transfer)
            out.append(m)
        return out

    def _send(self, messages: list[Message]) -> None:
        for m in messages:
            self.bytes_sent += frame_bytes(m)
            self.transport.send(m)
            if hop_trace.ON:
                _trace_message("S" if m.type == MsgType.APP else "T", m.dst, m)
