"""Raft replication in the DLedger style: the replicated log is the commitlog.

* ``node.RaftNode``: the sans-I/O core (ticks and messages in; a ``types.Ready`` of what to
  persist, send and apply out). ``config.RaftConfig`` and ``config.Durability`` (quorum in memory
  or quorum fsynced, with what each can lose).
* ``storage``: the ``Storage`` interface the core reads and ``MemoryStorage``. The storages on
  files live with the files: ``store.dledger_storage.DLedgerStorage`` (DLedger's data/index/currterm
  files) and ``store.raft_storage.RaftLogStorage`` (the broker store's commitlog); this package
  imports nothing from ``store``.
* ``wire`` (frames) and ``transport.RaftTransport`` (asyncio TCP); ``driver.RaftDriver``, the one
  asyncio driver of the core (ticks, messages, the Ready protocol), which the broker's
  ``server.replicated.ReplicatedGroup`` runs over the store's Raft log
  (``store.raft_storage.RaftLogStorage``, the store's ``ReplicatedCommitLog``).
* ``sim``: the deterministic fault simulator behind ``mqbench sim raft``.
"""
from .config import Durability, RaftConfig
from .node import RaftNode
from .storage import MemoryStorage, Storage
from .types import NONE, Entry, EntryKind, HardState, Message, MsgType, NotLeader, ProposalDropped, Ready, Role

__all__ = ["NONE", "Durability", "Entry", "EntryKind", "HardState", "MemoryStorage", "Message", "MsgType",
           "NotLeader", "ProposalDropped", "RaftConfig", "RaftNode", "Ready", "Role", "Storage"]
