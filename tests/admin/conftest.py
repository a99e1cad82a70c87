"""A reference cluster (``raft3``, real processes) shared by the tests of one admin test module,
stopped at the end of the module even when a test fails."""
from __future__ import annotations

import pytest

from mqbench.broker.layout import load_layout
from mqbench.cluster import launcher


@pytest.fixture(scope="module")
def raft3(tmp_path_factory):
    """``(state, layout)`` of a running raft3 cluster; ``layout.namesrv_addr`` is its name server."""
    from mqbench.run.environment import free_port_offset

    # offsets above the other tests' (fixed ones near 4100, random ones below 40000)
    offset = free_port_offset(load_layout("raft3"), first=42000)
    state = launcher.up("raft3", tmp_path_factory.mktemp("raft3") / "cluster", port_offset=offset, wait_s=60)
    try:
        yield state, load_layout("raft3").with_port_offset(offset)
    finally:
        launcher.down(state, timeout_s=5)
