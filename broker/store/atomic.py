"""Small file-safety primitives of the store: atomic replace with a backup, the store lock, the
abort marker.

* ``write_atomic(path, data)``: write ``path.tmp``, fsync it, rename the current ``path`` over
  ``path.bak`` (so the previous version survives), rename the tmp over ``path``, fsync the folder
  (``sync_dir=False``: the caller fsyncs it once after writing several files there;
  ``durable=False``: no fsync at all, for a file whose loss a power cut may cost). ``path`` and
  ``path.bak`` never hold a torn file: between the two renames only ``path.bak`` (the old version)
  is there, which ``read_with_backup`` reads. Two renames, no unlink and no hard link: the
  periodic writes (offsets, checkpoints) were a visible share of a loaded broker's profile.
  Callers write only what changed (``Metadata``, ``DLedgerLog.save_checkpoint``, the timer index).
* ``read_with_backup(path, parse)``: parse ``path``; if it is missing, empty or ``parse`` raises
  CorruptDataError/UserError/ValueError, try ``path.bak`` (RocketMQ's ConfigManager does the same).
  Returns None when neither exists.
* ``StoreLock``: an exclusive ``flock`` on ``{root}/lock`` (the file holds the 4 ASCII bytes
  ``lock``, like RocketMQ 5.x), so two processes never open one store. UserError when held.
* ``AbortMarker``: ``{root}/abort`` holds our PID while the store is open; if it is already there
  at open, the last run did not close cleanly and recovery must validate the tail.
"""
from __future__ import annotations

import fcntl
import os
import struct
from pathlib import Path
from typing import Callable, TypeVar

from mqbench.errors import UserError

from .segments import fsync_dir

T = TypeVar("T")

LOCK_FILE = "lock"
ABORT_FILE = "abort"


def write_atomic(path: str | os.PathLike, data: bytes, *, keep_backup: bool = True, sync_dir: bool = True,
                 durable: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically and durably (temp file, fsync, renames, fsync of the
    folder unless ``sync_dir`` is False), keeping the old file as ``.bak`` unless ``keep_backup`` is
    False (see module doc)."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    if keep_backup:
        try:
            os.replace(path, path + ".bak")
        except FileNotFoundError:
            pass
    os.replace(tmp, path)
    if sync_dir and durable:
        fsync_dir(os.path.dirname(path) or ".")


def read_with_backup(path: str | os.PathLike, parse: Callable[[bytes], T]) -> T | None:
    """``parse`` the bytes of ``path``, falling back to ``path.bak`` (see module doc)."""
    path = Path(path)
    first_error: Exception | None = None
    for candidate in (path, path.with_name(path.name + ".bak")):
        try:
            data = candidate.read_bytes()
        except FileNotFoundError:
            continue
        if not data.strip():
            continue
        try:
            return parse(data)
        except (UserError, ValueError) as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise UserError(f"{path}: cannot be parsed and has no usable .bak: {first_error}")
    return None


class StoreLock:
    """Exclusive lock on ``{root}/lock`` held while a store is open."""

    def __init__(self, root: str | os.PathLike):
        self.path = Path(root) / LOCK_FILE
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise UserError(f"{Path(root)}: the store is open in another process (lock held on {self.path})") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, b"lock", 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def lock_held(root: str | os.PathLike) -> bool:
    """Whether a process holds ``{root}/lock``, read-only: an mqbench broker's ``flock`` or a Java
    broker's POSIX record lock (``FileChannel.tryLock``), which Linux keeps apart. Nothing is
    written and no lock is taken for longer than the test."""
    path = Path(root) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            return True
        # F_GETLK: is there a POSIX lock that would block a write lock of the whole file?
        query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        try:
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        except OSError:
            return False
        return struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK
    finally:
        os.close(fd)


class AbortMarker:
    """The ``abort`` file: present while open; present at open means an unclean shutdown."""

    def __init__(self, root: str | os.PathLike):
        self.path = Path(root) / ABORT_FILE
        self.was_present = self.path.exists()

    def create(self, pid: int) -> None:
        """Write the marker (with ``pid``) durably before any data is written."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, str(pid).encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.path.parent)

    def remove(self) -> None:
        """Clean close: everything was flushed, so the next open needs no tail validation."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(self.path.parent)
