"""A broker short of disk space or descriptors (issue 18, findings 6 and 8) is neither dead nor a
zombie: writes are refused with SERVICE_NOT_AVAILABLE (retriable), reads go on, and writes come back
when the cause goes; nothing acknowledged is lost.

* Disk full: the store lives on a small tmpfs the test mounts (and unmounts) itself; a filler file
  takes the space and is deleted to give it back. Skipped when mounting is not permitted.
* Descriptors: a real broker process with RLIMIT_NOFILE lowered to 256 gets a flood of idle
  connections; it keeps taking writes to new topics (new queue files) while the flood is open.
"""
from __future__ import annotations

import asyncio
import os
import random
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mqbench.broker.formats import codes
from mqbench.broker.remoting.client import RemotingClosedError, RemotingTimeoutError, connect
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.server.main import Broker
from mqbench.client.messages import decode_pulled
from test_broker_inprocess import FAST, InProcessCluster, pull_fields, run, send_v1_fields

MIB = 1024 * 1024


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): "
                    "the disk-full test needs root and mount permission")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path: Path, leave_bytes: int) -> None:
    """Write a filler file until only about ``leave_bytes`` are free."""
    st = os.statvfs(path.parent)
    want = st.f_bavail * st.f_frsize - leave_bytes
    with open(path, "wb") as f:
        chunk = b"\0" * MIB
        while want > 0:
            n = min(want, len(chunk))
            f.write(chunk[:n])
            want -= n


async def _send(channel, topic: str, body: bytes) -> int | None:
    """The answer code, or None when the outcome is unknown (no answer in time)."""
    try:
        answer = await channel.request(RemotingCommand.request(codes.SEND_MESSAGE, send_v1_fields(topic), body), 3000)
    except RemotingTimeoutError:
        return None
    return answer.code if answer.code != codes.SUCCESS else 0


async def _pull_all(channel, topic: str) -> list[bytes]:
    bodies, offset = [], 0
    while True:
        answer = await channel.request(RemotingCommand.request(codes.PULL_MESSAGE, pull_fields(topic, 0, offset)), 5000)
        if answer.code != codes.SUCCESS:
            return bodies
        msgs = decode_pulled(answer.body, "b")
        bodies += [m.body for m in msgs]
        offset = msgs[-1].queue_offset + 1


class SmallSegments(InProcessCluster):
    """One replica whose group takes ``options`` (small commitlog segments, the free-space floor)."""
    options: dict = {}

    async def start(self, name: str) -> Broker:
        broker = Broker(self.layout, name, self.root / name.replace("/", "_"), register_interval_ms=500,
                        rng=random.Random(1), group_options=self.options)
        self.brokers[name] = await broker.start()
        return broker


@pytest.mark.parametrize("disk_free_min", [0, 2 * MIB], ids=["write-fails", "free-space-floor"])
def test_disk_full_refuses_writes_retriably_serves_reads_and_recovers(small_tmpfs, disk_free_min):
    async def main():
        cluster = SmallSegments(small_tmpfs, 1, subnet=23 if disk_free_min else 24)
        cluster.options = dict(FAST, commitlog_segment_bytes=2 * MIB, disk_free_bytes_min=disk_free_min)
        async with cluster:
            leader = await cluster.leader()
            channel = await connect(leader.instance.addr)

            def body(i: int) -> bytes:
                return (b"%06d" % i) * 5000            # 30 KB
            assert await _send(channel, "Full", body(0)) == 0
            fill(small_tmpfs / "filler", 3 * MIB)
            acked, unknown, refused, i = [0], 0, [], 1
            deadline = time.monotonic() + 60
            while len(refused) < 5 and time.monotonic() < deadline:
                code = await _send(channel, "Full", body(i))
                if code == 0:
                    acked.append(i)
                elif code is None:
                    unknown += 1
                else:
                    refused.append(code)
                i += 1
            assert refused and set(refused) == {codes.SERVICE_NOT_AVAILABLE}, refused
            assert not leader.fatal.is_set() and leader.group.failed is None, "the broker died of a full disk"
            assert leader.ctx.is_leader()
            from mqbench.broker.server.handlers_admin import runtime_info
            assert runtime_info(leader.ctx)["writesRefusedReason"]
            # reads go on: every acknowledged message is there
            stored = await _pull_all(channel, "Full")
            assert set(body(n) for n in acked) <= set(stored)
            # the space comes back: so do writes, and nothing acknowledged was lost
            os.unlink(small_tmpfs / "filler")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                code = await _send(channel, "Full", body(i))
                if code == 0:
                    acked.append(i)
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("writes did not come back once the disk had space")
            stored = await _pull_all(channel, "Full")
            assert set(body(n) for n in acked) <= set(stored)
            assert len(stored) == len(set(stored))
            await channel.aclose()
    run(main(), 180)


LAYOUT = """
name = "fdlimit"
cluster = "c"
namesrv_host = "h1"
namesrv_port = {namesrv}
broker_port = {broker}
[rooms.r1]
hosts = ["h1"]
[hosts.h1]
address = "127.0.77.210"
[groups.g]
replicas = ["h1"]
"""


def _lower_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


@pytest.mark.realproc
@pytest.mark.parametrize("cap", ["default", "none"])
@pytest.mark.slow  # long for CI's 10-minute budget; run with -m slow
def test_fd_flood_leaves_a_working_broker(tmp_path, cap):
    """``default``: the connection cap keeps the flood below the descriptor limit, so nothing in the
    process runs out. ``none`` (``--connections-max`` far above the limit): the process does run out
    (EMFILE on accept, and for whatever else needs a descriptor then: a queue file may wait in the
    write gate, a send be refused retriably); the process lives, writes come back once the flood
    closes and nothing acknowledged is lost."""
    with socket.socket() as probe:
        probe.bind(("127.0.77.210", 0))
        port = probe.getsockname()[1]
    layout = tmp_path / "fd.toml"
    layout.write_text(LAYOUT.format(namesrv=port + 5, broker=port))
    log = open(tmp_path / "broker.log", "w")
    extra = ["--connections-max", "100000"] if cap == "none" else []
    proc = subprocess.Popen([sys.executable, "-m", "mqbench.broker.server.main", "--layout", str(layout),
                             "--instance", "g/n0", "--store", str(tmp_path / "store"), "--delay", "off", *extra],
                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_lower_nofile)
    addr = f"127.0.77.210:{port}"
    flood: list[socket.socket] = []
    try:
        async def main():
            deadline = time.monotonic() + 30
            while True:
                try:
                    channel = await connect(addr)
                    if await _send(channel, "Fd0", b"first") == 0:
                        break
                    await channel.aclose()
                except (RemotingClosedError, RemotingTimeoutError):
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, "the broker did not start"
                await asyncio.sleep(0.2)
            flood_started = time.monotonic()
            for _ in range(400):            # more idle connections than the process has descriptors
                if time.monotonic() - flood_started > 20:
                    break                    # (a broker out of descriptors stops accepting: connects time out)
                s = socket.socket()
                s.settimeout(2)
                try:
                    s.connect(("127.0.77.210", port))
                except OSError:
                    s.close()
                    continue
                flood.append(s)
            await asyncio.sleep(1)
            # new topics need new queue files (descriptors)
            acked = {}
            for t in range(1, 16):
                code = await _send(channel, f"Fd{t}", b"during the flood %d" % t)
                if cap == "default":
                    assert code == 0, f"send to Fd{t} during the flood: {code}"
                else:
                    assert code in (0, None, codes.SERVICE_NOT_AVAILABLE), f"send to Fd{t} during the flood: {code}"
                if code == 0:
                    acked[f"Fd{t}"] = b"during the flood %d" % t
            for s in flood:
                s.close()
            flood.clear()
            deadline = time.monotonic() + 30
            while True:                          # writes come back once descriptors are free again
                try:
                    fresh = await connect(addr)
                    if await _send(fresh, "Fd0", b"after") == 0:
                        break
                    await fresh.aclose()
                except (RemotingClosedError, RemotingTimeoutError):
                    pass
                assert time.monotonic() < deadline, "writes did not come back after the flood"
                await asyncio.sleep(0.5)
            assert (await _pull_all(fresh, "Fd0"))[:1] == [b"first"]
            for topic, body in acked.items():
                assert body in await _pull_all(fresh, topic), f"acknowledged {topic} lost"
            await fresh.aclose()
            await channel.aclose()
            return acked
        acked = asyncio.run(asyncio.wait_for(main(), 120))
        assert proc.poll() is None, "the broker process died"
        text = (tmp_path / "broker.log").read_text()
        if cap == "none":
            assert "Too many open files" in text, "the flood never exhausted the descriptors"
        else:
            assert len(acked) == 15 and "Too many open files" not in text
    finally:
        for s in flood:
            s.close()
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
