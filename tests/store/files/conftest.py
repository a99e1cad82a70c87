"""Helpers shared by the store-files tests: small segment sizes and a fixed clock."""
import pytest

from mqbench.broker.store.store import Store

SMALL = dict(commitlog_segment_bytes=4096, cq_segment_bytes=200, bcq_segment_bytes=460,
             dledger_index_segment_bytes=320)
T0_MS = 1_700_000_000_001


class FixedClock:
    def __init__(self, now_ms: int = T0_MS):
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def open_store(path, version, *, create=True, flush_policy="none", **kw):
    args = dict(SMALL, clock_ms=FixedClock(), background_flush=False)
    args.update(kw)
    return Store.open(path, version, create=create, flush_policy=flush_policy, **args)


@pytest.fixture(params=["v4", "v5", "v4-dledger", "v5-dledger"])
def version(request):
    return request.param
