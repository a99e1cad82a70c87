"""Admin calls to a reference broker over the remoting protocol (what ``mqbench cluster``, drills
and tests use).

* ``await query_runtime_info(addr, timeout_s) -> dict[str, str]``: GET_BROKER_RUNTIME_INFO (28);
  the keys are listed in ``handlers_admin.runtime_info`` (``raftRole``, ``raftTerm``,
  ``raftLeaderId``, ``raftCommitIndex``, ``putMessageCount``, ``raftBytesSent``,
  ``raftBytesReceived``, ``storeBytes``, ...).
* ``await create_topic(addr, topic, *, queues=4, attributes=None, timeout_s=5)``:
  UPDATE_AND_CREATE_TOPIC (17) with ``queues`` read and write queues and RocketMQ 5 attributes
  (``{"queue.type": "BatchCQ"}``). Sent to ``addr``; while the answer is "not the leader" (ext
  field ``notLeader``: an election or a leadership handover), the request follows the leader it
  names (``leaderAddr``) or tries again 0.1 s later, until ``timeout_s`` has passed.

Errors: a broker's refusal raises ``AdminError`` (a UserError) naming the code and the broker's
remark; no answer or no connection raises the remoting ``RemotingTimeoutError`` /
``RemotingClosedError`` (both OSError).
"""
from __future__ import annotations

import asyncio
import time

from mqbench.broker.remoting import codes, headers
from mqbench.broker.remoting.client import connect
from mqbench.broker.remoting.command import RemotingCommand
from mqbench.broker.server.handlers_admin import format_attributes
from mqbench.broker.store.topics import validate_topic
from mqbench.errors import UserError

LEADER_RETRY_S = 0.1


class AdminError(UserError):
    """The broker refused an admin request."""


async def _request(addr: str, cmd: RemotingCommand, timeout_s: float) -> RemotingCommand:
    timeout_ms = max(1, int(timeout_s * 1000))
    channel = await connect(addr, timeout_ms=timeout_ms)
    try:
        return await channel.request(cmd, timeout_ms)
    finally:
        await channel.aclose()


async def query_runtime_info(addr: str, timeout_s: float = 2.0) -> dict[str, str]:
    """The broker's runtime info table (all values strings)."""
    response = await _request(addr, RemotingCommand.request(codes.GET_BROKER_RUNTIME_INFO), timeout_s)
    if response.code != codes.SUCCESS:
        text = f"{codes.response_name(response.code)} {response.remark or ''}".strip()
        raise AdminError(f"runtime info of {addr}: {text}")
    doc = headers.parse_json_body(response.body, "GET_BROKER_RUNTIME_INFO response")
    table = doc.get("table") if isinstance(doc, dict) else None
    if not isinstance(table, dict):
        raise AdminError(f"runtime info of {addr} has no table")
    return {str(k): str(v) for k, v in table.items()}


async def create_topic(addr: str, topic: str, *, queues: int = 4, attributes: dict[str, str] | None = None,
                       timeout_s: float = 5.0, perm: int = 6) -> None:
    """Create (or update) ``topic`` on the group whose replica listens at ``addr`` (module doc)."""
    validate_topic(topic)
    if not 1 <= queues <= 1024:
        raise UserError(f"queues must be within 1..1024, not {queues}")
    fields: dict[str, object] = {"topic": topic, "defaultTopic": "TBW102", "readQueueNums": queues,
                                 "writeQueueNums": queues, "perm": perm, "topicFilterType": "SINGLE_TAG",
                                 "topicSysFlag": 0, "order": False}
    if attributes:
        fields["attributes"] = format_attributes(attributes)
    target = addr
    deadline = time.monotonic() + timeout_s
    while True:
        response = await _request(target, RemotingCommand.request(codes.UPDATE_AND_CREATE_TOPIC, fields),
                                  max(0.05, deadline - time.monotonic()))
        if response.code == codes.SUCCESS:
            return
        if response.ext_fields.get("notLeader") != "true" or time.monotonic() >= deadline:
            raise AdminError(f"create topic {topic} on {target}: {codes.response_name(response.code)} "
                             f"{response.remark or ''}".strip())
        # not the leader (an election or a leadership handover is under way): go where it points
        leader = response.ext_fields.get("leaderAddr")
        if leader and leader != target:
            target = leader
        else:
            await asyncio.sleep(LEADER_RETRY_S)
