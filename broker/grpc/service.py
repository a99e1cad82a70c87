"""The MessagingService calls, as a thin adapter over the broker's own paths.

Contract (what a 5.x client sees; the reference proxy's behaviour unless said):

* **QueryRoute**: the name server's route of the topic (every broker group that serves it), each
  group as ``broker{name, id 0, endpoints}`` listing every replica's gRPC address (one address
  for clients other than Python's: ``_broker``), its queues
  ``READ_WRITE`` accepting NORMAL, FIFO and DELAY. A topic the name server does not know yet is
  answered with this broker's group and 4 queues while the default topic (auto-creation) exists,
  so a producer's first send creates it as a remoting send does; otherwise TOPIC_NOT_FOUND.
* **Heartbeat**, **NotifyClientTermination**: OK (the client is remembered / forgotten).
* **Telemetry**: every ``settings`` the client writes is answered at once with its settings
  merged with the broker's (``settings_reply``): status OK, ``publishing.max_body_size`` 4 MiB,
  ``backoff_policy``, ``subscription.fifo`` for a FIFO group (``--fifo-groups``),
  ``receive_batch_size`` 32 and ``long_polling_timeout`` 20 s.
* **SendMessage**: each message becomes a remoting SEND_MESSAGE and goes through
  ``handlers_send.on_send``: the same validation, topic auto-creation, delay rewrite (a
  ``delivery_timestamp`` is ``TIMER_DELIVER_MS``), replicated put and stats as a remoting send; the
  answer comes once the quorum committed it. A FIFO message (``message_group``) goes to the
  group's queue (``convert.fifo_queue``).
* **ReceiveMessage**: a POP (``broker/pop``) of up to ``batch_size`` (at most 32) messages from any
  queue of the topic and the group's retry topic, long-polled up to ``long_polling_timeout`` (kept
  inside the call's deadline), invisible for ``invisible_duration`` (a PushConsumer's auto-renewed
  receive: ``PUSH_INVISIBLE_MS``). Orderly for a FIFO group. A new group starts from the queues'
  first messages. Stream: ``status`` then one response per message then ``delivery_timestamp``;
  nothing: ``MESSAGE_NOT_FOUND``.
* **AckMessage**: the POP ack of every entry; a handle whose checkpoint was already revived is
  ``INVALID_RECEIPT_HANDLE`` (the message came back or will).
* **ChangeInvisibleDuration**: the POP change of invisible time; the new receipt handle replaces
  the old one (the old one no longer acks).
* **QueryAssignment**: one assignment per broker group of the route, queue id -1 (POP: the broker
  picks the queue), as the proxy assigns in POP mode.
* **ForwardMessageToDeadLetterQueue**: the message goes through ``handlers_send.on_send_back``
  with delay level -1 (a copy in ``%DLQ%<group>``), then its handle is acked.

Refusals keep the remoting meaning: not the leader, writes unavailable -> INTERNAL_SERVER_ERROR
(the clients retry it), MESSAGE_ILLEGAL -> BAD_REQUEST, NO_PERMISSION -> FORBIDDEN, a malformed
handle -> INVALID_RECEIPT_HANDLE.
"""
from __future__ import annotations

import fnmatch
import logging

from mqbench.broker.grpc import convert
from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.server.acl import ANY, PUB, RETRY_PREFIX, SUB
from mqbench.broker.server.handlers import Refused
from mqbench.broker.formats import record as rec
from mqbench.broker.formats.topics import AUTO_CREATE_TOPIC_KEY_TOPIC
from mqbench.broker.formats.properties import PROPERTY_RETRY_TOPIC, PROPERTY_SHARDING_KEY, PROPERTY_UNIQ_KEY
from mqbench.errors import UserError

log = logging.getLogger("mqbench.broker.grpc")

PUSH_INVISIBLE_MS = 30_000
SIMPLE_INVISIBLE_MS = 30_000
BATCH_MAX = 32
LONG_POLLING_MS = 20_000
DEADLINE_MARGIN_MS = 1_000
DEFAULT_QUEUE_NUMS = 4
MAX_ATTEMPTS = 17                 # the group's retryMaxTimes (16) + 1, as the proxy tells clients

_REFUSAL_CODES = {codes.MESSAGE_ILLEGAL: "BAD_REQUEST", codes.NO_PERMISSION: "FORBIDDEN",
                  codes.INVALID_PARAMETER: "BAD_REQUEST", codes.TOPIC_NOT_EXIST: "TOPIC_NOT_FOUND"}


class _Channel:
    """What the remoting handlers read of a connection: the peer address."""

    def __init__(self, peer: str) -> None:
        self.peer = peer


class GrpcService:
    def __init__(self, broker, ns, endpoint) -> None:
        self.broker = broker
        self.ns = ns
        self.endpoint = endpoint
        self.clients: dict[str, object] = {}       # x-mq-client-id -> its last Settings
        self.fifo_groups: tuple[str, ...] = tuple(getattr(broker, "fifo_groups", ()) or ())

    @property
    def ctx(self):
        return self.broker.ctx

    # --- helpers -----------------------------------------------------------------------------------

    def status(self, code: str = "OK", message: str = "OK"):
        return self.ns.pb.Status(code=self.ns.pb.Code.Value(code), message=message)

    def is_fifo(self, group: str) -> bool:
        return any(fnmatch.fnmatchcase(group, pattern) for pattern in self.fifo_groups)

    def _refusal(self, exc: BaseException) -> tuple[str, str]:
        """(v2 code name, text) for what a broker path raised."""
        from mqbench.broker.server.write_gate import WritesUnavailable

        ctx = self.ctx
        if isinstance(exc, Refused):
            return _REFUSAL_CODES.get(exc.code, "INTERNAL_SERVER_ERROR"), exc.remark
        if isinstance(exc, ctx.not_leader_errors):
            return "INTERNAL_SERVER_ERROR", ctx.not_leader(str(exc) or "the request").remark
        if isinstance(exc, WritesUnavailable):
            return "INTERNAL_SERVER_ERROR", f"{ctx.instance.name}: {exc}"
        if isinstance(exc, convert.Invalid):
            return exc.code, str(exc)
        if isinstance(exc, UserError):
            text = str(exc)
            return ("INVALID_RECEIPT_HANDLE" if "receipt handle" in text or "handle" in text else "BAD_REQUEST"), text
        raise exc

    _EXPECTED = (Refused, UserError, convert.Invalid)

    def _expected(self, exc: BaseException) -> bool:
        from mqbench.broker.server.write_gate import WritesUnavailable

        return isinstance(exc, self._EXPECTED + (WritesUnavailable,) + tuple(self.ctx.not_leader_errors))

    def _parse(self, cls, request: bytes):
        try:
            return cls.FromString(request)
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError: a peer error
            raise convert.Invalid("BAD_REQUEST", f"{cls.__name__} does not parse: {exc}") from None

    def _client_id(self, context) -> str:
        return dict(context.invocation_metadata()).get("x-mq-client-id", "")

    async def _guard(self, context, response_cls, needed: dict[str, int], work):
        """Run ``work()`` (returns the response) after the ACL; refusals become the response's status."""
        denied = self.endpoint.check_acl(context, needed)
        if denied is not None:
            return response_cls(status=self.status(*denied)).SerializeToString()
        try:
            return (await work()).SerializeToString()
        except Exception as exc:  # noqa: BLE001 - only the expected refusals are answered; others re-raise
            if not self._expected(exc):
                raise
            return response_cls(status=self.status(*self._refusal(exc))).SerializeToString()

    # --- route, heartbeat, telemetry ---------------------------------------------------------------

    async def _route_groups(self, topic: str) -> dict[str, tuple[int, int]]:
        """broker group -> (read queue nums, write queue nums) serving ``topic`` (name server first)."""
        from mqbench.client.connections import ConnectionPool, NameServerClient

        pool = ConnectionPool(connect_timeout_ms=1000)
        try:
            route = await NameServerClient(self.ctx.layout.namesrv_addr, pool, timeout_ms=2000).route(topic)
        except Exception as exc:  # noqa: BLE001 - name server down: this replica's own view
            log.info("QueryRoute %s: name server did not answer (%s); answering from %s", topic, exc,
                     self.ctx.instance.name)
            route = None
        finally:
            await pool.close()
        groups = {}
        if route is not None:
            for q in route.queues:
                groups[q.broker_name] = (q.read_queue_nums, q.write_queue_nums)
        if not groups:
            cfg = self.ctx.topic_config(topic)
            if cfg is not None:
                groups[self.ctx.broker_name] = (cfg.read_queue_nums, cfg.write_queue_nums)
            elif self.ctx.topic_config(AUTO_CREATE_TOPIC_KEY_TOPIC) is not None:
                groups[self.ctx.broker_name] = (DEFAULT_QUEUE_NUMS, DEFAULT_QUEUE_NUMS)
        return groups

    def _broker(self, group: str, context=None):
        """``group`` as a route's broker: every replica's gRPC address for clients that dial a list
        (Python's turns it into an ``ipv4:a,b,c`` target and moves on when one dies); for others
        (Node's joins the addresses without a scheme, which gRPC cannot resolve) one address: this
        replica's own for its group (the client reached it; it forwards), else that group's
        preferred or first replica."""
        pb = self.ns.pb
        endpoints = pb.Endpoints(scheme=pb.AddressScheme.IPv4)
        instances = self.ctx.layout.group_instances(group)
        language = dict(context.invocation_metadata()).get("x-mq-language", "") if context is not None else ""
        if language.upper() != "PYTHON":
            own = [i for i in instances if i.name == self.ctx.instance.name]
            instances = own or [i for i in instances if i.preferred_leader] or instances[:1]
        for instance in instances:
            endpoints.addresses.add(host=instance.address, port=instance.grpc_port)
        return pb.Broker(name=group, id=0, endpoints=endpoints)

    def _queues(self, resource, groups: dict[str, tuple[int, int]], context) -> list:
        pb = self.ns.pb
        types = [pb.MessageType.NORMAL, pb.MessageType.FIFO, pb.MessageType.DELAY]
        out = []
        for group, (read_nums, write_nums) in sorted(groups.items()):
            broker = self._broker(group, context)
            for qid in range(max(read_nums, write_nums)):
                out.append(pb.MessageQueue(topic=resource, id=qid, permission=pb.Permission.READ_WRITE,
                                           broker=broker, accept_message_types=types))
        return out

    async def QueryRoute(self, request: bytes, context) -> bytes:
        svc = self.ns.svc
        req = self._parse(svc.QueryRouteRequest, request)

        async def work():
            groups = await self._route_groups(req.topic.name)
            if not groups:
                return svc.QueryRouteResponse(status=self.status("TOPIC_NOT_FOUND",
                                                                 f"topic {req.topic.name} does not exist"))
            return svc.QueryRouteResponse(status=self.status(), message_queues=self._queues(req.topic, groups, context))

        return await self._guard(context, svc.QueryRouteResponse, {req.topic.name: ANY}, work)

    async def Heartbeat(self, request: bytes, context) -> bytes:
        svc = self.ns.svc
        req = self._parse(svc.HeartbeatRequest, request)
        needed = {RETRY_PREFIX + req.group.name: SUB} if req.group.name else {}

        async def work():
            return svc.HeartbeatResponse(status=self.status())

        return await self._guard(context, svc.HeartbeatResponse, needed, work)

    async def NotifyClientTermination(self, request: bytes, context) -> bytes:
        svc = self.ns.svc
        self.clients.pop(self._client_id(context), None)

        async def work():
            return svc.NotifyClientTerminationResponse(status=self.status())

        return await self._guard(context, svc.NotifyClientTerminationResponse, {}, work)

    def settings_reply(self, settings):
        """The client's ``settings`` merged with the broker's (module doc)."""
        pb = self.ns.pb
        out = pb.Settings()
        out.CopyFrom(settings)
        policy = out.backoff_policy
        policy.max_attempts = 3 if settings.client_type == pb.ClientType.PRODUCER else MAX_ATTEMPTS
        policy.exponential_backoff.initial.seconds = 1
        policy.exponential_backoff.max.seconds = 10
        policy.exponential_backoff.multiplier = 2.0
        if settings.HasField("publishing") or settings.client_type == pb.ClientType.PRODUCER:
            out.publishing.max_body_size = self.ctx.message_bytes_max
            out.publishing.validate_message_type = True
        if settings.HasField("subscription"):
            out.subscription.fifo = self.is_fifo(settings.subscription.group.name)
            out.subscription.receive_batch_size = BATCH_MAX
            out.subscription.long_polling_timeout.seconds = LONG_POLLING_MS // 1000
        return out

    async def telemetry(self, request_iterator, context):
        svc = self.ns.svc
        client_id = self._client_id(context)
        denied = self.endpoint.check_acl(context, {})
        async for raw in request_iterator:
            try:
                command = svc.TelemetryCommand.FromString(raw)
            except Exception:  # noqa: BLE001 - a peer error: end this stream, keep serving
                return
            if not command.HasField("settings"):
                continue
            if denied is not None:
                yield svc.TelemetryCommand(status=self.status(*denied)).SerializeToString()
                continue
            self.clients[client_id] = command.settings
            reply = svc.TelemetryCommand(status=self.status(), settings=self.settings_reply(command.settings))
            yield reply.SerializeToString()

    # --- send --------------------------------------------------------------------------------------

    async def SendMessage(self, request: bytes, context) -> bytes:
        from mqbench.broker.server import handlers_send

        svc = self.ns.svc
        req = self._parse(svc.SendMessageRequest, request)
        needed = {m.topic.name: PUB for m in req.messages}
        peer = context.peer()

        async def work():
            if len(req.messages) != 1:
                raise convert.Invalid("BAD_REQUEST", f"SendMessage carries {len(req.messages)} messages; "
                                                     "the clients send one per request")
            message = req.messages[0]
            topic = message.topic.name
            props = convert.send_properties(self.ns, message, self.ctx.clock_ms())
            queue_id = -1
            if PROPERTY_SHARDING_KEY in props:
                cfg = await self.ctx.ensure_topic(topic)
                queue_id = convert.fifo_queue(props[PROPERTY_SHARDING_KEY], cfg.write_queue_nums)
            born_ms = message.system_properties.born_timestamp
            ext = {"producerGroup": "", "topic": topic, "defaultTopic": AUTO_CREATE_TOPIC_KEY_TOPIC,
                   "defaultTopicQueueNums": str(DEFAULT_QUEUE_NUMS), "queueId": str(queue_id), "sysFlag": "0",
                   "bornTimestamp": str(born_ms.seconds * 1000 + born_ms.nanos // 1_000_000 or self.ctx.clock_ms()),
                   "flag": "0", "properties": rec.encode_properties(props).decode("utf-8"), "reconsumeTimes": "0"}
            cmd = RemotingCommand(code=codes.SEND_MESSAGE, ext_fields=ext, body=convert.body_of(self.ns, message))
            answer = await handlers_send.on_send(self.ctx, cmd, _Channel(_remoting_peer(peer)))
            if answer.code != codes.SUCCESS:
                raise Refused(answer.code, answer.remark or "send refused")
            entry = svc.SendResultEntry(status=self.status(), message_id=props[PROPERTY_UNIQ_KEY],
                                        offset=int(answer.ext_fields.get("queueOffset", 0)))
            return svc.SendMessageResponse(status=self.status(), entries=[entry])

        return await self._guard(context, svc.SendMessageResponse, needed, work)

    # --- POP: receive, ack, change invisible duration -------------------------------------------------

    def _pop(self):
        pop = getattr(self.ctx, "pop", None)
        if pop is None:
            raise Refused(codes.SYSTEM_ERROR, f"{self.ctx.instance.name} serves no POP consumption")
        return pop

    async def ReceiveMessage(self, request: bytes, context):
        from mqbench.broker.pop.engine import INIT_MODE_MIN, PopRequest

        svc = self.ns.svc
        try:
            req = self._parse(svc.ReceiveMessageRequest, request)
        except convert.Invalid as exc:
            yield svc.ReceiveMessageResponse(status=self.status(exc.code, str(exc))).SerializeToString()
            return
        group, topic = req.group.name, req.message_queue.topic.name
        denied = self.endpoint.check_acl(context, {topic: SUB, RETRY_PREFIX + group: SUB})
        if denied is not None:
            yield svc.ReceiveMessageResponse(status=self.status(*denied)).SerializeToString()
            return
        invisible_ms = convert.duration_ms(req.invisible_duration,
                                           PUSH_INVISIBLE_MS if req.auto_renew else SIMPLE_INVISIBLE_MS)
        poll_ms = convert.duration_ms(req.long_polling_timeout, LONG_POLLING_MS)
        remaining_s = context.time_remaining()
        if remaining_s is not None:
            poll_ms = max(0, min(poll_ms, int(remaining_s * 1000) - DEADLINE_MARGIN_MS))
        tags = None
        expression = req.filter_expression.expression.strip() if req.HasField("filter_expression") else "*"
        if expression and expression != "*":
            tags = frozenset(t.strip() for t in expression.split("||") if t.strip())
        batch = min(max(req.batch_size, 1), BATCH_MAX)
        try:
            pop_req = PopRequest(group, topic, -1, batch, invisible_ms, init_mode=INIT_MODE_MIN,
                                 orderly=self.is_fifo(group), tags=tags)
            result = await self._pop().pop(pop_req, poll_ms=poll_ms)
        except Exception as exc:  # noqa: BLE001 - expected refusals answered, others re-raised
            if not self._expected(exc):
                raise
            yield svc.ReceiveMessageResponse(status=self.status(*self._refusal(exc))).SerializeToString()
            return
        messages = result.plan.messages if result.code == codes.SUCCESS else []
        if not messages:
            yield svc.ReceiveMessageResponse(status=self.status("MESSAGE_NOT_FOUND", "no new message")) \
                .SerializeToString()
        else:
            yield svc.ReceiveMessageResponse(status=self.status()).SerializeToString()
            for popped in messages:
                msg = popped.message
                original = msg.properties.get(PROPERTY_RETRY_TOPIC) or topic
                v2 = convert.to_v2(self.ns, msg, popped.handle, invisible_ms, original,
                                   req.message_queue.topic.resource_namespace)
                yield svc.ReceiveMessageResponse(message=v2).SerializeToString()
        done = svc.ReceiveMessageResponse()
        done.delivery_timestamp.seconds, ms = divmod(self.ctx.clock_ms(), 1000)
        done.delivery_timestamp.nanos = ms * 1_000_000
        yield done.SerializeToString()

    async def AckMessage(self, request: bytes, context) -> bytes:
        svc = self.ns.svc
        req = self._parse(svc.AckMessageRequest, request)
        group, topic = req.group.name, req.topic.name

        async def work():
            plan = await self._pop().ack(group, topic, [e.receipt_handle for e in req.entries])
            entries = []
            for entry, state in zip(req.entries, plan.statuses):
                ok = state != "late"
                entries.append(svc.AckMessageResultEntry(
                    message_id=entry.message_id, receipt_handle=entry.receipt_handle,
                    status=self.status() if ok else self.status(
                        "INVALID_RECEIPT_HANDLE", "the receipt handle expired: the message was or will be "
                                                  "delivered again")))
            codes_seen = {e.status.code for e in entries}
            if len(codes_seen) == 1:
                top = entries[0].status if entries else self.status()
            else:
                top = self.status("MULTIPLE_RESULTS", "entries differ")
            return svc.AckMessageResponse(status=top, entries=entries)

        return await self._guard(context, svc.AckMessageResponse, {topic: SUB, RETRY_PREFIX + group: SUB}, work)

    async def ChangeInvisibleDuration(self, request: bytes, context) -> bytes:
        svc = self.ns.svc
        req = self._parse(svc.ChangeInvisibleDurationRequest, request)
        group, topic = req.group.name, req.topic.name

        async def work():
            ms = convert.duration_ms(req.invisible_duration, 0)
            if ms <= 0:
                raise convert.Invalid("ILLEGAL_INVISIBLE_TIME", "invisible_duration must be positive")
            plan = await self._pop().change_invisible_time(group, topic, req.receipt_handle, ms)
            return svc.ChangeInvisibleDurationResponse(status=self.status(), receipt_handle=plan.handle)

        return await self._guard(context, svc.ChangeInvisibleDurationResponse,
                                 {topic: SUB, RETRY_PREFIX + group: SUB}, work)

    # --- assignment, dead letters ---------------------------------------------------------------------

    async def QueryAssignment(self, request: bytes, context) -> bytes:
        svc, pb = self.ns.svc, self.ns.pb
        req = self._parse(svc.QueryAssignmentRequest, request)

        async def work():
            groups = await self._route_groups(req.topic.name)
            if not groups:
                return svc.QueryAssignmentResponse(status=self.status("TOPIC_NOT_FOUND",
                                                                      f"topic {req.topic.name} does not exist"))
            assignments = [pb.Assignment(message_queue=pb.MessageQueue(
                topic=req.topic, id=-1, permission=pb.Permission.READ_WRITE, broker=self._broker(group, context),
                accept_message_types=[pb.MessageType.NORMAL, pb.MessageType.FIFO, pb.MessageType.DELAY]))
                for group in sorted(groups)]
            return svc.QueryAssignmentResponse(status=self.status(), assignments=assignments)

        return await self._guard(context, svc.QueryAssignmentResponse,
                                 {req.topic.name: SUB, RETRY_PREFIX + req.group.name: SUB}, work)

    async def ForwardMessageToDeadLetterQueue(self, request: bytes, context) -> bytes:
        from mqbench.broker.pop import handles
        from mqbench.broker.server import handlers_send

        svc = self.ns.svc
        req = self._parse(svc.ForwardMessageToDeadLetterQueueRequest, request)
        group, topic = req.group.name, req.topic.name
        peer = context.peer()

        async def work():
            handle = handles.parse(req.receipt_handle)
            source = handles.real_topic(topic, group, handle.kind)
            read = self.ctx.store.read_queue(source, handle.queue_id, handle.offset, 1)
            found = [m for m in read.messages if m.queue_offset == handle.offset]
            if not found:
                raise convert.Invalid("INVALID_RECEIPT_HANDLE", f"no message at {source} queue {handle.queue_id} "
                                                                f"offset {handle.offset}")
            cmd = RemotingCommand(code=codes.CONSUMER_SEND_MSG_BACK, ext_fields={
                "group": group, "offset": str(found[0].physical_offset), "delayLevel": "-1",
                "originMsgId": req.message_id, "originTopic": topic,
                "maxReconsumeTimes": str(max(req.max_delivery_attempts - 1, 0))})
            answer = await handlers_send.on_send_back(self.ctx, cmd, _Channel(_remoting_peer(peer)))
            if answer.code != codes.SUCCESS:
                raise Refused(answer.code, answer.remark or "dead-lettering refused")
            await self._pop().ack(group, topic, [req.receipt_handle])
            return svc.ForwardMessageToDeadLetterQueueResponse(status=self.status())

        return await self._guard(context, svc.ForwardMessageToDeadLetterQueueResponse,
                                 {topic: SUB, RETRY_PREFIX + group: SUB}, work)


def _remoting_peer(peer: str) -> str:
    """A gRPC peer (``ipv4:H:P``) as a remoting channel's ``H:P``."""
    return peer.split(":", 1)[1] if peer.startswith(("ipv4:", "ipv6:")) else peer
