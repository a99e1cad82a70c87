"""Issue 18's finding-7 figures against a real broker process with the default limits (not a test:
run it by hand, about 20 s): its RSS before, its peak RSS (VmHWM) during 300 pulls on a connection
that never reads its responses, and during 40 connections each holding 15 MiB of a 16 MiB frame,
and how long a small request on another connection waits meanwhile.

    .venv/bin/python tests/broker_server/resource_figures.py [--address 127.0.77.211]
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mqbench.broker.formats import codes  # noqa: E402
from mqbench.broker.remoting.client import connect  # noqa: E402
from mqbench.broker.formats.command import RemotingCommand, encode_command  # noqa: E402
from test_broker_inprocess import pull_fields, send_v1_fields  # noqa: E402

LAYOUT = """name = "figures"
cluster = "c"
namesrv_host = "h1"
namesrv_port = {namesrv}
broker_port = {broker}
[rooms.r1]
hosts = ["h1"]
[hosts.h1]
address = "{address}"
[groups.g]
replicas = ["h1"]
"""
MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.77.211")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mqbench-figures-"))
    with socket.socket() as probe:
        probe.bind((args.address, 0))
        port = probe.getsockname()[1]
    (work / "layout.toml").write_text(LAYOUT.format(namesrv=port + 5, broker=port, address=args.address))
    proc = subprocess.Popen([sys.executable, "-m", "mqbench.broker.server.main", "--layout", str(work / "layout.toml"),
                             "--instance", "g/n0", "--store", str(work / "store"), "--delay", "off",
                             "--log-level", "warning"], stderr=open(work / "broker.log", "w"))

    def kib(field: str) -> int:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(field)

    async def small_request_ms(channel) -> float:
        started = time.monotonic()
        await channel.request(RemotingCommand.request(codes.GET_MAX_OFFSET, {"topic": "M", "queueId": 0}), 10_000)
        return (time.monotonic() - started) * 1000

    async def run() -> None:
        for _ in range(100):
            try:
                channel = await connect(f"{args.address}:{port}")
                break
            except OSError:
                await asyncio.sleep(0.2)
        body = b"y" * 100_000
        for _ in range(40):
            answer = await channel.request(RemotingCommand.request(codes.SEND_MESSAGE, send_v1_fields("M"), body), 10_000)
            assert answer.code == codes.SUCCESS, answer.remark
        await asyncio.sleep(1)
        base = kib("VmRSS")
        print(f"broker RSS after 40 sends of 100 KB: {base / 1024:.0f} MiB")
        reader = socket.create_connection((args.address, port))
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        reader.sendall(b"".join(encode_command(RemotingCommand.request(codes.PULL_MESSAGE, pull_fields("M", 0, 0),
                                                                       opaque=i + 1)) for i in range(300)))
        await asyncio.sleep(3)
        waited = await small_request_ms(channel)
        print(f"300 pulls of 32 x 100 KB never read: peak RSS {kib('VmHWM') / 1024:.0f} MiB, "
              f"a small request meanwhile {waited:.0f} ms")
        reader.close()
        holders = []
        for _ in range(40):
            s = socket.create_connection((args.address, port))
            holders.append(s)
            try:
                s.sendall(struct.pack(">i", 16 * MIB - 8) + b"\0" * (15 * MIB))
            except OSError:
                pass                      # closed by the broker: over the partial-frame budget
        await asyncio.sleep(1)
        waited = await small_request_ms(channel)
        print(f"40 connections holding 15 MiB of a 16 MiB frame: peak RSS {kib('VmHWM') / 1024:.0f} MiB, "
              f"a small request meanwhile {waited:.0f} ms")
        for s in holders:
            s.close()
        await channel.aclose()

    try:
        asyncio.run(run())
    finally:
        proc.terminate()
        proc.wait(15)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
