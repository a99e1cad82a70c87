"""Storage format versions: what each means, our marker file, and detection of real stores.

``v4``: RocketMQ 4.x: plain ``commitlog/``, ConsumeQueue, the 18 delay levels
(``SCHEDULE_TOPIC_XXXX`` + ``delayOffset.json``), V1 records only, zlib the only codec.
``v5``: 5.x: compression-type sysflag bits, V2 records for long topics, BatchConsumeQueue for
BatchCQ topics, the timer store (``timerwheel``, ``timerlog/``) for arbitrary delays, and
``dataVersion`` with ``stateVersion`` in the JSON files.
``v4-dledger`` / ``v5-dledger``: the same records framed as DLedger entries in
``dledger-{selfId}/data/``.

Our own stores record their version in ``MARKER_FILE`` at the store root (a small JSON file).
A real RocketMQ store has no marker; ``detect_version`` then reads the evidence on disk.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from mqbench.errors import CorruptDataError, UserError

STORE_VERSIONS = ("v4", "v5", "v4-dledger", "v5-dledger")
MARKER_FILE = "mqbench-store.json"
MARKER_SCHEMA = "mqbench.store/1"
DEFAULT_VERSION = "v5-dledger"


def _check(version: str) -> str:
    if version not in STORE_VERSIONS:
        raise UserError(f"unknown store version {version!r} (one of {', '.join(STORE_VERSIONS)})")
    return version


def is_dledger(version: str) -> bool:
    """Records live in DLedger entries under ``dledger-{id}/data/``."""
    return _check(version).endswith("-dledger")


def major(version: str) -> int:
    """4 or 5."""
    return 4 if _check(version).startswith("v4") else 5


def has_timer_store(version: str) -> bool:
    return major(version) == 5


def has_batch_cq(version: str) -> bool:
    return major(version) == 5


def has_v2_records(version: str) -> bool:
    """V2 magic (2-byte topic length) for topics longer than 127 bytes."""
    return major(version) == 5


def has_compression_type_bits(version: str) -> bool:
    """Whether lz4/zstd may be named in sysflag bits 8-10 (4.x stores only zlib)."""
    return major(version) == 5


def has_state_version(version: str) -> bool:
    """5.x ``dataVersion`` carries ``stateVersion``; 4.x has counter and timestamp only."""
    return major(version) == 5


def checkpoint_bytes_used(version: str) -> int:
    """How much of the 4096-byte StoreCheckpoint a broker of this version fills (24 or 40)."""
    return 24 if major(version) == 4 else 40


def with_dledger(version: str, dledger: bool) -> str:
    base = "v4" if major(version) == 4 else "v5"
    return base + "-dledger" if dledger else base


def marker_bytes(version: str) -> bytes:
    return (json.dumps({"schema": MARKER_SCHEMA, "version": _check(version)}, indent=2) + "\n").encode()


def write_marker(root: str, version: str) -> str:
    """Write (atomically: temp file, fsync, rename) the version marker at ``root``; returns its path."""
    data = marker_bytes(version)
    path = os.path.join(root, MARKER_FILE)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_marker(root: str) -> str | None:
    """The version in our marker at ``root``, None when there is none; CorruptDataError if unreadable."""
    path = os.path.join(root, MARKER_FILE)
    try:
        with open(path, "rb") as f:
            raw = f.read(65536)
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
        version = doc["version"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise CorruptDataError("not a store version marker", where=path) from None
    if version not in STORE_VERSIONS:
        raise CorruptDataError(f"unknown store version {version!r}", where=path)
    return version


@dataclass
class Detection:
    """What ``detect`` found: the version and the evidence for it, one phrase each."""

    version: str
    evidence: list[str] = field(default_factory=list)
    dledger_dirs: list[str] = field(default_factory=list)


STORE_ENTRIES = ("commitlog", "consumequeue", "config", "checkpoint", "index", "batchconsumequeue", "timerwheel",
                 "timerlog", "abort", "lock", MARKER_FILE)


def dledger_dirs(root: str) -> list[str]:
    """The ``dledger-{selfId}`` folders at ``root`` that hold a ``data`` folder, sorted."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return sorted(n for n in names if n.startswith("dledger-") and os.path.isdir(os.path.join(root, n, "data")))


def detect(root: str) -> Detection:
    """The store version at ``root`` with the evidence. Raises UserError when ``root`` is not a store.

    Order: our marker; else a RocketMQ store judged by DLedger folders (``dledger-*/data``), and
    5.x-only things: ``batchconsumequeue/``, ``timerwheel``, ``timerlog/``, ``config/timercheck``,
    a StoreCheckpoint with bytes beyond 24 in use, ``stateVersion``/``dataVersion`` in the JSON files.
    Without 5.x evidence the store is taken to be 4.x.
    """
    if not os.path.isdir(root):
        raise UserError(f"{root} is not a folder" if os.path.exists(root) else f"no such store folder: {root}")
    marker = read_marker(root)
    ddirs = dledger_dirs(root)
    if marker is not None:
        return Detection(marker, [f"{MARKER_FILE} says {marker}"], ddirs)
    try:
        names = set(os.listdir(root))
    except OSError as exc:
        raise UserError(f"cannot read {root}: {exc.strerror}") from None
    if not ddirs and not (names & {"commitlog", "consumequeue", "checkpoint", "config"}):
        raise UserError(f"{root} is not a RocketMQ or mqbench store (no commitlog/, dledger-*/, consumequeue/ or config/)")
    evidence = []
    if ddirs:
        evidence.append(f"DLedger folders {', '.join(ddirs)}")
    v5 = []
    for name in ("batchconsumequeue", "timerwheel", "timerlog"):
        if name in names:
            v5.append(f"{name} present")
    if os.path.exists(os.path.join(root, "config", "timercheck")):
        v5.append("config/timercheck present")
    v5 += _checkpoint_evidence(os.path.join(root, "checkpoint"))
    v5 += _json_evidence(os.path.join(root, "config"))
    evidence += v5 or ["no 5.x-only files or fields"]
    version = with_dledger("v5" if v5 else "v4", bool(ddirs))
    return Detection(version, evidence, ddirs)


def detect_version(root: str) -> str:
    """The store version at ``root`` (see ``detect``); raises UserError when it is not a store."""
    return detect(root).version


def _checkpoint_evidence(path: str) -> list[str]:
    try:
        with open(path, "rb") as f:
            head = f.read(40)
    except OSError:
        return []
    if len(head) >= 40 and any(head[24:40]):
        return ["checkpoint uses bytes 24-40 (masterFlushedOffset/confirmPhyOffset)"]
    return []


def _json_evidence(config_dir: str) -> list[str]:
    found = []
    for name in ("consumerOffset.json", "delayOffset.json", "topics.json", "subscriptionGroup.json"):
        path = os.path.join(config_dir, name)
        try:
            with open(path, "rb") as f:
                text = f.read(1 << 20).decode("utf-8", "replace")
        except OSError:
            continue
        if '"stateVersion"' in text:
            found.append(f"config/{name} has dataVersion.stateVersion")
        elif name in ("consumerOffset.json", "delayOffset.json") and '"dataVersion"' in text:
            found.append(f"config/{name} has dataVersion")
        elif name == "topics.json" and '"attributes"' in text:
            found.append("config/topics.json has topic attributes")
    return found
