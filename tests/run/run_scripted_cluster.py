"""A real name server and the client suite's scripted broker, served from a background thread.

The driver workers of ``mqbench run`` are separate processes, so the cluster they reach over TCP
must keep serving while the test's own thread blocks in ``orchestrator.run``: it gets its own
thread and event loop here. ``slow_ms`` delays every send answer (a slow broker).
"""
from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path

_CONFTEST = Path(__file__).resolve().parents[1] / "client" / "conftest.py"
_spec = importlib.util.spec_from_file_location("mqbench_client_scripted_broker", _CONFTEST)
scripted = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scripted)


class ThreadedCluster:
    def __init__(self, topics, *, queue_nums: int = 4, slow_ms: int = 0, serial_ms: float = 0):
        self.topics = tuple(topics)
        self.queue_nums = queue_nums
        self.slow_ms = slow_ms
        self.serial_ms = serial_ms
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="scripted-cluster", daemon=True)
        self.cluster = None
        self.broker = None

    def __enter__(self) -> "ThreadedCluster":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(20)
        return self

    async def _start(self) -> None:
        self.cluster = scripted.Cluster()
        await self.cluster.__aenter__()
        self.broker = await self.cluster.add_broker("broker-a", topics=self.topics, queue_nums=self.queue_nums)
        if self.slow_ms or self.serial_ms:
            original = self.broker.on_send
            lock = asyncio.Lock()

            async def slow_send(cmd, channel):
                if self.serial_ms:  # one send at a time: a server of known capacity 1000 / serial_ms
                    async with lock:
                        await asyncio.sleep(self.serial_ms / 1000)
                await asyncio.sleep(self.slow_ms / 1000)
                return await original(cmd, channel)

            for code in (scripted.codes.SEND_MESSAGE, scripted.codes.SEND_MESSAGE_V2,
                         scripted.codes.SEND_BATCH_MESSAGE):
                self.broker.server.handlers[code] = slow_send
        self.namesrv_addr = self.cluster.namesrv_addr
        self._reregister = asyncio.get_running_loop().create_task(self._keep_registered())

    async def _keep_registered(self) -> None:
        # A real broker re-registers every 10-30 s; without it the name server expires the route.
        while True:
            await asyncio.sleep(5)
            await self.broker.register(self.namesrv_addr)

    def stored(self, topic: str):
        return asyncio.run_coroutine_threadsafe(self._stored(topic), self.loop).result(20)

    async def _stored(self, topic):
        return self.broker.stored(topic)

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self._reregister.cancel)
        asyncio.run_coroutine_threadsafe(self.cluster.__aexit__(None, None, None), self.loop).result(20)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
