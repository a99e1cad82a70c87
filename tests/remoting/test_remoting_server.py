"""The asyncio server and client around the codec, on 127.0.0.1 with ephemeral ports."""
import asyncio
import struct

import pytest

from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.client import RemotingClosedError, RemotingTimeoutError, connect, parse_addr
from mqbench.broker.formats.command import RemotingCommand, encode_command
from mqbench.broker.formats.frame import FrameDecoder
from mqbench.broker.remoting.server import RemotingServer
from mqbench.errors import InvariantViolation, UserError

ECHO = 900
SLOW = 901
FAIL = 902
NOTE = 903
BIG = 904
FATAL = 905


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


class Harness:
    def __init__(self, **server_kwargs):
        self.notes: list[str] = []
        self.big_sent = 0
        self.server = RemotingServer({ECHO: self.echo, SLOW: self.slow, FAIL: self.fail, NOTE: self.note,
                                      BIG: self.big, FATAL: self.fatal,
                                      codes.HEART_BEAT: self.heartbeat}, **server_kwargs)

    async def __aenter__(self):
        host, port = await self.server.start("127.0.0.1", 0)
        self.addr = f"{host}:{port}"
        return self

    async def __aexit__(self, *exc):
        await self.server.close()

    async def echo(self, cmd, channel):
        return cmd.response_to(codes.SUCCESS, ext_fields={"echo": cmd.ext_fields.get("v", "")}, body=cmd.body)

    async def slow(self, cmd, channel):
        await asyncio.sleep(int(cmd.ext_fields["ms"]) / 1000)
        return cmd.response_to(codes.SUCCESS, ext_fields={"ms": cmd.ext_fields["ms"]})

    async def fail(self, cmd, channel):
        if cmd.ext_fields.get("kind") == "header":
            headers.ConsumerGroupHeader.from_ext(cmd.ext_fields)
        raise ValueError("handler exploded")

    async def note(self, cmd, channel):
        self.notes.append(cmd.ext_fields["v"])
        return cmd.response_to(codes.SUCCESS)

    async def big(self, cmd, channel):
        response = cmd.response_to(codes.SUCCESS, body=b"x" * (1 << 20))
        await channel.send(response)  # written here so the test sees when drain() lets it through
        self.big_sent += 1
        return None

    async def fatal(self, cmd, channel):
        raise InvariantViolation("state broke")

    async def heartbeat(self, cmd, channel):
        await channel.oneway(RemotingCommand.request(codes.NOTIFY_CONSUMER_IDS_CHANGED, {"consumerGroup": "G"}))
        return cmd.response_to(codes.SUCCESS)


def test_concurrent_requests_are_matched_by_opaque():
    async def main():
        async with Harness() as h:
            client = await connect(h.addr)
            delays = [50, 10, 30, 0, 20]
            results = await asyncio.gather(*(client.request(RemotingCommand.request(SLOW, {"ms": d}), 2000)
                                             for d in delays))
            assert [r.ext_fields["ms"] for r in results] == [str(d) for d in delays]
            assert all(r.is_response for r in results)
            await client.aclose()
    run(main())


def test_unknown_code_and_failing_handlers_get_error_responses():
    async def main():
        async with Harness() as h:
            client = await connect(h.addr)
            r = await client.request(RemotingCommand.request(4242), 2000)
            assert r.code == codes.REQUEST_CODE_NOT_SUPPORTED and "4242" in r.remark
            r = await client.request(RemotingCommand.request(FAIL), 2000)
            assert r.code == codes.SYSTEM_ERROR and "handler exploded" in r.remark
            r = await client.request(RemotingCommand.request(FAIL, {"kind": "header"}), 2000)
            assert r.code == codes.SYSTEM_ERROR and "consumerGroup" in r.remark
            r = await client.request(RemotingCommand.request(ECHO, {"v": "still here"}), 2000)
            assert r.ext_fields["echo"] == "still here"
            await client.aclose()
    run(main())


def test_binary_header_request_gets_binary_response():
    async def main():
        async with Harness() as h:
            reader, writer = await asyncio.open_connection(*parse_addr(h.addr))
            writer.write(encode_command(RemotingCommand(code=ECHO, opaque=7, ext_fields={"v": "b"}, body=b"B",
                                                        serialize_type=codes.SERIALIZE_ROCKETMQ)))
            decoder, got = FrameDecoder(), []
            while not got:
                got = decoder.feed(await reader.read(4096))
            assert got[0].serialize_type == codes.SERIALIZE_ROCKETMQ and got[0].opaque == 7 and got[0].body == b"B"
            writer.close()
    run(main())


def test_oneway_requests_get_no_response():
    async def main():
        async with Harness() as h:
            reader, writer = await asyncio.open_connection(*parse_addr(h.addr))
            writer.write(encode_command(RemotingCommand(code=NOTE, opaque=1, flag=codes.FLAG_ONEWAY, ext_fields={"v": "a"})))
            writer.write(encode_command(RemotingCommand(code=4242, opaque=2, flag=codes.FLAG_ONEWAY)))
            writer.write(encode_command(RemotingCommand(code=ECHO, opaque=3)))
            decoder, got = FrameDecoder(), []
            while not got:
                got += decoder.feed(await reader.read(4096))
            await asyncio.sleep(0.05)
            assert [c.opaque for c in got] == [3] and h.notes == ["a"]
            writer.close()
            client = await connect(h.addr)
            await client.oneway(RemotingCommand.request(NOTE, {"v": "b"}))
            assert (await client.request(RemotingCommand.request(ECHO), 2000)).code == codes.SUCCESS
            assert h.notes == ["a", "b"]
            await client.aclose()
    run(main())


def test_malformed_frame_closes_only_that_connection():
    async def main():
        async with Harness() as h:
            good = await connect(h.addr)
            reader, writer = await asyncio.open_connection(*parse_addr(h.addr))
            writer.write(struct.pack(">ii", 10, 6) + b"{oops}")
            assert await asyncio.wait_for(reader.read(100), 5) == b""  # the server hung up on it
            reader2, writer2 = await asyncio.open_connection(*parse_addr(h.addr))
            writer2.write(struct.pack(">i", 64 * 1024 * 1024))  # over the frame limit
            assert await asyncio.wait_for(reader2.read(100), 5) == b""
            r = await good.request(RemotingCommand.request(ECHO, {"v": "ok"}), 2000)
            assert r.ext_fields["echo"] == "ok" and len(h.server.channels) == 1
            await good.aclose()
    run(main())


def test_request_timeout_and_close_fail_pending_requests():
    async def main():
        async with Harness() as h:
            client = await connect(h.addr)
            with pytest.raises(RemotingTimeoutError, match="within 50 ms"):
                await client.request(RemotingCommand.request(SLOW, {"ms": 500}), 50)
            assert (await client.request(RemotingCommand.request(ECHO), 2000)).code == codes.SUCCESS
            pending = asyncio.ensure_future(client.request(RemotingCommand.request(SLOW, {"ms": 5000}), 10000))
            await asyncio.sleep(0.05)
            await h.server.close()
            with pytest.raises(RemotingClosedError):
                await pending
            assert client.closed
            with pytest.raises(RemotingClosedError):
                await client.request(RemotingCommand.request(ECHO), 100)
    run(main())


def test_server_pushes_requests_to_the_client():
    async def main():
        pushed = asyncio.get_running_loop().create_future()

        async def on_request(cmd, channel):
            pushed.set_result(cmd)
            return None

        async with Harness() as h:
            client = await connect(h.addr, on_request=on_request)
            await client.request(RemotingCommand.request(codes.HEART_BEAT, body=b"{}"), 2000)
            cmd = await asyncio.wait_for(pushed, 2)
            assert cmd.code == codes.NOTIFY_CONSUMER_IDS_CHANGED and cmd.is_oneway
            assert cmd.ext_fields == {"consumerGroup": "G"}
            await client.aclose()
    run(main())


def test_write_backpressure_holds_writers_until_the_peer_reads():
    async def main():
        async with Harness(write_buffer_bytes_high=64 * 1024) as h:
            reader, writer = await asyncio.open_connection(*parse_addr(h.addr))
            total = 48  # 48 MiB of responses, far beyond socket buffers
            for opaque in range(total):
                writer.write(encode_command(RemotingCommand(code=BIG, opaque=opaque)))
            await writer.drain()
            await asyncio.sleep(0.3)
            assert h.big_sent < total  # the handlers are held in drain(), not buffering 48 MiB
            decoder, got = FrameDecoder(frame_bytes_max=2 << 20), []
            while len(got) < total:
                got += decoder.feed(await reader.read(1 << 20))
            assert sorted(c.opaque for c in got) == list(range(total)) and h.big_sent == total
            writer.close()
    run(main())


def test_invariant_violation_marks_the_server_fatal():
    async def main():
        async with Harness() as h:
            client = await connect(h.addr)
            with pytest.raises(RemotingClosedError):
                await client.request(RemotingCommand.request(FATAL), 2000)
            assert isinstance(h.server.fatal_error, InvariantViolation) and h.server.fatal.is_set()
    run(main())


def test_connect_errors_and_bad_addresses():
    async def main():
        server = RemotingServer()
        host, port = await server.start("127.0.0.1", 0)
        await server.close()
        with pytest.raises(RemotingClosedError, match="connect to"):
            await connect(f"{host}:{port}")
    run(main())
    for bad in ("nohost", "h:0", "h:x", ":80", "h:70000"):
        with pytest.raises(UserError):
            parse_addr(bad)


def test_requests_of_one_read_are_answered_in_one_write_without_tasks():
    """50 requests arriving in one read: every frame decoded in one pass, each handler run without
    a Task (also one that waits), and the 50 responses written with one transport write."""
    async def main():
        tasks_seen = []

        async def plain(cmd, channel):
            tasks_seen.append(asyncio.current_task())
            return cmd.response_to(codes.SUCCESS, ext_fields={"n": cmd.ext_fields["n"]})

        async def waits(cmd, channel):
            await asyncio.sleep(0.01)
            tasks_seen.append(asyncio.current_task())
            return cmd.response_to(codes.SUCCESS, ext_fields={"n": cmd.ext_fields["n"]})

        server = RemotingServer({ECHO: plain, SLOW: waits})
        host, port = await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"".join(encode_command(RemotingCommand.request(ECHO, {"n": i}, opaque=i + 1))
                                  for i in range(50)))
            decoder, got = FrameDecoder(), []
            while len(got) < 50:
                got += decoder.feed(await asyncio.wait_for(reader.read(1 << 16), 5))
            assert [c.opaque for c in got] == list(range(1, 51))
            (channel,) = server.channels
            assert channel.writes == 1
            writer.write(b"".join(encode_command(RemotingCommand.request(SLOW, {"n": i}, opaque=100 + i))
                                  for i in range(10)))
            got = []
            while len(got) < 10:
                got += decoder.feed(await asyncio.wait_for(reader.read(1 << 16), 5))
            assert sorted(c.opaque for c in got) == list(range(100, 110))
            assert tasks_seen == [None] * 60
            writer.close()
        finally:
            await server.close()
    run(main())
