"""A channel hands the quick answers of one read (``Receiver.QUICK_CODES``) to their receivers'
class in one ``answered_together`` call, in order, and every other answer as before; answers
before a malformed frame in the same read are handed over, the rest fail with the close, and the
connection closes naming the bad frame. With and without the C loop (``frame._decode_frames``)."""
from __future__ import annotations

import asyncio

import pytest

from mqbench.broker.formats import codes, frame
from mqbench.broker.formats.command import RemotingCommand, encode_command, send_success_frame
from mqbench.broker.remoting.channel import Channel, RemotingClosedError
from mqbench.broker.remoting.sending import Receiver

_REQUEST = b"\x00\x00\x00\x04\x00\x00\x00\x00"


class _Send(Receiver):
    QUICK_CODES = frozenset({codes.SUCCESS, codes.FLUSH_DISK_TIMEOUT})
    __slots__ = ("log",)

    @classmethod
    def answered_together(cls, receivers: list) -> None:
        receivers[0].log.append(("together", list(receivers)))

    def answered(self, response: RemotingCommand) -> None:
        self.log.append(("answered", self, response.code))

    def failed(self, exc: BaseException) -> None:
        self.log.append(("failed", self, type(exc).__name__, str(exc)))


@pytest.fixture(params=["c", "python"])
def decoder_loop(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(frame, "_decode_frames", None)
    elif frame._decode_frames is None:
        pytest.skip("the C accelerator is off")
    return request.param


def _channel_with(log: list, count: int) -> tuple[Channel, list[_Send], dict[int, _Send]]:
    channel = Channel()
    sends, by_opaque = [], {}
    for _ in range(count):
        send = _Send()
        send.log = log
        opaque = channel.next_opaque()
        channel.submit_to(opaque, _REQUEST, 60_000, send)
        sends.append(send)
        by_opaque[opaque] = send
    return channel, sends, by_opaque


def _ok(opaque: int, code: int = codes.SUCCESS) -> bytes:
    if code == codes.SUCCESS:
        return send_success_frame(opaque, 0, "0A0B", 1, 7, None)
    return encode_command(RemotingCommand(code=code, opaque=opaque, flag=codes.FLAG_RESPONSE, remark="r"))


def test_a_reads_quick_answers_come_in_one_call_and_the_others_one_by_one(decoder_loop) -> None:
    async def main() -> None:
        log: list = []
        channel, sends, _ = _channel_with(log, 6)
        future = channel.submit(channel.next_opaque(), _REQUEST, 60_000)
        first_read = _ok(1) + _ok(2) + _ok(3, codes.SYSTEM_BUSY) + _ok(7)      # 7: the future's
        second_read = _ok(4, codes.FLUSH_DISK_TIMEOUT) + _ok(5)
        channel.data_received(first_read + second_read[:9])                 # a frame cut across reads
        channel.data_received(second_read[9:] + _ok(2) + _ok(99))         # 2 again, 99 unknown: dropped
        assert log == [("together", [sends[0], sends[1]]), ("answered", sends[2], codes.SYSTEM_BUSY),
                       ("together", [sends[3], sends[4]])]
        assert future.done() and future.result().code == codes.SUCCESS
        assert list(channel._pending) == [6] and not channel.closed
        channel.close("test over")
        assert log[-1] == ("failed", sends[5], "RemotingClosedError", "connection to ? closed: test over")

    asyncio.run(main())


def test_answers_before_a_malformed_frame_are_handed_over_then_the_connection_closes(decoder_loop) -> None:
    async def main() -> None:
        log: list = []
        channel, sends, _ = _channel_with(log, 3)
        future = channel.submit(channel.next_opaque(), _REQUEST, 60_000)
        channel.data_received(_ok(1) + _ok(2) + (2).to_bytes(4, "big") + b"\x00\x00")
        assert log[0] == ("together", [sends[0], sends[1]])
        assert log[1][:3] == ("failed", sends[2], "RemotingClosedError")
        assert "malformed frame" in log[1][3] and "below the 4-byte minimum" in log[1][3]
        assert channel.closed and "malformed frame" in channel.close_reason
        with pytest.raises(RemotingClosedError):
            future.result()

    asyncio.run(main())


def test_a_channel_without_requests_of_its_own_decodes_as_before(decoder_loop) -> None:
    """A server's channel (its table empty) gets every answer and request as a command."""
    async def main() -> None:
        seen: list = []

        async def on_request(cmd, channel):
            seen.append((cmd.code, cmd.opaque))
            return None

        channel = Channel(on_request=on_request)
        channel.data_received(encode_command(RemotingCommand(code=codes.HEART_BEAT, opaque=5)) + _ok(1))
        assert seen == [(codes.HEART_BEAT, 5)] and not channel.closed
        channel.close()

    asyncio.run(main())
