"""A sink for load-generator benchmarks (``mqbench bench workers``): one process that is name server
and broker at once, routes every topic to itself and acknowledges every send without storing it.

It answers GET_ROUTEINFO_BY_TOPIC (``queues`` write/read queues on broker ``sink``), SEND_MESSAGE,
SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE (SUCCESS, a queue offset counted per queue), HEART_BEAT and
UNREGISTER_CLIENT. ``acked_msgs`` counts send requests (a batch body is not parsed: it counts 1;
the benchmarks count messages from the workers' own metrics). Its CPU seconds (``cpu_s``) tell
whether it was the bottleneck.
"""
from __future__ import annotations

import itertools
import json
import os

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.remoting.server import RemotingServer

BROKER_NAME = "sink"


class Sink:
    def __init__(self, queues: int = 8):
        self.queues = queues
        self.acked_msgs = 0
        self.addr = ""
        self._offsets = itertools.count()
        self.server = RemotingServer({
            codes.GET_ROUTEINFO_BY_TOPIC: self._route, codes.SEND_MESSAGE: self._send,
            codes.SEND_MESSAGE_V2: self._send, codes.SEND_BATCH_MESSAGE: self._send,
            codes.HEART_BEAT: self._ok, codes.UNREGISTER_CLIENT: self._ok})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        bound_host, bound_port = await self.server.start(host, port)
        self.addr = f"{bound_host}:{bound_port}"
        return self.addr

    async def close(self) -> None:
        await self.server.close()

    @staticmethod
    def cpu_s() -> float:
        times = os.times()
        return times.user + times.system

    async def _route(self, cmd: RemotingCommand, _channel) -> RemotingCommand:
        route = {"queueDatas": [{"brokerName": BROKER_NAME, "readQueueNums": self.queues,
                                 "writeQueueNums": self.queues, "perm": codes.PERM_READ | codes.PERM_WRITE,
                                 "topicSysFlag": 0}],
                 "brokerDatas": [{"cluster": BROKER_NAME, "brokerName": BROKER_NAME, "brokerAddrs": {"0": self.addr}}],
                 "filterServerTable": {}}
        return cmd.response_to(codes.SUCCESS, body=json.dumps(route).encode())

    async def _send(self, cmd: RemotingCommand, _channel) -> RemotingCommand:
        self.acked_msgs += 1
        offset = next(self._offsets)
        return cmd.response_to(codes.SUCCESS, ext_fields={"msgId": f"{offset:032X}", "queueId": offset % self.queues,
                                                          "queueOffset": offset // self.queues})

    async def _ok(self, cmd: RemotingCommand, _channel) -> RemotingCommand:
        return cmd.response_to(codes.SUCCESS)

