"""The name server's remoting adapter: request handlers over ``RouteTable`` and the expiry scan.

Served requests: REGISTER_BROKER (103), UNREGISTER_BROKER (104), GET_ROUTEINFO_BY_TOPIC (105,
standard JSON; unknown topic -> TOPIC_NOT_EXIST 17), GET_BROKER_CLUSTER_INFO (106),
GET_ALL_TOPIC_LIST_FROM_NAMESERVER (206), GET_KV_CONFIG (101, always QUERY_NOT_FOUND: we keep no
KV config). A stale Raft registration (see ``routes``) is answered SYSTEM_ERROR with the reason;
malformed headers or bodies are answered SYSTEM_ERROR naming the problem; nothing a peer sends
stops the server. The clocks (``clock_ms``, monotonic milliseconds, for expiry; ``wall_clock_ms``
for signing times) are injected.

With a cluster ``secret`` (``--cluster-secret-file``), REGISTER_BROKER and UNREGISTER_BROKER must be
signed with it (``broker.cluster_secret``); anything else is answered NO_PERMISSION (16) naming why,
and the route table is not touched. Without one (the default for a standalone name server, as
RocketMQ's) every registration is taken, so real RocketMQ brokers can register.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

from mqbench.broker import cluster_secret
from mqbench.broker.namesrv.routes import (BROKER_EXPIRY_MS_DEFAULT, Registration, RouteTable,
                                           parse_topic_config_table)
from mqbench.broker.formats import codes, headers
from mqbench.broker.remoting.channel import Channel
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.remoting.server import RemotingServer
from mqbench.broker.formats.topics import validate_topic
from mqbench.errors import UserError

log = logging.getLogger(__name__)

SCAN_INTERVAL_MS_DEFAULT = 1000


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class NameServer:
    def __init__(self, *, broker_expiry_ms: int = BROKER_EXPIRY_MS_DEFAULT,
                 scan_interval_ms: int = SCAN_INTERVAL_MS_DEFAULT, clock_ms: Callable[[], int] = monotonic_ms,
                 secret: bytes | None = None, wall_clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.secret = secret
        self.wall_clock_ms = wall_clock_ms
        self.refused_unsigned = 0
        self.routes = RouteTable(broker_expiry_ms=broker_expiry_ms)
        self.scan_interval_ms = scan_interval_ms
        self.clock_ms = clock_ms
        self.server = RemotingServer({
            codes.REGISTER_BROKER: self.on_register_broker,
            codes.UNREGISTER_BROKER: self.on_unregister_broker,
            codes.GET_ROUTEINFO_BY_TOPIC: self.on_get_route,
            codes.GET_BROKER_CLUSTER_INFO: self.on_cluster_info,
            codes.GET_ALL_TOPIC_LIST_FROM_NAMESERVER: self.on_topic_list,
            codes.GET_KV_CONFIG: self.on_get_kv_config,
        })
        self._scan_task: asyncio.Task | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        address = await self.server.start(host, port)
        self._scan_task = asyncio.get_running_loop().create_task(self._scan_loop(), name="namesrv-expiry")
        return address

    async def close(self) -> None:
        if self._scan_task is not None:
            self._scan_task.cancel()
            await asyncio.gather(self._scan_task, return_exceptions=True)
        await self.server.close()

    def scan(self) -> list[str]:
        gone = self.routes.expire(self.clock_ms())
        for addr in gone:
            log.info("broker %s expired: no registration within its timeout", addr)
        return gone

    async def _scan_loop(self) -> None:
        while True:
            await asyncio.sleep(self.scan_interval_ms / 1000)
            self.scan()

    # --- handlers --------------------------------------------------------------------------------

    def _unauthenticated(self, cmd: RemotingCommand, channel: Channel) -> RemotingCommand | None:
        """The NO_PERMISSION answer for a registration not signed with the cluster secret, else None."""
        if self.secret is None:
            return None
        reason = cluster_secret.check_request(cmd, self.secret, self.wall_clock_ms())
        if reason is None:
            return None
        self.refused_unsigned += 1
        log.warning("%s from %s refused: %s", codes.request_name(cmd.code), channel.peer, reason)
        return cmd.response_to(codes.NO_PERMISSION, f"{codes.request_name(cmd.code)} refused: {reason}")

    async def on_register_broker(self, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
        refused = self._unauthenticated(cmd, channel)
        if refused is not None:
            return refused
        header = headers.RegisterBrokerHeader.from_ext(cmd.ext_fields)
        if header.compressed:
            return cmd.response_to(codes.SYSTEM_ERROR, "compressed REGISTER_BROKER bodies are not supported; "
                                                       "set compressedRegister=false on the broker")
        topics = None
        if cmd.body:
            doc = headers.parse_json_body(cmd.body, "REGISTER_BROKER")
            topics = parse_topic_config_table(doc, body_crc32=header.body_crc32, raw=cmd.body)
        reg = Registration(cluster_name=header.cluster_name, broker_name=header.broker_name,
                           broker_addr=header.broker_addr, broker_id=header.broker_id,
                           ha_server_addr=header.ha_server_addr, term=header.raft_term, topics=topics,
                           heartbeat_timeout_ms=header.heartbeat_timeout_ms)
        if not reg.broker_name or not reg.broker_addr or not reg.cluster_name or reg.broker_id < 0:
            raise UserError("REGISTER_BROKER needs a brokerName, brokerAddr, clusterName and brokerId >= 0")
        outcome = self.routes.register(reg, self.clock_ms())
        if not outcome.accepted:
            log.info("%s", outcome.reason)
            return cmd.response_to(codes.SYSTEM_ERROR, outcome.reason, {"masterAddr": outcome.master_addr})
        return cmd.response_to(codes.SUCCESS, None, {"haServerAddr": outcome.ha_server_addr,
                                                     "masterAddr": outcome.master_addr},
                               headers.dump_json_body({"table": {}}))

    async def on_unregister_broker(self, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
        refused = self._unauthenticated(cmd, channel)
        if refused is not None:
            return refused
        header = headers.UnregisterBrokerHeader.from_ext(cmd.ext_fields)
        self.routes.unregister(header.cluster_name, header.broker_name, header.broker_addr, header.broker_id)
        return cmd.response_to(codes.SUCCESS)

    async def on_get_route(self, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
        header = headers.GetRouteInfoHeader.from_ext(cmd.ext_fields)
        try:
            validate_topic(header.topic)
        except UserError as exc:
            return cmd.response_to(codes.TOPIC_NOT_EXIST, str(exc))
        route = self.routes.topic_route(header.topic)
        if route is None:
            return cmd.response_to(codes.TOPIC_NOT_EXIST,
                                   f"No topic route info in name server for the topic: {header.topic}")
        return cmd.response_to(codes.SUCCESS, body=headers.dump_json_body(route))

    async def on_cluster_info(self, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
        return cmd.response_to(codes.SUCCESS, body=headers.dump_json_body(self.routes.cluster_info()))

    async def on_topic_list(self, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
        return cmd.response_to(codes.SUCCESS, body=headers.dump_json_body({"topicList": self.routes.topic_list()}))

    async def on_get_kv_config(self, cmd: RemotingCommand, channel: Channel) -> RemotingCommand:
        return cmd.response_to(codes.QUERY_NOT_FOUND, f"No config item, Namespace: {cmd.ext_fields.get('namespace')} "
                                                      f"Key: {cmd.ext_fields.get('key')}")
