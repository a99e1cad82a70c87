"""Fixtures of the cluster tests: a reference cluster of real processes in a temporary directory.

Each test module passes its own port offset so modules (and other people's tests) never collide;
every cluster is stopped at the end of its test even when the test fails.
"""
from __future__ import annotations

import pytest

from mqbench.cluster import launcher
from mqbench.cluster.processes import ClusterState


def start_cluster(tmp_path, layout: str, port_offset: int, **kwargs) -> ClusterState:
    return launcher.up(layout, tmp_path / "cluster", port_offset=port_offset, wait_s=60, **kwargs)


@pytest.fixture
def cluster_factory(tmp_path):
    """``make(layout, port_offset)`` starts a cluster; all of them are stopped after the test."""
    started: list[ClusterState] = []

    def make(layout: str, port_offset: int, **kwargs) -> ClusterState:
        state = start_cluster(tmp_path / f"{layout}-{port_offset}", layout, port_offset, **kwargs)
        started.append(state)
        return state

    yield make
    for state in started:
        launcher.down(state, timeout_s=5)
