"""Admin requests over the remoting protocol, the codes mqadmin (RocketMQ 4.9.8) uses, so they work
on the reference broker and on a real RocketMQ cluster alike.

One-shot helpers (a connection per call; what ``mqbench cluster``, drills and tests use):

* ``await query_runtime_info(addr, timeout_s) -> dict[str, str]``: GET_BROKER_RUNTIME_INFO (28);
  on the reference broker the keys include RocketMQ's (``putTps``, ``brokerVersionDesc``, ...)
  and the Raft ones (``raftRole``, ``raftTerm``, ``raftLeaderId``, ``raftCommitIndex``, ...).
* ``await create_topic(addr, topic, *, queues=4, attributes=None, timeout_s=5)``:
  UPDATE_AND_CREATE_TOPIC (17) with ``queues`` read and write queues and RocketMQ 5 attributes
  (``{"queue.type": "BatchCQ"}``). While the answer is "not the leader" (ext field ``notLeader``,
  a reference-broker extension), the request follows the leader it names (``leaderAddr``) or tries
  again 0.1 s later, until ``timeout_s`` has passed.

``AdminSession(namesrv)``: one connection per address for many calls (the ``mqbench admin``
commands): name server (cluster info, topic list, routes) and broker requests (runtime info,
consume stats, topic stats, consumer connections, broker config, groups of a topic). Topics are
written with ``create_topic`` above, which follows a leadership move.

The one-shot helpers take ``credentials`` (``broker.formats.signature.Credentials``) for a
cluster whose brokers check RocketMQ's ACL; ``AdminSession(..., credentials=...)`` likewise.

Errors: a refusal raises ``AdminError`` (a UserError) naming the request, the address, the code
and the remark; no answer or no connection raises ``AdminError`` too from the session, and the
remoting ``RemotingTimeoutError`` / ``RemotingClosedError`` (both OSError) from the one-shot helpers.
"""
from __future__ import annotations

import asyncio
import time

from mqbench.broker.formats import admin_bodies as bodies
from mqbench.broker.formats import codes
from mqbench.broker.remoting.client import connect
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.server.handlers_admin import format_attributes
from mqbench.broker.formats.fastjson import loads_fastjson
from mqbench.broker.formats.topics import validate_topic
from mqbench.errors import PeerError, UserError

LEADER_RETRY_S = 0.1


class AdminError(UserError):
    """The cluster refused an admin request (``code``: the response code), or did not answer it
    (``code`` None)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


async def _request(addr: str, cmd: RemotingCommand, timeout_s: float, credentials=None) -> RemotingCommand:
    timeout_ms = max(1, int(timeout_s * 1000))
    channel = await connect(addr, timeout_ms=timeout_ms, credentials=credentials)
    try:
        return await channel.request(cmd, timeout_ms)
    finally:
        await channel.aclose()


def _refused(what: str, addr: str, response: RemotingCommand) -> AdminError:
    return AdminError(f"{what} on {addr}: {codes.response_name(response.code)} {response.remark or ''}".strip(),
                      response.code)


async def query_runtime_info(addr: str, timeout_s: float = 2.0, *, credentials=None) -> dict[str, str]:
    """The broker's runtime info table (all values strings)."""
    response = await _request(addr, RemotingCommand.request(codes.GET_BROKER_RUNTIME_INFO), timeout_s, credentials)
    if response.code != codes.SUCCESS:
        raise _refused("runtime info", addr, response)
    try:
        return bodies.parse_kv_table(response.body)
    except PeerError as exc:
        raise AdminError(f"runtime info of {addr}: {exc}") from None


def topic_request_fields(topic: str, queues: int, perm: int, attributes: dict[str, str] | None,
                         read_queues: int | None = None) -> dict[str, object]:
    """The UPDATE_AND_CREATE_TOPIC header (RocketMQ ``CreateTopicRequestHeader``)."""
    validate_topic(topic)
    read = queues if read_queues is None else read_queues
    for what, n in (("queues", queues), ("read queues", read)):
        if not 1 <= n <= 1024:
            raise UserError(f"{what} must be within 1..1024, not {n}")
    if not 0 <= perm <= 7:
        raise UserError(f"perm must be within 0..7 (2 write, 4 read, 6 both), not {perm}")
    fields: dict[str, object] = {"topic": topic, "defaultTopic": codes.DEFAULT_TOPIC, "readQueueNums": read,
                                 "writeQueueNums": queues, "perm": perm, "topicFilterType": "SINGLE_TAG",
                                 "topicSysFlag": 0, "order": False}
    if attributes:
        fields["attributes"] = format_attributes(attributes)
    return fields


async def create_topic(addr: str, topic: str, *, queues: int = 4, attributes: dict[str, str] | None = None,
                       timeout_s: float = 5.0, perm: int = 6, read_queues: int | None = None,
                       credentials=None) -> None:
    """Create (or update) ``topic`` on the group whose replica listens at ``addr`` (module doc)."""
    fields = topic_request_fields(topic, queues, perm, attributes, read_queues)
    target = addr
    deadline = time.monotonic() + timeout_s
    while True:
        response = await _request(target, RemotingCommand.request(codes.UPDATE_AND_CREATE_TOPIC, fields),
                                  max(0.05, deadline - time.monotonic()), credentials)
        if response.code == codes.SUCCESS:
            return
        if response.ext_fields.get("notLeader") != "true" or time.monotonic() >= deadline:
            raise _refused(f"create topic {topic}", target, response)
        # not the leader (an election or a leadership handover is under way): go where it points
        leader = response.ext_fields.get("leaderAddr")
        if leader and leader != target:
            target = leader
        else:
            await asyncio.sleep(LEADER_RETRY_S)


class AdminSession:
    """Admin calls to one cluster: its name server(s) ``namesrv`` ("host:port", ``;``-separated)
    and the brokers they name. ``async with AdminSession(...) as s:`` closes the connections."""

    def __init__(self, namesrv: str, *, timeout_s: float = 3.0, credentials=None) -> None:
        from mqbench.client.connections import ConnectionPool, NameServerClient

        self.timeout_ms = max(1, int(timeout_s * 1000))
        self.credentials = credentials
        self.pool = ConnectionPool(connect_timeout_ms=self.timeout_ms, credentials=credentials)
        self.namesrv = NameServerClient(namesrv, self.pool, timeout_ms=self.timeout_ms)

    async def __aenter__(self) -> "AdminSession":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.pool.close()

    async def _namesrv(self, code: int, what: str, fields: dict | None = None) -> RemotingCommand:
        from mqbench.client.connections import ClientError

        try:
            response = await self.namesrv.request(lambda: RemotingCommand.request(code, fields))
        except ClientError as exc:
            raise AdminError(f"{what}: {exc}") from None
        if response.code != codes.SUCCESS:
            raise _refused(what, self.namesrv.addrs[0], response)
        return response

    async def broker(self, addr: str, code: int, what: str, fields: dict | None = None, *,
                     ok: tuple[int, ...] = (codes.SUCCESS,)) -> RemotingCommand:
        """One request to the broker at ``addr``; AdminError unless the answer's code is in ``ok``."""
        from mqbench.client.connections import TRANSPORT_ERRORS

        try:
            response = await self.pool.request(addr, RemotingCommand.request(code, fields), self.timeout_ms)
        except TRANSPORT_ERRORS as exc:
            raise AdminError(f"{what}: broker {addr} did not answer ({exc})") from None
        if response.code not in ok:
            raise _refused(what, addr, response)
        return response

    # --- name server ------------------------------------------------------------------------------

    async def cluster_info(self) -> list[bodies.ClusterBroker]:
        response = await self._namesrv(codes.GET_BROKER_CLUSTER_INFO, "cluster info")
        try:
            return bodies.parse_cluster_info(response.body)
        except PeerError as exc:
            raise AdminError(str(exc)) from None

    async def topic_list(self) -> list[str]:
        response = await self._namesrv(codes.GET_ALL_TOPIC_LIST_FROM_NAMESERVER, "topic list")
        try:
            doc = loads_fastjson(response.body or b"{}", where="topic list")
        except UserError as exc:
            raise AdminError(str(exc)) from None
        topics = doc.get("topicList") if isinstance(doc, dict) else None
        if not isinstance(topics, list):
            raise AdminError("topic list: the name server's answer has no topicList")
        return sorted(str(t) for t in topics)

    async def route(self, topic: str):
        """The topic's ``TopicRoute``, or None when the name server has none."""
        from mqbench.client.connections import ClientError

        try:
            return await self.namesrv.route(topic)
        except (ClientError, PeerError) as exc:
            raise AdminError(f"route of {topic}: {exc}") from None

    # --- brokers ----------------------------------------------------------------------------------

    async def runtime_info(self, addr: str) -> dict[str, str]:
        response = await self.broker(addr, codes.GET_BROKER_RUNTIME_INFO, "runtime info")
        return self._parse(bodies.parse_kv_table, response.body, addr)

    async def consume_stats(self, addr: str, group: str, topic: str | None = None):
        """(rows, consumeTps) of ``group`` on the broker at ``addr`` (every topic it has offsets for)."""
        fields = {"consumerGroup": group} | ({"topic": topic} if topic else {})
        response = await self.broker(addr, codes.GET_CONSUME_STATS, f"consume stats of {group}", fields)
        return self._parse(bodies.parse_consume_stats, response.body, addr)

    async def topic_stats(self, addr: str, topic: str) -> list[bodies.QueueOffsets]:
        response = await self.broker(addr, codes.GET_TOPIC_STATS_INFO, f"topic stats of {topic}", {"topic": topic})
        return self._parse(bodies.parse_topic_stats, response.body, addr)

    async def consumer_connections(self, addr: str, group: str) -> dict | None:
        """The group's live consumers on ``addr``; None when none is online (CONSUMER_NOT_ONLINE)."""
        response = await self.broker(addr, codes.GET_CONSUMER_CONNECTION_LIST, f"consumers of {group}",
                                     {"consumerGroup": group}, ok=(codes.SUCCESS, codes.CONSUMER_NOT_ONLINE))
        if response.code != codes.SUCCESS:
            return None
        return self._parse(bodies.parse_consumer_connection, response.body, addr)

    async def groups_of_topic(self, addr: str, topic: str) -> list[str]:
        response = await self.broker(addr, codes.QUERY_TOPIC_CONSUME_BY_WHO, f"groups of {topic}", {"topic": topic})
        return self._parse(bodies.parse_group_list, response.body, addr)

    async def broker_config(self, addr: str) -> dict[str, str]:
        response = await self.broker(addr, codes.GET_BROKER_CONFIG, "broker config")
        return bodies.parse_properties(response.body)

    @staticmethod
    def _parse(parse, body: bytes | None, addr: str):
        try:
            return parse(body)
        except PeerError as exc:
            raise AdminError(f"{exc} (from {addr})") from None
