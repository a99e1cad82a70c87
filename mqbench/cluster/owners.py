"""Which command owns an embedded cluster, its lifeline, and the folders of owners that died.

``lifeline_for(directory)`` is this process's ``mqbench.broker.lifeline.Lifeline`` for the cluster
in ``directory`` (``launcher.up(..., die_with_parent=True)`` spawns with it; ``release`` closes it
after ``down``). Such a folder records its owner in ``cluster.json`` (``owner_settings``: pid and
start time, so a recycled pid is never taken for it). ``stale_clusters(root)`` finds the cluster
folders directly under ``root`` whose owner is gone (the ``.work`` stores of a run that was
killed), ``remove_stale(root)`` stops whatever still runs there and deletes them. ``mqbench run``
does that for ``OUT/.work`` before it starts; ``mqbench cluster down --all-stale`` does it by hand.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from mqbench.broker.lifeline import Lifeline


_LIFELINES: dict[str, Lifeline] = {}


def lifeline_for(directory: str | os.PathLike) -> Lifeline:
    """This process's lifeline for the cluster in ``directory`` (made on first use)."""
    key = str(Path(directory).resolve())
    if key not in _LIFELINES:
        _LIFELINES[key] = Lifeline()
    return _LIFELINES[key]


def release(directory: str | os.PathLike) -> None:
    """Close the lifeline of ``directory``'s cluster (its processes have been stopped)."""
    lifeline = _LIFELINES.pop(str(Path(directory).resolve()), None)
    if lifeline is not None:
        lifeline.close()


def owner_settings() -> dict:
    """What a cluster folder records about the process that owns its cluster."""
    import psutil

    return {"owner_pid": os.getpid(), "owner_started_at_s": psutil.Process().create_time()}


def disown(directory: str | os.PathLike) -> None:
    """Forget the owner of the cluster folder ``directory`` (kept on purpose: never stale)."""
    from mqbench.cluster.processes import ClusterState
    from mqbench.errors import UserError

    try:
        state = ClusterState.load(directory)
    except UserError:
        return
    for key in ("owner_pid", "owner_started_at_s"):
        state.settings.pop(key, None)
    state.save()


def owner_alive(settings: dict) -> bool:
    """Whether the owner recorded in ``settings`` still runs (a folder without an owner: True)."""
    import psutil

    pid, started = settings.get("owner_pid"), settings.get("owner_started_at_s")
    if not isinstance(pid, int) or not isinstance(started, (int, float)):
        return True
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) <= 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stale_clusters(root: str | os.PathLike) -> list[Path]:
    """Cluster folders directly under ``root`` whose owning command is gone."""
    from mqbench.cluster.processes import STATE_FILE, ClusterState
    from mqbench.errors import UserError

    root = Path(root)
    found = []
    if not root.is_dir():
        return found
    for folder in sorted(p for p in root.iterdir() if (p / STATE_FILE).is_file()):
        try:
            state = ClusterState.load(folder)
        except UserError:
            continue
        if "owner_pid" in state.settings and not owner_alive(state.settings):
            found.append(folder)
    return found


def remove_stale(root: str | os.PathLike) -> list[Path]:
    """Stop what still runs of every stale cluster under ``root`` and delete its folder; returns them."""
    from mqbench.cluster.processes import ClusterState, stop

    removed = []
    for folder in stale_clusters(root):
        state = ClusterState.load(folder)
        if not state.settings.get("ray"):   # a run's Ray host actors ended with the run's driver
            stop(list(state.processes.values()), timeout_s=5.0)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    try:
        Path(root).rmdir()    # only when empty
    except OSError:
        pass
    return removed


DR_SCRATCH_PREFIX = "mqbench-dr-"   # ``mqbench dr``'s scratch folders in the temp directory


def remove_stale_scratch(temp_dir: str | os.PathLike | None = None) -> list[Path]:
    """Delete ``mqbench dr`` scratch folders (``$TMPDIR/mqbench-dr-*``) whose clusters' owners are
    all gone (a drill killed with SIGKILL cannot remove its own); returns them."""
    import tempfile

    from mqbench.cluster.processes import STATE_FILE

    removed = []
    for scratch in sorted(Path(temp_dir or tempfile.gettempdir()).glob(DR_SCRATCH_PREFIX + "*")):
        folders = {state.parent.parent for state in scratch.glob(f"*/*/{STATE_FILE}")}
        if folders and all(stale_clusters(parent) == sorted(p for p in parent.iterdir() if (p / STATE_FILE).is_file())
                           for parent in folders):
            for parent in folders:
                remove_stale(parent)
            shutil.rmtree(scratch, ignore_errors=True)
            removed.append(scratch)
    return removed
