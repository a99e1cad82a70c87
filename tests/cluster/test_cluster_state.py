"""``cluster.json``: what ``mqbench cluster`` records about a running cluster, read back strictly.

A hand-edited or damaged file must give one clear error (``UserError``), never a traceback, and
a record must never make ``kill`` signal a process that is not ours (pid and start time both match).
"""
from __future__ import annotations

import copy
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from hypothesis import given, strategies as st

from mqbench.cluster import launcher
from mqbench.cluster.processes import ClusterState, ProcessRecord, ProcessStillAlive, send_signal, stop, wait_gone
from mqbench.errors import UserError

VALID = {
    "schema": "mqbench.cluster-state/1", "layout_source": "/x/raft3.toml", "layout_name": "raft3",
    "port_offset": 7, "settings": {"durability": "memory"},
    "processes": {
        "namesrv": {"name": "namesrv", "kind": "namesrv", "host": "h1", "room": "room1", "addr": "127.0.1.1:9883",
                    "workdir": "/tmp/n", "argv": ["python", "-m", "x"], "pid": 0, "started_at_s": 0.0},
        "broker-a/n0": {"name": "broker-a/n0", "kind": "broker", "host": "h1", "room": "room1",
                        "addr": "127.0.1.1:10918", "workdir": "/tmp/b", "argv": ["python"], "pid": 0,
                        "started_at_s": 0.0},
    },
}


def load(tmp_path, doc) -> ClusterState:
    (tmp_path / "cluster.json").write_text(json.dumps(doc))
    return ClusterState.load(tmp_path)


def test_valid_state_round_trips(tmp_path):
    state = load(tmp_path, VALID)
    assert state.port_offset == 7 and set(state.processes) == {"namesrv", "broker-a/n0"}
    state.save()
    assert json.loads((tmp_path / "cluster.json").read_text()) == VALID
    assert [r.name for r in state.select("broker-a")] == ["broker-a/n0"]
    assert [r.name for r in state.select("h1")] == ["broker-a/n0"]  # a host means its brokers
    assert [r.name for r in state.select("room1")] == ["broker-a/n0"]  # and so does a room
    assert [r.name for r in state.select("namesrv")] == ["namesrv"]
    with pytest.raises(UserError, match="choose from: broker-a/n0, h1, namesrv, room1"):
        state.select("../x")
    assert {r.name for r in state.select("all")} == {"namesrv", "broker-a/n0"}


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.update(schema="mqbench.cluster-state/0"), "schema"),
    (lambda d: d.pop("layout_source"), "'layout_source' is NoneType"),
    (lambda d: d.update(port_offset="7"), "'port_offset' is str"),
    (lambda d: d.update(port_offset=True), "'port_offset' is bool"),
    (lambda d: d.update(processes=[]), "'processes' is list"),
    (lambda d: d["processes"].pop("namesrv"), "no name server"),
    (lambda d: d["processes"]["broker-a/n0"].pop("pid"), "exactly the fields"),
    (lambda d: d["processes"]["broker-a/n0"].update(pid="12"), "'pid' is str"),
    (lambda d: d["processes"]["broker-a/n0"].update(kind="zookeeper"), "bad kind"),
    (lambda d: d["processes"]["broker-a/n0"].update(name="broker-b/n0"), "bad kind, name"),
    (lambda d: d["processes"]["broker-a/n0"].update(argv=["python", 3]), "argv"),
])
def test_damaged_state_is_named(tmp_path, mutate, words):
    doc = copy.deepcopy(VALID)
    mutate(doc)
    with pytest.raises(UserError) as info:
        load(tmp_path, doc)
    assert "cluster.json" in str(info.value) and words in str(info.value)


def test_not_json_and_not_an_object(tmp_path):
    (tmp_path / "cluster.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(UserError, match="corrupt"):
        ClusterState.load(tmp_path)
    with pytest.raises(UserError, match="schema"):
        load(tmp_path, [1, 2])


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=10)


@given(path=st.lists(st.sampled_from(["processes", "namesrv", "broker-a/n0", "settings", "pid", "argv", "kind",
                                      "port_offset", "schema", "name"]), min_size=1, max_size=3),
       value=json_values)
def test_fuzzed_state_loads_or_fails_cleanly(tmp_path_factory, path, value):
    doc = copy.deepcopy(VALID)
    node = doc
    for key in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            break
        node = node[key]
    if isinstance(node, dict):
        node[path[-1]] = value
    directory = tmp_path_factory.mktemp("state")
    try:
        state = load(directory, doc)
    except UserError:
        return
    assert isinstance(state.port_offset, int) and "namesrv" in state.processes


@pytest.mark.realproc
def test_a_recycled_pid_is_never_signalled(tmp_path):
    """A record whose start time does not match the live process with its pid is treated as gone."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        record = ProcessRecord(name="broker-a/n0", kind="broker", host="h1", room="r", addr="127.0.0.1:1",
                               workdir=str(tmp_path), argv=[], pid=proc.pid, started_at_s=1.0)
        assert not record.alive()
        assert send_signal([record], signal.SIGKILL) == []
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


# The thread group leader exits first while another thread still runs, as after a SIGKILL when a
# thread sits in an uninterruptible fsync on a loaded disk: the leader shows as a zombie, but the
# process still holds its files (the store lock) and sockets until its last thread is gone.
_LEADER_EXITS_FIRST = """
import ctypes, fcntl, os, sys, threading, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
release = threading.Event()
threading.Thread(target=release.wait, args=(20,)).start()
print("locked", flush=True)
ctypes.CDLL(None).pthread_exit(None)
"""


@pytest.mark.realproc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux thread groups")
def test_a_process_is_gone_only_when_its_last_thread_is(tmp_path):
    """``launcher.kill`` waits for ``alive()`` to turn false before anything reopens the killed
    broker's store or binds its ports: a zombie leader whose other thread still runs is alive
    (its lock is still held); it is gone once that thread ends. It counted as gone at once, and a
    test reopening a SIGKILLed broker's store found the lock held (CI at load 14-20)."""
    lock = tmp_path / "lock"
    proc = subprocess.Popen([sys.executable, "-c", _LEADER_EXITS_FIRST, str(lock)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"locked\n"
        record = ProcessRecord(name="broker-a/n0", kind="broker", host="h1", room="r", addr="127.0.0.1:1",
                               workdir=str(tmp_path), argv=[], pid=proc.pid,
                               started_at_s=psutil.Process(proc.pid).create_time())
        deadline = time.monotonic() + 5
        while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.01)
        assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE     # the leader has exited
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)     # ... and the lock is still held
        finally:
            os.close(fd)
        assert record.alive()
        assert wait_gone([record], 0.2) == [record]
        proc.kill()                                 # the last thread goes too
        assert wait_gone([record], 5) == [] and not record.alive()
    finally:
        proc.kill()
        proc.wait()


# A process that outlives SIGKILL, as one whose thread is stuck in the kernel does: its tracer asked
# to see it exit (PTRACE_O_TRACEEXIT), so SIGKILL stops it at that event until the tracer lets it
# go, which this one does when its stdin closes (then it reaps it). Prints the tracee's pid.
_OUTLIVES_SIGKILL = """
import ctypes, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_TRACEME, PTRACE_CONT, PTRACE_SETOPTIONS, PTRACE_O_TRACEEXIT = 0, 7, 0x4200, 0x40
pid = os.fork()
if pid == 0:
    if libc.ptrace(PTRACE_TRACEME, 0, None, None) != 0:
        os._exit(3)
    os.kill(os.getpid(), signal.SIGSTOP)
    while True:
        time.sleep(1)
_, status = os.waitpid(pid, os.WUNTRACED)
if not os.WIFSTOPPED(status) or libc.ptrace(PTRACE_SETOPTIONS, pid, None, ctypes.c_void_p(PTRACE_O_TRACEEXIT)) != 0 \
        or libc.ptrace(PTRACE_CONT, pid, None, None) != 0:
    print("no-ptrace", flush=True)
    os.kill(pid, signal.SIGKILL)
    sys.exit(0)
print(pid, flush=True)
sys.stdin.read()
os.kill(pid, signal.SIGKILL)
libc.ptrace(PTRACE_CONT, pid, None, None)
os.waitpid(pid, 0)
"""


@pytest.mark.realproc
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ptrace exit stops are Linux's")
def test_a_process_that_outlives_sigkill_is_a_named_error_not_left_behind(tmp_path):
    """``launcher.kill`` after SIGKILL waits for the process to be gone, sends SIGKILL once more,
    then raises ``ProcessStillAlive`` with its name and pid: it used to return as if the process
    were gone, and the next ``start`` met its store lock or ports. ``stop`` says so in its outcome."""
    tracer = subprocess.Popen([sys.executable, "-c", _OUTLIVES_SIGKILL], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        line = tracer.stdout.readline().strip()
        if line == b"no-ptrace":
            pytest.skip("this machine does not allow ptrace, which the test's SIGKILL-proof process needs")
        pid = int(line)
        doc = copy.deepcopy(VALID)
        doc["processes"]["broker-a/n0"].update(pid=pid, started_at_s=psutil.Process(pid).create_time())
        state = load(tmp_path, doc)
        record = state.processes["broker-a/n0"]
        started = time.monotonic()
        with pytest.raises(ProcessStillAlive, match=rf"broker-a/n0 \(pid {pid}\) still alive 0.2 s after SIGKILL") as caught:
            launcher.kill(state, "broker-a/n0", wait_s=0.1)
        assert caught.value.records == [record] and time.monotonic() - started >= 0.2
        assert record.alive()
        assert stop([record], timeout_s=0.1, kill_wait_s=0.1) == {"broker-a/n0": f"still alive 0.1 s after SIGKILL (pid {pid})"}
    finally:
        tracer.stdin.close()            # the tracer lets its tracee finish exiting and reaps it
        tracer.wait(10)
    assert not record.alive()
