"""The gRPC server of one broker replica: transport, authentication, and forwarding to the leader.

``GrpcEndpoint(broker, ns)``: ``await start()`` serves ``apache.rocketmq.v2.MessagingService`` on
the instance's ``grpc_addr`` (layout port + 2) on the broker's own event loop, ``await close()``.

Every replica serves every call. Calls that need the leader (SendMessage, ReceiveMessage,
AckMessage, ChangeInvisibleDuration, ForwardMessageToDeadLetterQueue) are forwarded, as raw
bytes with the client's metadata, to the leader's gRPC port when this replica is not the leader
(the reference proxy's job in a RocketMQ 5 cluster): a client whose route lists every replica's
address (``service.route``) keeps working through a failover, as gRPC moves its channel to the
next address when one dies. A forwarded call carries ``x-mqbench-forwarded`` and is never forwarded
again (a replica that lost the lead meanwhile answers it with an error status the client retries).
While no leader is known the call waits up to ``LEADER_WAIT_MS`` for one; while the leader it
knows does not answer (killed, not yet replaced) it tries again every ``FORWARD_RETRY_S`` within
the call's deadline.

Authentication: with an ACL (``--acl``), every call's ``authorization`` metadata
(``MQv2-HMAC-SHA1 Credential=AK, SignedHeaders=x-mq-date-time, Signature=HEX``: the hex HMAC-SHA1
of the ``x-mq-date-time`` value under the account's secret key, as the 5.x clients sign) goes
through the broker's ``AclChecker.check_access`` with the resources the call needs: a refusal is
``UNAUTHORIZED`` (signature, unknown key) or ``FORBIDDEN`` (permission), in the call's status.

Other MessagingService methods answer the gRPC status UNIMPLEMENTED with a message naming what is
served. A peer error (a request that does not parse) answers INVALID_ARGUMENT; the server keeps
serving.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import re
from hashlib import sha1

from mqbench.broker.grpc.service import GrpcService

log = logging.getLogger("mqbench.broker.grpc")

SERVICE = "apache.rocketmq.v2.MessagingService"
LEADER_WAIT_MS = 5000
FORWARD_RETRY_S = 0.25
MESSAGE_BYTES_MAX = 16 * 1024 * 1024          # a 4 MiB body plus its properties, with room
FORWARDED = "x-mqbench-forwarded"
UNARY_LOCAL = ("QueryRoute", "Heartbeat", "QueryAssignment", "NotifyClientTermination")
UNARY_LEADER = ("SendMessage", "AckMessage", "ChangeInvisibleDuration", "ForwardMessageToDeadLetterQueue")
STREAM_LEADER = ("ReceiveMessage",)
UNIMPLEMENTED = ("PullMessage", "UpdateOffset", "GetOffset", "QueryOffset", "EndTransaction", "RecallMessage",
                 "SyncLiteSubscription")
_AUTH_RE = re.compile(r"^\s*MQv2-HMAC-SHA1\s+Credential=([^,\s]*)\s*,\s*SignedHeaders=([^,\s]*)\s*,"
                      r"\s*Signature=([0-9A-Fa-f]*)\s*$")


def parse_authorization(value: str) -> tuple[str, str, str] | None:
    """(access key, signed header names, signature) of an ``authorization`` value, or None."""
    match = _AUTH_RE.match(value or "")
    return match.groups() if match else None


def grpc_signature(secret_key: str, date_time: str) -> str:
    """What a 5.x client sends as ``Signature``: hex HMAC-SHA1 of ``x-mq-date-time``."""
    return hmac.new(secret_key.encode("utf-8"), date_time.encode("utf-8"), sha1).hexdigest()


class GrpcEndpoint:
    def __init__(self, broker, ns) -> None:
        self.broker = broker
        self.ns = ns
        self.service = GrpcService(broker, ns, self)
        self.server = None
        self._channels: dict[str, object] = {}

    @property
    def ctx(self):
        return self.broker.ctx

    async def start(self) -> None:
        grpc, aio = self.ns.grpc, self.ns.aio
        options = [("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
                   ("grpc.max_send_message_length", MESSAGE_BYTES_MAX)]
        self.server = aio.server(options=options)
        handlers = {}
        for name in UNARY_LOCAL + UNARY_LEADER:
            handlers[name] = grpc.unary_unary_rpc_method_handler(self._unary(name))
        for name in STREAM_LEADER:
            handlers[name] = grpc.unary_stream_rpc_method_handler(self._stream(name))
        handlers["Telemetry"] = grpc.stream_stream_rpc_method_handler(self.service.telemetry)
        methods = self.ns.svc.DESCRIPTOR.services_by_name["MessagingService"].methods_by_name
        for name in UNIMPLEMENTED:
            method = methods.get(name)
            if method is not None and method.server_streaming:   # PullMessage streams its answer
                handlers[name] = grpc.unary_stream_rpc_method_handler(self._unimplemented(name))
            else:
                handlers[name] = grpc.unary_unary_rpc_method_handler(self._unimplemented(name))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        instance = self.broker.instance
        if self.server.add_insecure_port(instance.grpc_addr) == 0:
            raise OSError(f"cannot listen on {instance.grpc_addr} for gRPC clients")
        await self.server.start()
        log.info("gRPC endpoint (%s) serving on %s", SERVICE, instance.grpc_addr)

    async def close(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=0.5)
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    # --- dispatch ----------------------------------------------------------------------------------

    def _unary(self, name: str):
        local = getattr(self.service, name)
        leader_only = name in UNARY_LEADER

        async def call(request: bytes, context) -> bytes:
            while leader_only:
                target = await self._forward_target(context)
                if target is None:
                    break
                answer = await self._forward_unary(target, name, request, context)
                if answer is not None:
                    return answer
            return await local(request, context)

        return call

    def _stream(self, name: str):
        local = getattr(self.service, name)

        async def call(request: bytes, context):
            while True:
                target = await self._forward_target(context)
                if target is None:
                    break
                sent = 0
                async for item in self._forward_stream(target, name, request, context):
                    if item is None:
                        break
                    sent += 1
                    yield item
                else:
                    return
                if sent:
                    return
            async for item in local(request, context):
                yield item

        return call

    def _unimplemented(self, name: str):
        async def call(request: bytes, context) -> bytes:
            await context.abort(self.ns.grpc.StatusCode.UNIMPLEMENTED,
                                f"{SERVICE}/{name} is not served by the mqbench reference broker; it serves "
                                "QueryRoute, Heartbeat, Telemetry, SendMessage, ReceiveMessage, AckMessage, "
                                "ChangeInvisibleDuration, QueryAssignment, ForwardMessageToDeadLetterQueue "
                                "and NotifyClientTermination")
        return call

    async def _forward_target(self, context) -> str | None:
        """The leader's gRPC address when the call must go there; None to serve it here."""
        ctx = self.ctx
        if ctx.is_leader() or any(k == FORWARDED for k, _ in context.invocation_metadata()):
            return None
        waited_ms = 0
        while True:
            leader = ctx.leader_instance()
            if leader is not None and leader.name != ctx.instance.name:
                return leader.grpc_addr
            if ctx.is_leader() or waited_ms >= LEADER_WAIT_MS:
                return None        # served here: a follower answers with the not-leader status
            await asyncio.sleep(0.1)
            waited_ms += 100

    def _channel(self, addr: str):
        channel = self._channels.get(addr)
        if channel is None:
            channel = self._channels[addr] = self.ns.aio.insecure_channel(
                addr, options=[("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
                               ("grpc.max_send_message_length", MESSAGE_BYTES_MAX)])
        return channel

    @staticmethod
    def _metadata(context) -> list[tuple[str, str]]:
        return [(k, v) for k, v in context.invocation_metadata()
                if not k.startswith(":") and not k.startswith("grpc-") and k not in ("user-agent", "te")] \
            + [(FORWARDED, "1")]

    async def _unreachable(self, addr: str, exc, context) -> None:
        """The leader at ``addr`` did not answer: retry (return) while the call has time, since
        the replicas elect another leader within seconds; else end the call with that error."""
        remaining = context.time_remaining()
        if exc.code() == self.ns.grpc.StatusCode.UNAVAILABLE and (remaining is None or remaining > FORWARD_RETRY_S):
            log.info("forward to the leader at %s failed (%s); retrying", addr, exc.details())
            await asyncio.sleep(FORWARD_RETRY_S)
            return
        await context.abort(exc.code(), f"forwarded to the leader at {addr}: {exc.details()}")

    async def _forward_unary(self, addr: str, name: str, request: bytes, context) -> bytes | None:
        """The leader's answer, or None when it was unreachable and the call should try again."""
        call = self._channel(addr).unary_unary(f"/{SERVICE}/{name}")
        try:
            return await call(request, metadata=self._metadata(context), timeout=context.time_remaining())
        except self.ns.aio.AioRpcError as exc:
            await self._unreachable(addr, exc, context)
            return None

    async def _forward_stream(self, addr: str, name: str, request: bytes, context):
        """The leader's responses; a None item when it was unreachable before the first one."""
        call = self._channel(addr).unary_stream(f"/{SERVICE}/{name}")
        sent = 0
        try:
            async for item in call(request, metadata=self._metadata(context), timeout=context.time_remaining()):
                sent += 1
                yield item
        except self.ns.aio.AioRpcError as exc:
            if sent:
                await context.abort(exc.code(), f"forwarded to the leader at {addr}: {exc.details()}")
            await self._unreachable(addr, exc, context)
            yield None

    # --- authentication ------------------------------------------------------------------------------

    def check_acl(self, context, needed: dict[str, int]) -> tuple[str, str] | None:
        """None when the call may go on (or no ACL is configured); else (v2 code name, text)."""
        from mqbench.broker.server.acl import AclDenied

        acl = self.ctx.acl
        if acl is None:
            return None
        metadata = dict(context.invocation_metadata())
        parsed = parse_authorization(metadata.get("authorization", ""))
        key = parsed[0] if parsed and parsed[0] else None
        date_time = metadata.get("x-mq-date-time", "")

        def signed(secret: str) -> bool:
            return parsed is not None and "x-mq-date-time" in parsed[1].split(";") and \
                hmac.compare_digest(grpc_signature(secret, date_time), parsed[2].lower())

        try:
            acl.check_access(key, _peer_host(context.peer()), signed, None, lambda: needed)
        except AclDenied as exc:
            text = str(exc)
            code = "FORBIDDEN" if "ermission" in text else "UNAUTHORIZED"
            return code, f"org.apache.rocketmq.acl.common.AclException: {text}"
        return None


def _peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5555`` / ``ipv6:[::1]:5555`` -> the host."""
    rest = peer.split(":", 1)[1] if ":" in peer else peer
    host = rest.rsplit(":", 1)[0]
    return host.strip("[]") or "127.0.0.1"
