"""Processes that die with the process that started them: the child's side and the parent's end.

A broker or name server started for an embedded cluster (``mqbench run``, ``mqbench dr``) must not
outlive the command, however the command ends: Ctrl-C, SIGTERM (``timeout``, a cancelled CI job),
SIGHUP (a closed ssh session) or SIGKILL. Two mechanisms, so either is enough:

* parent-death signal: on Linux the child asks the kernel (``prctl(PR_SET_PDEATHSIG, SIGTERM)``,
  through ctypes, between fork and exec) for SIGTERM when its parent dies. The kernel ties this to
  the *thread* that forked, so it is only set when spawning from the main thread (a cluster
  started from a worker thread would otherwise die with that thread).
* a watched pipe: the parent keeps the write end of a pipe (``Lifeline``); the child inherits the
  read end, named by the environment variable ``MQBENCH_LIFELINE_FD``, and ``watch_parent`` calls
  its stop when the pipe reads end-of-file, which happens once every writer is gone: when the
  parent died, however it died.

The broker and name-server mains call ``watch_parent(loop, stop)``; both mechanisms end in their
clean stop (SIGTERM is their stop signal). Without the variable nothing is watched
(``mqbench cluster up`` starts processes meant to outlive it).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from functools import partial

ENV_FD = "MQBENCH_LIFELINE_FD"
PR_SET_PDEATHSIG = 1


def _prctl():
    """libc's prctl, looked up in the parent (no import or dlopen between fork and exec), or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent(prctl, parent_pid: int) -> None:   # runs in the child, between fork and exec
    prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:   # the parent died before prctl: nobody would signal us
        os.kill(os.getpid(), signal.SIGTERM)


class Lifeline:
    """The parent's end. ``popen_kwargs()`` for every child that must die with this process."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()   # not inheritable: only children given read_fd get it
        self.parent_pid = os.getpid()
        self._prctl = _prctl()

    def popen_kwargs(self) -> dict:
        kwargs: dict = {"pass_fds": (self.read_fd,), "env": {ENV_FD: str(self.read_fd)}}
        if self._prctl is not None and threading.current_thread() is threading.main_thread():
            kwargs["preexec_fn"] = partial(_die_with_parent, self._prctl, self.parent_pid)
        return kwargs

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def watch_parent(loop, on_gone) -> bool:
    """In a child: call ``on_gone()`` once the parent's lifeline closes; False if none was given."""
    text = os.environ.pop(ENV_FD, "")
    if not text.isdigit():
        return False
    fd = int(text)

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            on_gone()

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    return True
