"""A request handler waiting on a ``PromptFuture`` is stepped inside ``resolve`` and its answer
written then, not a loop turn later (``broker/remoting/prompt``): a committed send's answer
waited one more loop iteration for the handler's wake-up and another for the write."""
import asyncio

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand, encode_command
from mqbench.broker.formats.frame import FrameDecoder
from mqbench.broker.remoting.prompt import PromptFuture, resolve
from mqbench.broker.remoting.server import RemotingServer

CODE = 913


def test_a_resolved_prompt_future_answers_inside_resolve():
    async def main():
        loop = asyncio.get_running_loop()
        waiting: list[PromptFuture] = []
        plain: list[asyncio.Future] = []

        async def handler(cmd, channel):
            future = PromptFuture(loop=loop) if cmd.ext_fields["kind"] == "prompt" else loop.create_future()
            (waiting if cmd.ext_fields["kind"] == "prompt" else plain).append(future)
            value = await future
            return cmd.response_to(codes.SUCCESS, ext_fields={"v": value})

        server = RemotingServer({CODE: handler})
        host, port = await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(encode_command(RemotingCommand.request(CODE, {"kind": "prompt"}, opaque=1)))
            writer.write(encode_command(RemotingCommand.request(CODE, {"kind": "plain"}, opaque=2)))
            while len(waiting) + len(plain) < 2:
                await asyncio.sleep(0.01)
            (channel,) = server.channels
            writes = channel.writes
            resolve(waiting[0], "now")
            assert channel.writes == writes + 1 and not channel._out    # answered and written inside resolve
            plain[0].set_result("later")
            assert channel.writes == writes + 1                         # an ordinary future: a loop turn later
            decoder, got = FrameDecoder(), []
            while len(got) < 2:
                got += decoder.feed(await asyncio.wait_for(reader.read(1 << 16), 5))
            assert [(c.opaque, c.ext_fields["v"]) for c in got] == [(1, "now"), (2, "later")]
            assert channel._inflight == 0
            writer.close()
        finally:
            await server.close()
    asyncio.run(asyncio.wait_for(main(), 20))


def test_a_prompt_future_cancelled_by_a_closing_channel_still_ends_its_handler():
    async def main():
        loop = asyncio.get_running_loop()
        waiting: list[PromptFuture] = []
        ended: list[str] = []

        async def handler(cmd, channel):
            future = PromptFuture(loop=loop)
            waiting.append(future)
            try:
                await future
            except asyncio.CancelledError:
                ended.append("cancelled")
                raise
            return None

        server = RemotingServer({CODE: handler})
        host, port = await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(encode_command(RemotingCommand.request(CODE, {}, opaque=1)))
            while not waiting:
                await asyncio.sleep(0.01)
            (channel,) = server.channels
            channel.close("test")
            await asyncio.sleep(0.01)
            assert waiting[0].cancelled() and ended == ["cancelled"]
            writer.close()
        finally:
            await server.close()
    asyncio.run(asyncio.wait_for(main(), 20))
