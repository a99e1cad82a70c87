"""What one client may cost the remoting server (issue 18, finding 7), measured on a server in a
child process: its peak RSS (VmHWM) and whether a concurrent small request is still answered.

The bounds are ratios to the flood's size, not absolute figures, so they hold on a loaded machine:
before the limits, the partial-frame flood grew the server by about the flood's size and unread
pulls by about the responses' total size."""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mqbench.broker.formats.command import RemotingCommand, decode_frame_content, encode_command

HERE = Path(__file__).resolve().parent
MIB = 1024 * 1024


class Child:
    def __init__(self, limits: dict, response_bytes: int = 1024, lifetime_s: int = 60):
        args = {"limits": limits, "response_bytes": response_bytes, "lifetime_s": lifetime_s}
        self.proc = subprocess.Popen([sys.executable, str(HERE / "limits_server.py"), json.dumps(args)],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise AssertionError(f"server did not start: {line!r}")
        self.port = int(line)

    def status_kib(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field}")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def small_request_s(self) -> float:
        """Seconds a fresh connection waits for the answer to a small request."""
        started = time.monotonic()
        with self.connect() as s:
            s.sendall(encode_command(RemotingCommand.request(30, {})))
            head = _recv_exact(s, 4)
            cmd = decode_frame_content(_recv_exact(s, struct.unpack(">i", head)[0]))
            assert cmd.ext_fields.get("t") == "1"
        return time.monotonic() - started


def _recv_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _closed_by_peer(s: socket.socket, within_s: float) -> bool:
    s.settimeout(0.2)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if s.recv(1 << 20) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


@pytest.fixture
def child_factory():
    children = []

    def make(**kw) -> Child:
        children.append(Child(**kw))
        return children[-1]
    yield make
    for c in children:
        c.close()


def test_partial_frame_flood_is_bounded_by_the_global_budget(child_factory):
    budget = 16 * MIB
    child = child_factory(limits={"partial_frame_bytes_max": budget})
    time.sleep(0.3)
    base_kib = child.status_kib("VmRSS")
    conns, per_conn, flood = 16, 8 * MIB, 0
    socks = []
    for _ in range(conns):                 # each holds 8 MiB of a 15 MiB frame and never finishes it
        s = child.connect()
        socks.append(s)
        try:
            s.sendall(struct.pack(">i", 15 * MIB) + b"\0" * per_conn)
            flood += per_conn
        except OSError:
            pass                              # closed by the server: over the budget
    time.sleep(0.5)
    assert child.small_request_s() < 5
    growth = (child.status_kib("VmHWM") - base_kib) * 1024
    for s in socks:
        s.close()
    assert growth < 0.4 * conns * per_conn, f"{growth / MIB:.0f} MiB peak growth for a {conns * per_conn / MIB:.0f} MiB flood"


def test_pulls_never_read_stop_the_reading_and_memory_stays_bounded(child_factory):
    response = 512 * 1024
    child = child_factory(limits={"output_bytes_max": 4 * MIB, "output_stall_timeout_ms": 2000},
                          response_bytes=response)
    time.sleep(0.3)
    base_kib = child.status_kib("VmRSS")
    s = child.connect()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    pulls = 300
    s.sendall(b"".join(encode_command(RemotingCommand.request(11, {}, opaque=i + 1)) for i in range(pulls)))
    time.sleep(1.0)
    answered_s = child.small_request_s()               # another client is served meanwhile
    growth = (child.status_kib("VmHWM") - base_kib) * 1024
    assert growth < 0.3 * pulls * response, f"{growth / MIB:.0f} MiB peak growth, {pulls * response / MIB:.0f} MiB asked"
    assert answered_s < 5
    time.sleep(3.5)                                     # past output_stall_timeout_ms, still not reading
    got = 0
    s.settimeout(5)
    try:
        while chunk := s.recv(1 << 20):
            got += len(chunk)
    except OSError:
        pass
    s.close()
    assert got < 0.3 * pulls * response, "a connection that does not read its responses was never closed"


def test_idle_and_slow_loris_connections_are_closed(child_factory):
    child = child_factory(limits={"idle_timeout_ms": 1000, "frame_timeout_ms": 1500})
    idle = [child.connect() for _ in range(5)]
    loris = child.connect()
    loris.sendall(struct.pack(">i", 1000))
    started = time.monotonic()
    closed_loris = False
    while time.monotonic() - started < 8:             # one byte every 0.3 s: never idle, never a whole frame
        try:
            loris.sendall(b"\0")
        except OSError:
            closed_loris = True
            break
        if _closed_by_peer(loris, 0.3):
            closed_loris = True
            break
    assert closed_loris, "a slow-loris connection was held open"
    assert all(_closed_by_peer(s, 6) for s in idle), "idle connections were held open"
    active = child.connect()                            # a connection in use is not idle
    for _ in range(8):
        active.sendall(encode_command(RemotingCommand.request(30, {})))
        time.sleep(0.3)
    assert not _closed_by_peer(active, 0.1)
    for s in idle + [loris, active]:
        s.close()


def test_connections_past_the_cap_are_closed_and_the_server_keeps_serving(child_factory):
    child = child_factory(limits={"connections_max": 20})
    socks = [child.connect() for _ in range(40)]
    time.sleep(0.5)
    closed = sum(_closed_by_peer(s, 0.2) for s in socks)
    assert closed >= 20
    for s in socks:
        s.close()
    time.sleep(0.3)
    assert child.small_request_s() < 5
