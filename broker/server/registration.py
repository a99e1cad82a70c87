"""Name server registration of one broker instance: REGISTER_BROKER (103) / UNREGISTER_BROKER (104).

``Registrar`` registers with the name server every ``interval_ms`` (10 s), at once when
``trigger()`` is called (the broker calls it on every Raft role change and after a topic config
changed), and unregisters on ``close()``. What it sends (RocketMQ's ``BrokerOuterAPI``):

* header: ``brokerName`` (the group), ``brokerAddr`` (the instance's client address),
  ``clusterName``, ``brokerId`` (0 when this replica leads, else its position + 1),
  ``haServerAddr`` (its Raft address), ``heartbeatTimeoutMillis`` (3 intervals, so one lost
  registration does not drop the route), ``bodyCrc32`` and, as mqbench's extension, ``raftTerm``:
  the term the role is held in, so the name server keeps the newest leader's route
  (``namesrv.routes``) and refuses a deposed leader's late registration;
* body: the RegisterBrokerBody JSON with the instance's whole topic config table.

With the cluster ``secret``, both requests are signed with it (``broker.cluster_secret``), so a
name server started with the same secret knows them from forged ones.

A registration that fails (name server down, refused as stale) is logged and retried after
``retry_ms``; the role and topics are read afresh for every attempt (``describe()``), so a retry
never sends an outdated role. Nothing here raises into the broker.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Callable

from mqbench.broker import cluster_secret
from mqbench.broker.namesrv.routes import TopicEntry, register_body
from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.remoting.client import connect
from mqbench.broker.formats.command import RemotingCommand
from mqbench.errors import MqbenchError

log = logging.getLogger("mqbench.broker.registration")

INTERVAL_MS_DEFAULT = 10_000
RETRY_MS_DEFAULT = 1_000
REQUEST_TIMEOUT_MS_DEFAULT = 3_000


@dataclass(frozen=True)
class Registration:
    """What one REGISTER_BROKER says."""

    cluster_name: str
    broker_name: str
    broker_addr: str
    broker_id: int
    ha_server_addr: str
    raft_term: int
    topics: dict[str, TopicEntry]


def build_request(reg: Registration, heartbeat_timeout_ms: int) -> RemotingCommand:
    body = json.dumps(register_body(reg.topics), separators=(",", ":")).encode("utf-8")
    header = headers.RegisterBrokerHeader(
        broker_name=reg.broker_name, broker_addr=reg.broker_addr, cluster_name=reg.cluster_name,
        broker_id=reg.broker_id, ha_server_addr=reg.ha_server_addr, heartbeat_timeout_ms=heartbeat_timeout_ms,
        compressed=False, body_crc32=zlib.crc32(body) & 0x7FFFFFFF, raft_term=reg.raft_term)
    return RemotingCommand.request(codes.REGISTER_BROKER, header.to_ext(), body)


class Registrar:
    def __init__(self, namesrv_addr: str, describe: Callable[[], Registration], *,
                 interval_ms: int = INTERVAL_MS_DEFAULT, retry_ms: int = RETRY_MS_DEFAULT,
                 request_timeout_ms: int = REQUEST_TIMEOUT_MS_DEFAULT, secret: bytes | None = None,
                 wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.namesrv_addr = namesrv_addr
        self.secret = secret
        self.wall_clock_ms = wall_clock_ms
        self.describe = describe
        self.interval_ms = interval_ms
        self.retry_ms = retry_ms
        self.request_timeout_ms = request_timeout_ms
        self.registrations = 0          # accepted registrations
        self.failures = 0
        self.last: Registration | None = None   # the last accepted one
        self.last_error: str | None = None
        self._begun = 0                 # registrations begun (each describes the topics as they are then)
        self._waiters: list[tuple[int, asyncio.Future[bool]]] = []
        self._wanted = asyncio.Event()
        self._channel: Channel | None = None
        self._task: asyncio.Task | None = None
        self._closed = False

    def start(self) -> None:
        """Register now and then every interval (in a background task)."""
        self._wanted.set()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="namesrv-registration")

    def trigger(self) -> asyncio.Future[bool]:
        """Register again as soon as possible (role or topics changed). The future is done when a
        registration begun after this call has ended: True when the name server took it (so it routes
        what had changed), False when it failed or the registrar closed. Callers may ignore it."""
        self._wanted.set()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._closed:
            done.set_result(False)
        else:
            self._waiters.append((self._begun + 1, done))
        return done

    def _settle(self, begun: int, taken: bool) -> None:
        """End the waiters that registration number ``begun`` covers (those triggered before it began)."""
        keep = []
        for needed, done in self._waiters:
            if needed > begun:
                keep.append((needed, done))
            elif not done.done():
                done.set_result(taken)
        self._waiters = keep

    async def _loop(self) -> None:
        wait_ms = self.interval_ms
        while not self._closed:
            try:
                await asyncio.wait_for(self._wanted.wait(), wait_ms / 1000)
            except asyncio.TimeoutError:
                pass
            self._wanted.clear()
            if self._closed:
                return
            self._begun += 1
            begun = self._begun
            taken = await self.register_once()
            self._settle(begun, taken)
            wait_ms = self.interval_ms if taken else self.retry_ms

    async def register_once(self) -> bool:
        """One REGISTER_BROKER with the current role and topics; True when the name server took it."""
        reg = self.describe()
        try:
            channel = await self._connect()
            request = self._signed(build_request(reg, 3 * self.interval_ms))
            response = await channel.request(request, self.request_timeout_ms)
        except (MqbenchError, OSError) as exc:
            return self._failed(reg, f"name server {self.namesrv_addr} unreachable: {exc}")
        if response.code != codes.SUCCESS:
            return self._failed(reg, f"name server refused: {codes.response_name(response.code)} "
                                     f"{response.remark or ''}".strip())
        if self.last is None or (self.last.broker_id, self.last.raft_term) != (reg.broker_id, reg.raft_term):
            log.info("registered %s at %s as brokerId %d (term %d, %d topics) with %s", reg.broker_name,
                     reg.broker_addr, reg.broker_id, reg.raft_term, len(reg.topics), self.namesrv_addr)
        self.registrations += 1
        self.last = reg
        self.last_error = None
        return True

    def _signed(self, cmd: RemotingCommand) -> RemotingCommand:
        if self.secret is None:
            return cmd
        return cluster_secret.sign_request(cmd, self.secret, self.wall_clock_ms())

    def _failed(self, reg: Registration, reason: str) -> bool:
        self.failures += 1
        if reason != self.last_error:
            log.warning("registration of %s as brokerId %d failed: %s", reg.broker_addr, reg.broker_id, reason)
        self.last_error = reason
        return False

    async def _connect(self) -> Channel:
        if self._channel is None or self._channel.closed:
            self._channel = await connect(self.namesrv_addr, timeout_ms=self.request_timeout_ms)
        return self._channel

    async def close(self, *, unregister: bool = True) -> None:
        """Stop registering; with ``unregister`` tell the name server this address is gone."""
        self._closed = True
        self._wanted.set()
        self._settle(self._begun + 1, False)     # nothing more will begin: no waiter is left hanging
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if unregister and self.last is not None:
            reg = self.last
            header = headers.UnregisterBrokerHeader(reg.broker_name, reg.broker_addr, reg.cluster_name, reg.broker_id)
            try:
                channel = await self._connect()
                await channel.request(self._signed(RemotingCommand.request(codes.UNREGISTER_BROKER, header.to_ext())),
                                      self.request_timeout_ms)
                log.info("unregistered %s from %s", reg.broker_addr, self.namesrv_addr)
            except (MqbenchError, OSError) as exc:
                log.warning("unregister of %s failed: %s", reg.broker_addr, exc)
        if self._channel is not None:
            await self._channel.aclose()
            self._channel = None
