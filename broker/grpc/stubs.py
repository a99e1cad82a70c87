"""The generated protocol code of ``apache.rocketmq.v2``, from a published package.

The stubs come from PyPI's official ``rocketmq-python-client`` (5.1.2 ships
``rocketmq/grpc_protocol/{definition,service}_pb2.py`` generated from apache/rocketmq-apis), so
mqbench copies no ``.proto`` file. They need ``grpcio`` and ``protobuf>=6.33.5`` (what the
client's generated code requires). All are in the optional ``grpc`` extra
(``pip install 'mqbench[grpc]'``); ``load()`` returns None, with the reason in ``MISSING``, when
they are not installed, and the broker then serves no gRPC port (and says so once at start).

Importing ``rocketmq.grpc_protocol`` runs the client package's ``__init__`` too (the client
itself, with opentelemetry): that is the package's own layout, paid once at broker start.
"""
from __future__ import annotations

from types import SimpleNamespace

MISSING: str | None = None
_loaded: SimpleNamespace | None = None

EXTRA_HINT = "pip install 'mqbench[grpc]'"


def load() -> SimpleNamespace | None:
    """``ns.pb`` (definition messages), ``ns.svc`` (service messages), ``ns.grpc`` (grpc module),
    ``ns.aio``; or None when the extra is missing (``MISSING`` says what failed to import)."""
    global _loaded, MISSING
    if _loaded is not None:
        return _loaded
    try:
        import grpc
        from grpc import aio
        from rocketmq.grpc_protocol import definition_pb2, service_pb2
    except Exception as exc:  # noqa: BLE001 - ImportError, or a protobuf version clash: both mean "not available"
        MISSING = f"{type(exc).__name__}: {exc}"
        return None
    _loaded = SimpleNamespace(pb=definition_pb2, svc=service_pb2, grpc=grpc, aio=aio)
    return _loaded
