"""Issue 16 finding 7: however ``mqbench run`` ends, it leaves no process, port or ``.work`` folder.

Real processes: the console script under ``timeout`` (SIGTERM to it and its process group, as a CI
job's time limit or a closed ssh session would), a terminal's Ctrl-C (SIGINT to the whole group),
and SIGKILL (nothing of the run can react; its brokers and name server must still end, and the
next ``mqbench cluster down --all-stale`` removes the folder). While the run runs, every process
it started and every port they listen on is recorded; afterwards none may be left.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

MQBENCH = [sys.executable, "-m", "mqbench"]


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)   # as in a terminal (a background job ignores it)


def _start(argv, tmp_path):
    return subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=_default_sigint)


def _watch(proc, until_s: float, brokers_wanted: int):
    """Descendants of ``proc`` (pids with start times) and the ports they listen on, recorded
    until ``until_s`` has passed and at least ``brokers_wanted`` brokers listen (or it ended)."""
    seen: dict[int, float] = {}
    ports: set[int] = set()
    deadline = time.monotonic() + 90
    started = time.monotonic()
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            children = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            break
        brokers = 0
        for child in children:
            try:
                seen[child.pid] = child.create_time()
                listening = [c.laddr.port for c in child.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
                if "mqbench.broker.server.main" in " ".join(child.cmdline()) and listening:
                    brokers += 1
                ports.update(listening)
            except psutil.Error:
                continue
        if time.monotonic() - started >= until_s and brokers >= brokers_wanted:
            break
        time.sleep(0.2)
    return seen, ports


def _left(seen: dict[int, float], ports: set[int], wait_s: float = 15.0):
    """(processes still alive, ports still accepting connections) after up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = []
        for pid, created in seen.items():
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - created) < 0.05 and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.Error:
                pass
        listening = []
        for port in ports:
            with socket.socket() as probe:
                probe.settimeout(0.2)
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    listening.append(port)
        if (not alive and not listening) or time.monotonic() > deadline:
            return alive, listening
        time.sleep(0.3)


@pytest.mark.realproc
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_timeout_of_a_run_leaves_nothing_running(tmp_path):
    proc = _start(["timeout", "15", *MQBENCH, "run", "orders", "--out", str(tmp_path / "res")], tmp_path)
    seen, ports = _watch(proc, until_s=0, brokers_wanted=3)
    assert seen and ports, "the run did not start its cluster"
    _out, err = proc.communicate(timeout=90)
    assert proc.returncode == 124, err          # timeout's "timed out"
    text = err.decode(errors="replace").replace("\r", "\n")
    assert "Traceback" not in text and "Task was destroyed" not in text and "Aborted" not in text, text
    assert "mqbench: error: interrupted by SIGTERM" in text
    assert _left(seen, ports) == ([], [])
    assert not (tmp_path / "res" / ".work").exists()


@pytest.mark.realproc
def test_ctrl_c_prints_one_line_and_stops_everything(tmp_path):
    proc = _start([*MQBENCH, "run", "orders", "--layout", "single", "--limits", "none", "--out", str(tmp_path / "res")], tmp_path)
    seen, ports = _watch(proc, until_s=4, brokers_wanted=1)
    os.killpg(proc.pid, signal.SIGINT)           # a terminal sends it to the whole foreground group
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    lines = [line for line in err.decode(errors="replace").replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("\x1b")]
    assert lines[-1:] == ["mqbench: error: interrupted by SIGINT; stopped what this command had started"], lines
    assert not any("Traceback" in line or "Task was destroyed" in line for line in lines), lines
    assert _left(seen, ports) == ([], [])
    assert not (tmp_path / "res" / ".work").exists()


@pytest.mark.realproc
def test_kill_9_of_a_run_leaves_no_process_and_its_folder_goes_with_all_stale(tmp_path):
    proc = _start([*MQBENCH, "run", "orders", "--layout", "single", "--limits", "none", "--out", str(tmp_path / "res")], tmp_path)
    seen, ports = _watch(proc, until_s=4, brokers_wanted=1)
    proc.kill()
    # The descendants must go (checked by _left below, which names them). Reading the pipes to their
    # end waits for every holder of them; if one outlives this wait, name it instead of a bare timeout
    # (a CI run once timed out here at 30 s, not reproduced since: the names are the first clue).
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        holders = [" ".join(psutil.Process(pid).cmdline())[:120] for pid in _left(seen, ports, wait_s=0)[0]
                   if psutil.pid_exists(pid)]
        proc.stdout.close()
        proc.stderr.close()
        raise AssertionError(f"60 s after kill -9 of the run, these still held its output: {holders}") from None
    assert _left(seen, ports) == ([], [])
    work = tmp_path / "res" / ".work"
    assert [p.name for p in work.iterdir()], "the killed run's cluster folder is the leftover"
    (tmp_path / "tmp").mkdir()       # its own temp directory: no other drill's scratch folder counts
    down = subprocess.run([*MQBENCH, "cluster", "down", "--all-stale", "--under", str(work)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "TMPDIR": str(tmp_path / "tmp")})
    assert down.returncode == 0 and "removed 1 stale" in down.stdout, down.stdout + down.stderr
    assert not work.exists()


def test_a_running_owners_cluster_is_not_stale_and_a_dead_owners_is(tmp_path):
    from mqbench.cluster.owners import owner_settings, stale_clusters
    from mqbench.cluster.processes import ClusterState, ProcessRecord

    def folder(name, settings):
        path = tmp_path / name
        path.mkdir()
        record = ProcessRecord(name="namesrv", kind="namesrv", host="h", room="r", addr="127.0.0.1:1",
                               workdir=str(path / "namesrv"), argv=["x"])
        ClusterState(path, "single", "single", 0, settings, {"namesrv": record}).save()
        return path

    folder("mine", owner_settings())
    folder("by-hand", {})                                   # `mqbench cluster up`: never stale
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = folder("gone", {"owner_pid": dead.pid, "owner_started_at_s": time.time() - 5})
    assert stale_clusters(tmp_path) == [gone]
    assert stale_clusters(Path(tmp_path / "none")) == []

    # a drill's scratch folder (``$TMPDIR/mqbench-dr-*/scheme-X/<layout>/``) goes once all its owners are gone
    from mqbench.cluster.owners import remove_stale_scratch

    temp = tmp_path / "temp"
    (temp / "mqbench-dr-a" / "scheme-A").mkdir(parents=True)
    (temp / "mqbench-dr-b" / "scheme-A").mkdir(parents=True)
    gone.rename(temp / "mqbench-dr-a" / "scheme-A" / "raft3")
    (tmp_path / "mine").rename(temp / "mqbench-dr-b" / "scheme-A" / "raft3")
    assert remove_stale_scratch(temp) == [temp / "mqbench-dr-a"]
    assert not (temp / "mqbench-dr-a").exists() and (temp / "mqbench-dr-b").exists()
