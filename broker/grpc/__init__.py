"""The RocketMQ 5 gRPC endpoint (``apache.rocketmq.v2.MessagingService``) for the official 5.x clients.

Room: ``stubs`` (the generated protocol code, from the optional ``grpc`` extra), ``convert``
(v2 messages <-> stored messages, pure), ``service`` (the calls, a thin adapter over the
broker's send handler, replicated store and POP engine: see its docstring for the contract) and
``endpoint`` (the server, ACL signatures, forwarding to the leader).

``attach_to_broker(broker)`` serves it on the instance's ``grpc_addr`` (client port + 2) once the
broker has started (after the POP service is attached, whose ``ctx.pop`` it uses), or, without the
extra, logs once that this broker serves no gRPC port and why, and returns None.
"""
from __future__ import annotations

import logging

log = logging.getLogger("mqbench.broker.grpc")


async def attach_to_broker(broker):
    """Start the endpoint of ``broker`` (module doc); its close joins ``broker.stop_hooks``."""
    from mqbench.broker.grpc import stubs

    ns = stubs.load()
    if ns is None:
        log.warning("broker %s serves no gRPC port: the grpc extra is not installed (%s; %s)",
                    broker.instance.name, stubs.MISSING, stubs.EXTRA_HINT)
        return None
    from mqbench.broker.grpc.endpoint import GrpcEndpoint

    endpoint = GrpcEndpoint(broker, ns)
    await endpoint.start()
    broker.stop_hooks.insert(0, endpoint.close)
    return endpoint
