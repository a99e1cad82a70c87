"""The generated protocol code of ``apache.rocketmq.v2``, from a published package.

The stubs come from PyPI's official ``rocketmq-python-client`` (5.1.2 ships
``rocketmq/grpc_protocol/{definition,service}_pb2.py`` generated from apache/rocketmq-apis), so
mqbench copies no ``.proto`` file. They need ``grpcio`` and ``protobuf>=6.33.5`` (what the
client's generated code requires). All are in the optional ``grpc`` extra
(``pip install 'mqbench[grpc]'``); ``load()`` returns None, with the reason in ``MISSING``, when
they are not installed, and the broker then serves no gRPC port (and says so once at start).

A plain ``import rocketmq.grpc_protocol`` would run the client package's ``__init__`` first (the
whole 5.x client with opentelemetry: ~0.25 s of CPU at every broker start, more than grpc itself);
``_protocol_modules`` loads only the generated modules (see there).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType, SimpleNamespace

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
        definition_pb2, service_pb2 = _protocol_modules()
    except Exception as exc:  # noqa: BLE001 - ImportError, or a protobuf version clash: both mean "not available"
        MISSING = f"{type(exc).__name__}: {exc}"
        return None
    _loaded = SimpleNamespace(pb=definition_pb2, svc=service_pb2, grpc=grpc, aio=aio)
    return _loaded


def _protocol_modules() -> tuple[ModuleType, ModuleType]:
    """``rocketmq.grpc_protocol.definition_pb2`` and ``service_pb2`` without the client package's
    ``__init__``: while they load, ``rocketmq`` is a bare stand-in (the package's module object, not
    executed), removed again afterwards, so a later ``import rocketmq`` in the same process runs the
    client's own ``__init__`` as usual (which finds ``rocketmq.grpc_protocol`` already loaded). When
    the client is already imported, its modules are used as they are."""
    if "rocketmq" not in sys.modules:
        spec = importlib.util.find_spec("rocketmq")
        if spec is None or spec.submodule_search_locations is None:
            raise ModuleNotFoundError("No module named 'rocketmq'", name="rocketmq")
        stand_in = importlib.util.module_from_spec(spec)
        sys.modules["rocketmq"] = stand_in
        try:
            importlib.import_module("rocketmq.grpc_protocol")
        finally:
            if sys.modules.get("rocketmq") is stand_in:
                del sys.modules["rocketmq"]
    return (importlib.import_module("rocketmq.grpc_protocol.definition_pb2"),
            importlib.import_module("rocketmq.grpc_protocol.service_pb2"))
