"""The server's batch handlers: the consecutive same-code requests of one read handed over together."""
import asyncio

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand, encode_command
from mqbench.broker.formats.frame import FrameDecoder
from mqbench.broker.remoting.server import RemotingServer

GROUPED = 910
OTHER = 911
ALSO_GROUPED = 912


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


async def _exchange(server: RemotingServer, requests: list[RemotingCommand], answers: int) -> list[RemotingCommand]:
    host, port = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"".join(encode_command(r) for r in requests))      # one write: one read on loopback
    decoder, got = FrameDecoder(), []
    while len(got) < answers:
        got += decoder.feed(await asyncio.wait_for(reader.read(1 << 16), 5))
    writer.close()
    return got


def test_consecutive_requests_of_a_batch_code_are_handled_together_and_answered_one_by_one():
    async def main():
        groups: list[list[int]] = []

        async def batch(cmds, channel):
            groups.append([c.opaque for c in cmds])
            await asyncio.sleep(0.01)          # waits like a quorum commit
            return [c.response_to(codes.SUCCESS, ext_fields={"n": c.ext_fields["n"]}) if c.opaque != 3
                    else c.response_to(codes.MESSAGE_ILLEGAL, "refused alone") for c in cmds]

        async def plain(cmd, channel):
            return cmd.response_to(codes.SUCCESS, ext_fields={"plain": "1"})

        server = RemotingServer({OTHER: plain}, batch_handlers={GROUPED: batch, ALSO_GROUPED: batch})
        try:
            codes_sent = [GROUPED] * 4 + [OTHER] + [GROUPED] * 2 + [ALSO_GROUPED] * 2 + [GROUPED]
            requests = [RemotingCommand.request(code, {"n": i}, opaque=i + 1) for i, code in enumerate(codes_sent)]
            requests[5].flag |= codes.FLAG_ONEWAY          # a one-way request in a group: not answered
            got = await _exchange(server, requests, 9)
            assert groups == [[1, 2, 3, 4], [6, 7], [8, 9], [10]]
            by_opaque = {c.opaque: c for c in got}
            assert sorted(by_opaque) == [1, 2, 3, 4, 5, 7, 8, 9, 10]
            assert by_opaque[3].code == codes.MESSAGE_ILLEGAL and by_opaque[3].remark == "refused alone"
            assert by_opaque[5].ext_fields == {"plain": "1"}
            assert all(by_opaque[o].ext_fields == {"n": str(o - 1)} and by_opaque[o].is_response
                       for o in (1, 2, 4, 7, 8, 9, 10))
            (channel,) = server.channels
            assert channel._inflight == 0
        finally:
            await server.close()
    run(main())


def test_a_batch_handler_that_raises_answers_each_request_and_prebuilt_frames_go_out_as_they_are():
    async def main():
        async def batch(cmds, channel):
            if cmds[0].ext_fields.get("explode"):
                raise ValueError("batch exploded")
            # a prebuilt frame: the handler encodes the response itself, with the request's opaque
            return [encode_command(RemotingCommand(code=codes.SUCCESS, opaque=c.opaque, flag=codes.FLAG_RESPONSE,
                                                   ext_fields={"pre": "built"})) for c in cmds]

        server = RemotingServer({}, batch_handlers={GROUPED: batch})
        try:
            requests = [RemotingCommand.request(GROUPED, {"explode": "1"}, opaque=i + 1) for i in range(3)]
            got = await _exchange(server, requests, 3)
            assert sorted(c.opaque for c in got) == [1, 2, 3]
            assert all(c.code == codes.SYSTEM_ERROR and "batch exploded" in c.remark for c in got)
            await server.close()
            server = RemotingServer({}, batch_handlers={GROUPED: batch})
            got = await _exchange(server, [RemotingCommand.request(GROUPED, {}, opaque=i + 1) for i in range(5)], 5)
            assert sorted(c.opaque for c in got) == [1, 2, 3, 4, 5]
            assert all(c.ext_fields == {"pre": "built"} and c.is_response for c in got)
        finally:
            await server.close()
    run(main())


def test_the_inflight_bound_cuts_a_group_and_the_backlog_runs_later_in_groups():
    async def main():
        groups: list[int] = []
        release = asyncio.Event()

        async def batch(cmds, channel):
            groups.append(len(cmds))
            await release.wait()
            return [c.response_to(codes.SUCCESS) for c in cmds]

        server = RemotingServer({}, batch_handlers={GROUPED: batch}, inflight_requests_max=4)
        host, port = await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"".join(encode_command(RemotingCommand.request(GROUPED, {}, opaque=i + 1))
                                  for i in range(10)))
            for _ in range(100):
                if groups:
                    break
                await asyncio.sleep(0.01)
            assert groups == [4]               # at most 4 in flight: the rest wait in the backlog
            release.set()
            decoder, got = FrameDecoder(), []
            while len(got) < 10:
                got += decoder.feed(await asyncio.wait_for(reader.read(1 << 16), 5))
            assert sorted(c.opaque for c in got) == list(range(1, 11))
            assert sum(groups) == 10 and max(groups) <= 4
            writer.close()
        finally:
            await server.close()
    run(main())


def test_answers_settled_in_one_turn_from_several_reads_go_out_in_one_write_in_request_order():
    """Sends that wait for one commit (as a quorum commit settles every proposal of a turn at
    once) arrive in three reads; their 24 answers leave in ONE transport write, in request order,
    and the bytes are exactly the encoded responses (nothing reordered, nothing re-framed)."""
    async def main():
        loop = asyncio.get_running_loop()
        commit = loop.create_future()
        started: list[int] = []

        async def batch(cmds, channel):
            started.extend(c.opaque for c in cmds)
            await commit
            return [c.response_to(codes.SUCCESS, ext_fields={"n": c.ext_fields["n"]}) for c in cmds]

        server = RemotingServer({}, batch_handlers={GROUPED: batch})
        host, port = await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(host, port)
            requests = [RemotingCommand.request(GROUPED, {"n": i}, opaque=i + 1) for i in range(24)]
            for part in range(3):                  # three reads: each one waits until the last started
                writer.write(b"".join(encode_command(r) for r in requests[part * 8:(part + 1) * 8]))
                while len(started) < (part + 1) * 8:
                    await asyncio.sleep(0.001)
            (channel,) = server.channels
            writes_before = channel.writes
            commit.set_result(None)
            expected = b""
            for r in requests:
                answer = r.response_to(codes.SUCCESS, ext_fields={"n": r.ext_fields["n"]})
                answer.opaque, answer.flag = r.opaque, codes.FLAG_RESPONSE
                expected += encode_command(answer)
            got = b""
            while len(got) < len(expected):
                got += await asyncio.wait_for(reader.read(1 << 16), 5)
            assert got == expected
            assert channel.writes - writes_before == 1
            writer.close()
        finally:
            await server.close()
    run(main())


def test_a_batch_mixing_prebuilt_frames_commands_none_and_one_way_is_answered_in_order():
    """The batch answer pass: prebuilt frames and commands keep request order in the output, a
    None or a one-way request sends nothing, and every request leaves the in-flight count."""
    async def main():
        def prebuilt(c):
            return encode_command(RemotingCommand(code=codes.SUCCESS, opaque=c.opaque, flag=codes.FLAG_RESPONSE,
                                                  ext_fields={"pre": "built"}))

        async def batch(cmds, channel):
            await asyncio.sleep(0.01)
            kinds = {1: "frame", 2: "command", 3: "none", 4: "frame", 5: "frame", 6: "command", 7: "frame"}
            return [prebuilt(c) if kinds[c.opaque] == "frame" else None if kinds[c.opaque] == "none"
                    else c.response_to(codes.SUCCESS, ext_fields={"cmd": "1"}) for c in cmds]

        server = RemotingServer({}, batch_handlers={GROUPED: batch})
        try:
            requests = [RemotingCommand.request(GROUPED, {}, opaque=i + 1) for i in range(7)]
            requests[4].flag |= codes.FLAG_ONEWAY          # opaque 5: a prebuilt frame, not sent
            got = await _exchange(server, requests, 5)
            assert [c.opaque for c in got] == [1, 2, 4, 6, 7]
            assert [c.ext_fields for c in got] == [{"pre": "built"}, {"cmd": "1"}, {"pre": "built"},
                                                   {"cmd": "1"}, {"pre": "built"}]
            assert all(c.is_response for c in got)
            (channel,) = server.channels
            assert channel._inflight == 0
        finally:
            await server.close()
    run(main())
